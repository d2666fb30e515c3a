r"""The test suite on a busy machine: README's test command run while every core also runs
another CPU-bound process, so that no test's outcome can hang on the machine's load.

    python benchmarks/load_check.py --out benchmarks/results/load_check.json
    python benchmarks/load_check.py --quick    # a smoke run: one test file

The load is one busy Python process per core (each stops itself after three hours at most),
started before the tests and stopped after them. The suite passes only if no test depends on
wall-clock or CPU time (none has a time limit that load could break) and none is slowed past
use: a fit's CPU threads follow its work (:mod:`otflows.training.threads`), so a busy core stalls
no
fit for long.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from otflows.bench.common import (
    add_out_option,
    busy_cores,
    description,
    markdown_table,
    write_json,
)

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ["pytest", "-q"]  # README's test command
QUICK = ["pytest", "-q", "tests/test_threads.py"]
COLUMNS = [
    ("command", "command"),
    ("busy", "busy processes beside it"),
    ("returncode", "exit status"),
    ("summary", "pytest's summary"),
    ("minutes", "minutes"),
]


def run_beside_load(command: list[str], busy: int) -> dict:
    r"""``command`` run in the repository's root while ``busy`` busy processes run: its exit
    status, pytest's closing line and the wall-clock minutes it took."""
    with busy_cores(busy):
        start = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True
        )
        minutes = (time.perf_counter() - start) / 60
    lines = completed.stdout.strip().splitlines()
    summary = next((line for line in reversed(lines) if re.search(r"\d+ passed", line)), "")
    return {
        "command": " ".join(command),
        "busy": busy,
        "returncode": completed.returncode,
        "summary": summary.strip("= "),
        "minutes": minutes,
        "tail": lines[-30:],
    }


def rendered(payload: dict) -> str:
    r"""The run: the command, the load beside it, how it ended and how long it took."""
    return markdown_table(payload["rows"], COLUMNS)


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the check from command-line arguments; returns what it writes as JSON."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/load_check.py", description=description(__doc__)
    )
    parser.add_argument(
        "--busy", type=int, default=None, help="busy processes (default: one per core)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: one test file")
    add_out_option(parser, "load_check.json")
    args = parser.parse_args(argv)
    busy = args.busy if args.busy is not None else os.cpu_count() or 1
    row = run_beside_load(QUICK if args.quick else COMMAND, busy)
    payload = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": [row]}
    print("\n".join(row["tail"][-5:]))
    print(rendered(payload))
    write_json(args.out, payload, smoke=args.quick)
    if row["returncode"] != 0:
        raise SystemExit(f"the tests failed beside {busy} busy processes")
    return payload


if __name__ == "__main__":
    main()
