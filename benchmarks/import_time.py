r"""What importing otflows costs: the wall time of a fresh interpreter running each import, less
that of a bare interpreter, side by side in one run (median of ``--repeats`` runs each, the
statements interleaved so the machine's noise falls on all alike).

    python benchmarks/import_time.py            # 15 runs of each
    python benchmarks/import_time.py --quick    # a smoke run

``import otflows`` loads no heavy module (its names load their modules on first use); the
flows load torch and nflows; the OT-map estimator loads POT, and with it scikit-learn.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from otflows.bench.common import add_out_option, description, markdown_table, write_json

STATEMENTS = [
    "import torch",
    "import otflows",
    "from otflows import BrenierFlow, fit_flow",
    "from otflows import BrenierMap",
]
COLUMNS = [
    ("statement", "statement"),
    ("seconds", "s (less a bare interpreter's)"),
    ("over_torch", "s over import torch"),
]


def seconds(statement: str) -> float:
    r"""The wall time of a fresh interpreter running ``statement``."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True, timeout=300)
    return time.perf_counter() - start


def rendered(payload: dict) -> str:
    r"""The table: each statement's import time and its excess over ``import torch``."""
    return markdown_table(payload["rows"], COLUMNS)


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the benchmark from command-line arguments; returns what it writes as JSON."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/import_time.py", description=description(__doc__)
    )
    parser.add_argument("--repeats", type=int, default=15, help="runs of each statement")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one run of each")
    add_out_option(parser, "import_time.json")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    times: dict[str, list[float]] = {s: [] for s in ["pass", *STATEMENTS]}
    for _ in range(repeats):
        for statement in times:
            times[statement].append(seconds(statement))
    bare = statistics.median(times.pop("pass"))
    medians = {s: statistics.median(t) - bare for s, t in times.items()}
    rows = [
        {"statement": s, "seconds": value, "over_torch": value - medians["import torch"]}
        for s, value in medians.items()
    ]
    payload = {"args": {k: str(v) for k, v in vars(args).items()}, "bare": bare, "rows": rows}
    print(rendered(payload))
    write_json(args.out, payload, smoke=args.quick)
    return payload


if __name__ == "__main__":
    main()
