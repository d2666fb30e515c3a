r"""OT-map accuracy against CPU time on the continuous :math:`W_2` benchmark: otflows beside
the peers a user would run instead.

    otflows bench peers --w2bench PATH/TO/w2bench --dims 8 16 --budget 300 --jobs 2

Every method fits the benchmark's Mix3 → Mix10 pair at each ``d`` (Korotin et al. 2021, the
benchmark's own input mixture) from the same ``--samples`` training samples per side, in its
own process on one CPU thread. Its clock is the process's CPU time (``time.process_time``,
all of its threads), scoring excluded; with ``--device cuda`` every method runs on the GPU
(otflows and the entropic map in torch, the OTT-JAX peers in JAX, which takes the GPU where it
has one), one run at a time, and the clock is wall-clock time. At checkpoints on a 1–2–5 grid
of seconds, and at the end, the map is scored on 4096 fresh source points against the known
map (L2-UVP and cosine, :mod:`otflows.metrics`). A run stops at ``--budget`` seconds or at the
end of its own schedule, whichever comes first. A method that fails or diverges is reported
with its error, never dropped.

Methods (``--methods``), each with its authors' recommended settings:

- ``otflows``: :class:`otflows.BrenierMap` as released (QuadraticICNN, semi-dual with exact
  conjugates, 2000 steps; the defaults study chose them); ``otflows-timed``: the same fitted
  for the budget instead of 2000 steps (``BrenierMap(max_time=budget, max_iter=10**6)``: the
  learning rate anneals over the time; its budget is read in the process's CPU seconds, like
  every method's clock).
- ``entropic``: the entropic map (:class:`otflows.EntropicMap`; Pooladian & Niles-Weed
  2021) of the first 5000 samples per side, ε = 0.05 × their mean squared distance: one
  Sinkhorn solve, scored once it has converged.
- ``ott-enot``: OTT-JAX's ``ExpectileNeuralDual`` (Buzun et al. 2024) with the library's
  defaults (MLP potentials 4 × 128, ELU; Adam 3e-4, β₂ = 0.9; expectile 0.99, weight 1).
- ``ott-w2nd-icnn``: OTT-JAX's ``W2NeuralDual`` (Amos 2023) as OTT-JAX's neural-dual
  tutorial sets it up: an ICNN potential 4 × 64 with positive weights, initialised from the
  Gaussian map of a minibatch of each side, and an MLP for the conjugate's gradient; Adam
  (β = 0.5, 0.5 and 0.9, 0.999), cosine from 1e-3 over 5001 steps.
- ``ott-w2nd-mlp``: ``W2NeuralDual`` with non-convex ``PotentialMLP`` potentials 4 × 64 and
  the optimiser of OTT-JAX's neural-dual tutorial (AdamW, cosine from 5e-4 over 20 001
  steps).

The peers draw minibatches of ``--batch-size`` (1024, the benchmark's protocol) with
replacement from the training samples. They install with ``pip install "otflows[peers]"``;
a peer that is not installed is skipped with a message. POT's ``NearestBrenierPotential``
is not run: it solves a quadratically constrained program with one constraint per pair of
samples (cvxpy), 4·10⁸ at 20 000 samples per side. Beside every ``d`` stands the best
published L2-UVP (Korotin et al. 2021: GPU runs of 20 000–250 000 iterations, hours per pair).
Writes JSON and a figure of L2-UVP against CPU seconds (GPU wall-clock seconds), one panel
per ``d``.

    otflows bench peers --w2bench PATH --device cuda --dims 8 64 128 --budget 75 \
        --methods otflows-timed ott-enot --out benchmarks/results/peers_gpu_75s.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from otflows.bench import peer_methods
from otflows.bench.clock import Clock, unit
from otflows.bench.common import (
    add_device_option,
    add_out_option,
    description,
    machine,
    markdown_table,
    provenance,
    save_figure,
    set_threads,
    write_json,
)
from otflows.bench.processes import in_parallel
from otflows.validation import as_device

__all__ = ["METHODS", "PUBLISHED_BEST", "main"]

# Best published L2-UVP (%) per d on Mix3 → Mix10 (Korotin et al. 2021, over all their solvers).
PUBLISHED_BEST = {2: 0.1, 4: 0.3, 8: 0.7, 16: 1.4, 32: 2.8, 64: 3.2, 128: 2.0, 256: 2.6}
METHODS = ("otflows", "otflows-timed", "entropic", "ott-enot", "ott-w2nd-icnn", "ott-w2nd-mlp")
IMPORTS = {
    "otflows": ("ot", "otflows.maps"),
    "entropic": ("otflows.maps",),
    "ott": (
        "jax",
        "optax",
        "ott.neural.methods.neuraldual",
        "ott.neural.methods.expectile_neural_dual",
    ),
}
REPORT_AT = (60, 300, 900, 3600)  # CPU seconds at which the table compares the methods


def _data(d: int, args: argparse.Namespace) -> dict[str, np.ndarray]:
    r"""Training samples ``Xs``, ``Xt`` and scoring points ``X`` with their true image ``Y``:
    of the W2 benchmark's pair, or of a Gaussian pair in a smoke run."""
    from otflows.datasets import GaussianCoupling, W2BenchmarkPair

    if args.quick:
        gaussian = GaussianCoupling.random_pair(d, seed=0)
        source, target, true_map = gaussian.sample, gaussian.sample_target, gaussian.brenier_map
    else:
        pair = W2BenchmarkPair(args.w2bench, d)
        source, target, true_map = pair.sample_source, pair.sample_target, pair.brenier_map
    X = source(args.test_samples, seed=3)
    return {
        "Xs": source(args.samples, seed=1),
        "Xt": target(args.samples, seed=2),
        "X": X,
        "Y": true_map(X),
    }


