r"""Training steps per second of BrenierMap's semi-dual fit, by how its conjugates are solved,
side by side in one run: the first Newton steps masked (decided on the device, no host read:
the GPU's default number of them, and twice that) or adaptive (the active rows chosen on the
host), each Newton direction from the factorised Jacobian or matrix-free (preconditioned CG on
Jacobian-vector products, ``SemiDual(solver="newton-cg")``); and the host's reads of the device
per step (over the first third of the steps, from step 10).

On the :math:`W_2` benchmark's pair of each dimension (``--w2bench``), else a random Gaussian
pair. Each (d, batch size) fits the same map every way from the same seed, the order reversed
at every other of the ``--repeats``; a step's time is the fit phase's wall-clock time over its
steps (on a GPU each step ends with the loss read by the progress bar, so queued work is
counted).

    python benchmarks/step_speed.py --w2bench PATH --dims 8 64 --threads 1 \
        --out benchmarks/results/step_speed_cpu.json
    python benchmarks/step_speed.py --w2bench PATH --dims 8 32 64 128 --threads 1 \
        --modes adaptive matrix-free --out benchmarks/results/conjugate_solves_cpu.json
    python benchmarks/step_speed.py --w2bench PATH --device cuda --dims 8 64 128 \
        --batch-sizes 256 1024 --out step_speed_cuda.json
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from host_reads import HostReads

from otflows.bench.common import (
    add_device_option,
    add_out_option,
    add_threads_option,
    description,
    machine,
    markdown_table,
    set_threads,
    write_json,
)
from otflows.linalg.newton import MASKED_ITER
from otflows.maps import BrenierMap
from otflows.maps.objectives import SemiDual
from otflows.validation import as_device

__all__ = ["MODES", "main", "reads_per_step", "rendered"]

# how the conjugates are solved: (masked Newton steps, SemiDual's solver); the masked steps
# none, the GPU's default and twice as many, the directions factorised or matrix-free
MODES = {
    "adaptive": (0, "newton"),
    "masked": (MASKED_ITER, "newton"),
    "masked ×2": (2 * MASKED_ITER, "newton"),
    "matrix-free": (0, "newton-cg"),
}


def _data(d: int, samples: int, w2bench: Path | None) -> tuple[np.ndarray, np.ndarray]:
    from otflows.datasets import GaussianCoupling, W2BenchmarkPair

    if w2bench is not None:
        pair = W2BenchmarkPair(w2bench, d)
        return pair.sample_source(samples, seed=1), pair.sample_target(samples, seed=2)
    gaussian = GaussianCoupling.random_pair(d, seed=0)
    return gaussian.sample(samples, seed=1), gaussian.sample_target(samples, seed=2)


def _estimator(mode: str, steps: int, batch: int, device: str, **kwargs: Any) -> BrenierMap:
    masked_iter, solver = MODES[mode]
    return BrenierMap(
        max_iter=steps,
        batch_size=batch,
        init_iter=50,
        validation_fraction=0,
        objective=SemiDual(masked_iter=masked_iter, solver=solver),
        device=device,
        random_state=0,
        progress=False,
        **kwargs,
    )


def reads_per_step(otmap: BrenierMap, Xs: Any, Xt: Any, every: int = 10) -> float:
    r"""The host's reads of device values (:class:`HostReads`) per step of ``otmap``'s
    training phase, counted between its callbacks every ``every`` steps (at least two such
    intervals: ``max_iter >= 2 * every``); the Bures start and the callbacks themselves are
    not counted.

    Example:
        >>> from otflows.datasets import GaussianCoupling
        >>> pair = GaussianCoupling.random_pair(2, seed=0)
        >>> Xs, Xt = pair.sample(500, seed=1), pair.sample_target(500, seed=2)
        >>> otmap = BrenierMap(max_iter=20, init_iter=2, validation_fraction=0,
        ...                    objective=SemiDual(masked_iter=4), progress=False)
        >>> reads_per_step(otmap, Xs, Xt)
        3.0
    """
    otmap.set_params(validation_interval=every)
    marks: list[int] = []
    reads = HostReads()

    def callback(phase: str, step: int, _: BrenierMap) -> None:
        if phase == "fit" and step % every == 0:
            marks.append(reads.total)

    with reads:
        otmap.fit(Xs=Xs, Xt=Xt, callback=callback)
    if len(marks) < 2:
        raise ValueError(f"max_iter must be at least {2 * every} to count reads per step")
    return (marks[-1] - marks[0]) / (every * (len(marks) - 1))


def measure(d: int, batch: int, args: argparse.Namespace) -> list[dict]:
    r"""Every mode at one (d, batch size): steps per second of each repeat, the host reads
    per step, and the mean loss of the last tenth of the steps (the same map every way)."""
    Xs, Xt = _data(d, args.samples, args.w2bench)
    runs: dict[str, list[dict]] = {mode: [] for mode in args.modes}
    for repeat in range(args.repeats):
        order = list(args.modes) if repeat % 2 == 0 else list(args.modes)[::-1]
        for mode in order:
            otmap = _estimator(mode, args.steps, batch, args.device)
            otmap.fit(Xs=Xs, Xt=Xt)
            fit = otmap.log_["fit"]
            tail = fit["loss"][-max(1, len(fit["loss"]) // 10) :]
            runs[mode].append(
                {"steps_per_s": len(fit["loss"]) / fit["seconds"], "loss": statistics.mean(tail)}
            )
    rows = []
    for mode in args.modes:
        counted = _estimator(mode, max(30, args.steps // 3), batch, args.device)
        reads = reads_per_step(counted, Xs, Xt)
        rate = [r["steps_per_s"] for r in runs[mode]]
        rows.append(
            {
                "d": d,
                "batch": batch,
                "mode": mode,
                "masked_iter": MODES[mode][0],
                "solver": MODES[mode][1],
                "steps_per_s": statistics.median(rate),
                "steps_per_s_runs": rate,
                "final_loss": statistics.mean(r["loss"] for r in runs[mode]),
                "host_reads_per_step": reads,
            }
        )
    first = rows[0]["steps_per_s"]  # the first mode's: adaptive, where it runs
    for row in rows:
        row["speed_vs_adaptive"] = row["steps_per_s"] / first
    return rows


def rendered(payload: dict) -> str:
    r"""The table from the JSON: steps per second of each mode, its ratio to the first mode's
    (the adaptive solve's) at the same (d, batch size), the host reads per step and the final
    loss."""
    return markdown_table(
        payload["rows"],
        [
            ("d", "d"),
            ("batch", "batch"),
            ("mode", "conjugates' solve"),
            ("steps_per_s", "steps/s"),
            ("speed_vs_adaptive", "÷ adaptive"),
            ("host_reads_per_step", "host reads/step"),
            ("final_loss", "final loss"),
        ],
    )


def main(argv: Sequence[str] | None = None) -> dict:
    r"""Runs the benchmark from command-line arguments; returns what it writes as JSON."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/step_speed.py", description=description(__doc__)
    )
    parser.add_argument("--w2bench", type=Path, default=None, help="the W2 benchmark folder")
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256])
    parser.add_argument("--steps", type=int, default=300, help="training steps per fit")
    parser.add_argument("--repeats", type=int, default=2, help="fits per mode")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=list(MODES)[:3],
        choices=list(MODES),
        help="how the conjugates are solved (the first is the ratios' reference)",
    )
    parser.add_argument("--samples", type=int, default=20000, help="samples per side")
    add_device_option(parser)
    parser.add_argument("--quick", action="store_true", help="a smoke run: d = 2, 30 steps")
    add_threads_option(parser)
    add_out_option(parser, "step_speed.json")
    args = parser.parse_args(argv)
    as_device(args.device, "--device")
    if args.quick:
        args.dims, args.batch_sizes, args.steps, args.repeats = [2], [64], 30, 1
        args.samples = 1000
    set_threads(args.threads)
    rows = [row for d in args.dims for b in args.batch_sizes for row in measure(d, b, args)]
    payload = {
        "machine": machine() | {"threads": args.threads or torch.get_num_threads()},
        "device": str(args.device),
        "args": vars(args) | {"out": str(args.out), "w2bench": str(args.w2bench)},
        "rows": rows,
    }
    print(rendered(payload))
    write_json(args.out, payload, smoke=args.quick)
    return payload


if __name__ == "__main__":
    main()
