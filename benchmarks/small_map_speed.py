r"""How long a small map takes: ``BrenierMap()`` on a few hundred rows per side, with its default
CPU threads, with torch's threads and with one, beside POT's ``LinearTransport`` and
``SinkhornTransport`` and otflows' ``EntropicMap``, on an idle machine and on one whose every
core runs another CPU-bound process.

    python benchmarks/small_map_speed.py --out benchmarks/results/small_map_speed.json
    python benchmarks/small_map_speed.py --quick    # a smoke run

Each fit runs in a fresh process, one at a time (torch starts with its default threads, one
per core, unless ``OMP_NUM_THREADS`` says otherwise); the load is one busy Python process per
core, started before and stopped after the loaded fits (each stops itself after three hours at
most). A fit's seconds are wall-clock seconds; its held-out :math:`W_2^2` is that of the
mapped test source rows against the test target rows (1000 each).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

import numpy as np

from otflows.bench.common import (
    add_out_option,
    busy_cores,
    description,
    markdown_table,
    write_json,
)
from otflows.bench.processes import isolated

# name → (source, target) sampler of n rows with a seed: a Gaussian pair in d = 5 and POT's
# domain-adaptation clusters in d = 2
PROBLEMS = ("Gaussian d=5", "3gauss d=2")
ROWS = (300, 1000)
TEST_ROWS = 1000
METHODS = (
    "BrenierMap()",
    "BrenierMap(threads=torch's)",
    "BrenierMap(threads=1)",
    "EntropicMap()",
    "POT LinearTransport",
    "POT SinkhornTransport",
)
COLUMNS = [
    ("problem", "problem"),
    ("rows", "rows per side"),
    ("load", "machine"),
    *((method, f"{method} s") for method in METHODS),
]
QUALITY = [("problem", "problem"), ("rows", "rows per side"), *((m, m) for m in METHODS)]


def samples(problem: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    r"""``n`` source and ``n`` target rows of ``problem`` drawn with ``seed``."""
    from otflows.datasets import domain_adaptation

    if problem == "3gauss d=2":
        return domain_adaptation("3gauss", n, seed), domain_adaptation("3gauss2", n, seed + 1)
    rng = np.random.default_rng(seed)
    shape = np.random.default_rng(12345).normal(size=(5, 5)) / np.sqrt(5)  # one pair, any seed
    return rng.normal(size=(n, 5)), rng.normal(size=(n, 5)) @ (np.eye(5) + shape) + 1.0


def fit(method: str, problem: str, rows: int, quick: bool) -> dict:
    r"""One fit of ``method`` in this (fresh) process: its wall and CPU seconds, the threads it
    ran on (torch's; ``None`` for POT's, NumPy's) and its test rows' held-out :math:`W_2^2`."""
    import ot
    import torch

    from otflows import BrenierMap, EntropicMap
    from otflows.metrics import wasserstein2_squared
    from otflows.training.threads import threads_for

    Xs, Xt = samples(problem, rows, seed=0)
    test_s, test_t = samples(problem, 100 if quick else TEST_ROWS, seed=1)
    steps = {"max_iter": 20, "init_iter": 5} if quick else {}
    estimators = {
        "BrenierMap()": lambda: BrenierMap(random_state=0, progress=False, **steps),
        "BrenierMap(threads=torch's)": lambda: BrenierMap(
            random_state=0, progress=False, threads=torch.get_num_threads(), **steps
        ),
        "BrenierMap(threads=1)": lambda: BrenierMap(
            random_state=0, progress=False, threads=1, **steps
        ),
        "EntropicMap()": EntropicMap,
        "POT LinearTransport": ot.da.LinearTransport,
        "POT SinkhornTransport": ot.da.SinkhornTransport,
    }
    start, cpu = time.perf_counter(), time.process_time()
    estimator = estimators[method]().fit(Xs=Xs, Xt=Xt)
    mapped = estimator.transform(Xs=test_s)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    threads = None  # POT's: NumPy's
    if isinstance(estimator, BrenierMap):
        parameters = sum(p.numel() for p in estimator.transform_.parameters())
        threads = threads_for(parameters * estimator.batch_size, estimator.threads)
    elif isinstance(estimator, EntropicMap):
        threads = threads_for(len(Xs) * len(Xt))
    return {
        "method": method,
        "problem": problem,
        "rows": rows,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "threads": threads,
        "w2": wasserstein2_squared(mapped, test_t),
        "kept": getattr(estimator, "log_", {}).get("kept"),
    }


def described(run: dict) -> str:
    r"""One fit in a line, as it arrives."""
    if "error" in run:
        return f"{run['load']}: {run['error']}"
    return (
        f"{run['load']}: {run['problem']}, {run['rows']} rows, {run['method']}: "
        f"{run['seconds']:.2f} s on "
        + (f"{run['threads']} torch thread(s)" if run["threads"] else "NumPy's threads")
        + f", held-out W2² {run['w2']:.4g}"
    )


def rendered(payload: dict) -> str:
    r"""Two tables: each fit's wall seconds by machine load, and the held-out :math:`W_2^2` of
    each method's map on the idle machine."""
    cells: dict[tuple, dict] = {}
    for run in payload["rows"]:
        key = (run["problem"], run["rows"], run["load"])
        cells.setdefault(key, {"problem": key[0], "rows": key[1], "load": key[2]})
        cells[key][run["method"]] = run.get("seconds")
    quality: dict[tuple, dict] = {}
    for run in payload["rows"]:
        if run["load"] == "idle":
            row = quality.setdefault(
                (run["problem"], run["rows"]), {"problem": run["problem"], "rows": run["rows"]}
            )
            row[run["method"]] = run.get("w2")
    return (
        "Wall-clock seconds of a fit and the transform of 1000 rows:\n\n"
        + markdown_table(list(cells.values()), COLUMNS)
        + "\n\nHeld-out W2² of the mapped test rows (idle machine):\n\n"
        + markdown_table(list(quality.values()), QUALITY)
    )


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the benchmark from command-line arguments; returns what it writes as JSON."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/small_map_speed.py", description=description(__doc__)
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 60 rows, 20 steps, idle only"
    )
    add_out_option(parser, "small_map_speed.json")
    args = parser.parse_args(argv)
    sizes = (60,) if args.quick else ROWS
    loads = ("idle",) if args.quick else ("idle", "every core busy")
    runs = []
    for load in loads:
        with busy_cores(0 if load == "idle" else os.cpu_count() or 1):
            for problem in PROBLEMS:
                for rows in sizes:
                    for method in METHODS:
                        result = isolated(
                            fit,
                            fresh=not args.quick,
                            method=method,
                            problem=problem,
                            rows=rows,
                            quick=args.quick,
                        )
                        fitted = {"method": method, "problem": problem, "rows": rows}
                        runs.append(fitted | result | {"load": load})
                        print(described(runs[-1]), flush=True)
    payload = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": runs}
    print(rendered(payload))
    write_json(args.out, payload, smoke=args.quick)
    return payload


if __name__ == "__main__":
    main()