def _scorer(data: dict[str, np.ndarray]) -> Callable:
    from otflows.metrics import l2_uvp, map_cosine

    def score(transport: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
        pred = np.asarray(transport(data["X"]), dtype=np.float64)
        if not np.isfinite(pred).all():
            return math.nan, math.nan
        return l2_uvp(pred, data["Y"]), map_cosine(data["X"], pred, data["Y"])

    return score


def fit_one(d: int, method: str, args: argparse.Namespace) -> dict[str, Any]:
    r"""One method's run on the pair at ``d``, in this (fresh, one-thread) process: its
    checkpoints ``points`` (CPU seconds, or GPU wall-clock seconds; step, L2-UVP, cos), how
    it stopped and the machine (:func:`otflows.bench.common.machine`)."""
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

    set_threads(1)
    row: dict[str, Any] = {"d": d, "method": method, "points": [], "machine": machine()}
    try:
        data = _data(d, args)
        # the imports are not the method's training time
        family = "otflows" if method.startswith("otflows") else method.split("-")[0]
        for module in IMPORTS[family]:
            importlib.import_module(module)
        timer = time.process_time if args.device == "cpu" else time.perf_counter
        clock = Clock(args.budget, _scorer(data), timer)
        row["points"] = clock.points  # filled as the run goes, kept if it fails
        if method.startswith("otflows"):
            timed = method == "otflows-timed"
            row |= peer_methods.run_otflows(data, clock, args.steps, timed, args.seed, args.device)
        elif method == "entropic":
            row |= peer_methods.run_entropic(data, clock, args.device)
        else:
            row |= peer_methods.run_ott(method, data, clock, args.batch_size, args.seed)
    except Exception as error:  # reported in the table, never dropped
        row["error"] = f"{type(error).__name__}: {error}"
    if row["points"] and not math.isfinite(row["points"][-1][2]):
        row["error"] = f"diverged (non-finite map) after {row['points'][-1][0]:.0f} CPU s"
    return row


def at(points: list, seconds: float) -> float | None:
    r"""The L2-UVP of the last checkpoint at or before ``seconds`` CPU seconds, within 1 %
    (a run stops at its first checkpoint past its budget); ``None`` before the first.

    Example:
        >>> at([(1.0, 10, 5.0, 0.9), (4.0, 40, 2.0, 0.99)], 3.0)
        5.0
        >>> at([(1.0, 10, 5.0, 0.9), (300.2, 40, 2.0, 0.99)], 300)
        2.0
    """
    before = [p for p in points if p[0] <= 1.01 * seconds]
    return before[-1][2] if before else None


def rows(runs: list[dict], budget: float) -> list[dict]:
    r"""The table: per ``d`` the published best, then each method's L2-UVP at the
    :data:`REPORT_AT` CPU seconds within the budget, at its end, and its error if any."""
    table = []
    for d in sorted({r["d"] for r in runs}):
        if d in PUBLISHED_BEST:
            table.append(
                {
                    "d": d,
                    "method": "published best (GPU, hours)",
                    "final": PUBLISHED_BEST[d],
                }
            )
        for run in sorted(
            (r for r in runs if r["d"] == d), key=lambda r: METHODS.index(r["method"])
        ):
            row = {"d": d, "method": run["method"], "error": run.get("error")}
            for seconds in REPORT_AT:
                if seconds <= budget:
                    row[f"at_{seconds}"] = at(run["points"], seconds)
            if run["points"]:
                seconds, step, uvp, cos = run["points"][-1]
                row |= {"final": uvp, "cos": cos, "steps": step, "cpu_s": seconds}
            table.append(row)
    return table


def columns(budget: float, clock: str = "CPU s") -> list[tuple[str, str]]:
    r"""The table's columns for a run of ``budget`` seconds of ``clock`` (:func:`unit`)."""
    return [
        ("d", "d"),
        ("method", "method"),
        *((f"at_{s}", f"L2-UVP (%) at {s} {clock}") for s in REPORT_AT if s <= budget),
        ("final", "L2-UVP (%) at the end"),
        ("cos", "cos"),
        ("steps", "steps"),
        ("cpu_s", clock),
        ("error", "error"),
    ]


def rendered(payload: dict) -> str:
    r"""The table of the benchmark's JSON ``payload``, from its runs' checkpoints."""
    budget = float(payload["args"]["budget"])
    return markdown_table(rows(payload["runs"], budget), columns(budget, unit(payload)))


def figure(payload: dict) -> Figure:
    r"""L2-UVP against CPU seconds, or GPU wall-clock seconds (log axes), of the JSON
    ``payload``'s runs, one panel per ``d`` (four to a row), the published best as a dashed
    line."""
    runs = payload["runs"]
    dims = sorted({r["d"] for r in runs})
    columns = min(len(dims), 4)
    rows = -(-len(dims) // columns)
    fig = Figure(figsize=(3.6 * columns, 3.2 * rows))
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, d in zip(axes, dims, strict=False):
        for run in (r for r in runs if r["d"] == d and r["points"]):
            seconds, _, uvp, _ = zip(*run["points"], strict=True)
            ax.plot(seconds, uvp, marker=".", label=run["method"])
        if d in PUBLISHED_BEST:
            ax.axhline(PUBLISHED_BEST[d], color="k", ls="--", lw=1, label="published best")
        ax.set(xscale="log", yscale="log", title=f"d = {d}", xlabel=unit(payload))
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes[len(dims) :]:
        ax.set_axis_off()
    for ax in axes[::columns]:
        ax.set_ylabel("L2-UVP (%)")
    axes[len(dims) - 1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _kept_runs(
    path: Path, tasks: list[tuple[int, str]], budget: float, args_device: str
) -> list[dict]:
    r"""The runs of the JSON at ``path`` that ``tasks`` do not redo, each with its own
    provenance (the file's, where the run has none)."""
    if not path.is_file():
        return []
    payload = json.loads(path.read_text())
    device = payload["args"].get("device", "cpu")
    if device != args_device:
        raise ValueError(
            f"--update keeps the runs of {path}, run on {device}; this run is on {args_device}"
        )
    if float(payload["args"]["budget"]) != budget:
        raise ValueError(
            f"--update keeps the runs of {path}, whose budget is {payload['args']['budget']} "
            f"CPU s; this run's is {budget}"
        )
    origin = {key: payload.get(key) for key in ("command", "commit", "date")}
    return [origin | run for run in payload["runs"] if (run["d"], run["method"]) not in tasks]


def _parser() -> argparse.ArgumentParser:
    """``otflows bench peers``' options."""
    parser = argparse.ArgumentParser(prog="otflows bench peers", description=description(__doc__))
    parser.add_argument("--w2bench", type=Path, default=None, help="the W2 benchmark folder")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--budget", type=float, default=300.0, help="CPU seconds (GPU: wall-clock) per run"
    )
    add_device_option(
        parser,
        " ('cpu': CPU time, one thread per run; a GPU: every method "
        "on it, timed by the wall clock, one run at a time)",
    )
    parser.add_argument("--samples", type=int, default=20_000, help="training samples per side")
    parser.add_argument("--test-samples", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=1024, help="the peers' minibatch")
    parser.add_argument("--steps", type=int, default=2000, help="otflows' steps (its default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (one thread each)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (a d = 2 Gaussian pair, 5 CPU s): its numbers mean nothing",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="rerun only these (d, method) runs: the other runs of --out's JSON are kept "
        "(same --budget), each run with its own command, commit and date",
    )
    add_out_option(parser, "peers.json", figure=True)
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the benchmark from command-line arguments; returns what it writes as JSON."""
    args = _parser().parse_args(argv)
    as_device(args.device, "--device")
    if args.device != "cpu":
        args.jobs = 1  # runs sharing a GPU would share its time
    if args.quick:
        args.dims, args.budget, args.samples, args.test_samples = [2], 5.0, 2000, 512
        args.steps = 20
    if not args.quick and (args.w2bench is None or not args.w2bench.is_dir()):
        print(f"skipped: no W2 benchmark folder {args.w2bench} (give --w2bench PATH)")
        return {}
    methods = []
    for method in args.methods:
        if method.startswith("ott") and importlib.util.find_spec("ott") is None:
            print(f"{method} skipped: OTT-JAX is not installed (pip install 'otflows[peers]')")
        else:
            methods.append(method)

    def describe(run: dict) -> str:
        last = run["points"][-1] if run["points"] else None
        score = "no checkpoint" if last is None else f"{last[2]:.3g} % after {last[0]:.0f} CPU s"
        return f"d = {run['d']} {run['method']}: {run.get('error') or score}"

    tasks = [(d, method) for d in args.dims for method in methods]
    kept = _kept_runs(args.out, tasks, args.budget, args.device) if args.update else []
    runs = [run | provenance() for run in in_parallel(fit_one, tasks, args, args.jobs, describe)]
    runs = sorted(kept + runs, key=lambda r: (r["d"], METHODS.index(r["method"])))
    payload = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "rows": rows(runs, args.budget),
        "runs": runs,
    }
    print(rendered(payload))
    drawn = save_figure(figure(payload), args.out)
    write_json(args.out, payload, smoke=args.quick, figure=drawn)
    return payload


if __name__ == "__main__":
    main()
