r"""Density estimation at equal CPU time on the 2-D toys and a real data set that ships offline:
the Brenier flow at otflows' defaults beside the neural spline flows of zuko and nflows, CP-Flow
(``cpflows``), MAF and IAF (``nflows``).

    otflows bench density --jobs 2        # toys and digits, 60 CPU s per run (about 15 min)
    otflows bench density --quick          # a smoke run
    otflows bench density --data power --root ~/data/maf   # a tabular set read from disk

Data: the toys eight Gaussians, checkerboard (entropy log 8 = 2.079 nats, the floor of its NLL) and
two moons (20 000 training, 2 000 validation, 10 000 test samples); scikit-learn's digits (8 × 8
images with levels 0…16, 64-d; 1257 training, 180 validation, 360 test images), uniformly
dequantised to x = v + u, u ~ U[0, 1)⁶⁴, then standard-scaled (the training set's mean and std)
or logit-scaled (s = α + (1 − 2α)·x/17, α = 0.05); and, from a local path, POWER, GAS, HEPMASS,
MINIBOONE and BSDS300 (see :mod:`otflows.datasets.tabular`).

Every model trains for the same budget of CPU seconds (``--budget``; one thread each), by maximum
likelihood with Adam and a cosine schedule spread over the budget (:func:`otflows.fit_flow` with
``max_time``), validated 20 times over the budget (every 25 steps on a training set under 10 000
rows) and keeping its best validated weights. The models are as their authors' examples set them
up: zuko's ``NSF`` (3 transforms, MADE 2 × 64; 2 × 256 beyond 2-D) and nflows' rational-quadratic
autoregressive flow (5 layers) at Adam's 1e-3, MAF and IAF (nflows) at 1e-3, CP-Flow (``cpflows``)
at 1e-2; the Brenier flow is the one ``otflows fit`` builds
(``BrenierFlow(d)``: :data:`otflows.flows.DENSITY_FLOW`), at
:func:`otflows.fit_flow`'s learning rate, start and Gaussian fallback. The Gaussian of the training
set (full covariance, closed form) is the reference row "gaussian".

Scores: at checkpoints through each run (1–2–5 CPU seconds, their scoring not counted) the
validation and test NLL; a model's NLL at ``t`` seconds is the test NLL of its best validated
checkpoint by then, in nats of the data (digits: of the dequantised levels x, the
preprocessing's log-det included; also in bits per dimension, where a uniform model scores
log₂ 17 = 4.09). The Brenier row gives its share of NSF's gain over the Gaussian. Prints
markdown, writes JSON and draws NLL against CPU seconds, one panel per data set.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from torch.distributions import MultivariateNormal

from otflows.bench.baselines import CPFlow, autoregressive_flow, parameter_count, spline_flow
from otflows.bench.clock import at, timed_fit, unit
from otflows.bench.common import (
    add_device_option,
    add_out_option,
    add_threads_option,
    aggregate,
    description,
    markdown_table,
    report,
    set_threads,
)
from otflows.bench.processes import in_parallel, isolated, run_isolated
from otflows.datasets import TOYS
from otflows.datasets.tabular import TABULAR, load_tabular
from otflows.flows import BrenierFlow
from otflows.metrics import log_prob
from otflows.validation import as_device

METHODS = ("gaussian", "brenier", "nsf", "rqnsf", "cpflow", "maf", "iaf")
ALPHA = 0.05  # the logit transform's margin (as MAF, Papamakarios et al. 2017)
# Models of a small training set (digits: 1257 rows) overfit within a few hundred steps, so
# they are validated this often (else 20 times over the budget, as fit_flow's max_time does).
SMALL_DATA, SMALL_VALIDATION_INTERVAL = 10_000, 25
# The Brenier flow's start (fit_flow's gaussian_start): "auto" is fit_flow's rule
# (otflows.training.gaussian.starts_at_gaussian: the Gaussian of the training set where rows per
# dimension are few, else random weights)
STARTS = {"auto": "auto", "gaussian": True, "random": False}
REPORT_AT = (10, 30, 60, 300, 900)  # CPU seconds at which the table compares the methods


def digits(scaling: str, seed: int) -> dict:
    r"""scikit-learn's digits, dequantised and scaled; ``offset[N]`` is the log-det of the
    scaling, so that :math:`\log p(x) = \log p(z) + \text{offset}` for the levels ``x``."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    levels = load_digits().data
    order = rng.permutation(len(levels))
    x = levels[order] + rng.random(levels.shape)  # uniform dequantisation, in [0, 17)
    if scaling == "logit":
        s = ALPHA + (1 - 2 * ALPHA) * x / 17.0
        z = np.log(s) - np.log1p(-s)
        offset = np.sum(np.log((1 - 2 * ALPHA) / 17.0) - np.log(s) - np.log1p(-s), axis=1)
    elif scaling == "standard":
        mean, std = x[:1257].mean(0), x[:1257].std(0) + 1e-3
        z = (x - mean) / std
        offset = np.full(len(x), -np.log(std).sum())
    else:
        raise ValueError(f"scaling must be 'logit' or 'standard'; got {scaling!r}")
    return {
        "train": z[:1257],
        "val": z[1257:1437],
        "test": z[1437:],
        "test_offset": offset[1437:],
    }


def data(name: str, seed: int, scaling: str, root: Path | None, small: bool = False) -> dict:
    """Training, validation and test splits of ``name`` (and the test log-det offset); toys
    ``small`` are a tenth of the size (for smoke runs)."""
    if name in TOYS:
        sample, scale = TOYS[name], 10 if small else 1
        return {
            "train": sample(20_000 // scale, seed=3 * seed),
            "val": sample(2_000 // scale, seed=3 * seed + 1),
            "test": sample(10_000 // scale, seed=3 * seed + 2),
        }
    if name == "digits":
        return digits(scaling, seed)
    if root is None:
        raise ValueError(f"data set {name!r} is read from disk: give --root PATH")
    return load_tabular(name, root)


def build(method: str, d: int, X: torch.Tensor) -> Any:
    """The model of ``method`` at dimension ``d`` (a toy's or a larger set's size), initialised
    on ``X`` where it needs to be."""
    toy = d <= 2
    if method == "brenier":
        return BrenierFlow(d)
    if method in ("nsf", "rqnsf"):
        package, layers = ("zuko", 3) if method == "nsf" else ("nflows", 5)
        return spline_flow(d, package, num_layers=layers, hidden_features=64 if toy else 256)
    if method == "cpflow":
        flow = CPFlow(d, num_blocks=4 if toy else 2, bruteforce=toy)
        flow.initialize(X[:512])
        return flow
    # beyond 2 layers, an untrained IAF's density direction (D sequential inversions per
    # layer) overflows on the 64-d digits, so the large IAF has 2 layers
    layers = 5 if toy or method == "maf" else 2
    return autoregressive_flow(d, method, num_layers=layers, hidden_features=64 if toy else 256)


def _nll(model: Any, x: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
    """The per-row NLL ``[N]`` of ``x`` (plus the scaling's log-det ``offset``), float64."""
    log_p = log_prob(model, x, batch_size=1000).double().cpu().numpy()
    return -(log_p if offset is None else log_p + offset)


def run(
    dataset: str,
    method: str,
    seed: int,
    budget: float,
    scaling: str,
    root: str | None,
    threads: int | None,
    small: bool,
    start: str = "auto",
    device: str = "cpu",
) -> dict:
    """Trains ``method`` for ``budget`` seconds (CPU seconds on the CPU, wall-clock on a GPU)
    and scores it (run in a fresh process by :func:`main`): its checkpoints ``points``
    ``(seconds, step, validation NLL, test NLL)``, the last of the kept weights."""
    set_threads(threads)
    splits = data(dataset, seed, scaling, Path(root) if root else None, small)
    X = torch.as_tensor(splits["train"], dtype=torch.float32)
    d = X.shape[1]
    offset = splits.get("test_offset")
    torch.manual_seed(seed)
    if method == "gaussian":  # the closed-form reference: the training set's mean and covariance
        X64, test = (torch.as_tensor(splits[k], dtype=torch.float64) for k in ("train", "test"))
        log_p = MultivariateNormal(X64.mean(0), torch.cov(X64.T)).log_prob(test).numpy()
        nll = -(log_p if offset is None else log_p + offset)
        points = [(0.0, 0, None, float(nll.mean()))]
        return {"parameters": d + d * (d + 1) // 2, "points": points} | _scores(nll, d, dataset)
    model = build(method, d, X).to(device)

    def score(model: Any) -> tuple[float, float]:
        validation = _nll(model, splits["val"], None).mean()
        return float(validation), float(_nll(model, splits["test"], offset).mean())

    brenier = method == "brenier"
    clock, history = timed_fit(
        model,
        X.to(device),
        budget,
        score,
        device,
        batch_size=256 if d <= 2 else 128,
        lr=None if brenier else 1e-2 if method == "cpflow" else 1e-3,
        X_val=splits["val"],
        gaussian_start=STARTS[start] if brenier else False,
        keep_gaussian=brenier,
        clip_grad=10.0,
        random_state=seed,
        validation_interval=SMALL_VALIDATION_INTERVAL if len(X) < SMALL_DATA else None,
    )
    row: dict[str, Any] = {"parameters": parameter_count(model), "points": clock.points}
    if history is None:
        return row | {"error": f"diverged after {clock.points[-1][0]:.0f} s"}
    row |= {"best_step": history.best_step, "steps": len(history.loss)}
    return row | _scores(_nll(model, splits["test"], offset), d, dataset)


def _scores(nll: np.ndarray, d: int, dataset: str) -> dict[str, float]:
    """The test NLL ``[N]``'s mean, its standard error and (digits) bits per dimension."""
    scores = {"nll": float(nll.mean()), "nll_se": float(nll.std() / math.sqrt(len(nll)))}
    if dataset == "digits":
        scores["bits_per_dim"] = scores["nll"] / (d * math.log(2))
    return scores


def _at_or_nan(points: Sequence[Sequence], seconds: float) -> float:
    value = at(points, seconds)
    return math.nan if value is None else value


def rows(runs: list[dict], budget: float) -> list[dict]:
    """One row per data set and method: its test NLL at :data:`REPORT_AT` seconds within the
    budget and at the end (mean ± std over seeds); the Brenier flow's row also its share of
    the NSF's gain over the Gaussian."""
    table = []
    for name in dict.fromkeys(r["data"] for r in runs):
        for method in METHODS:
            group = [r for r in runs if r["data"] == name and r["method"] == method]
            if not group:
                continue
            row: dict[str, Any] = {"data": name, "method": method}
            done = [r for r in group if "error" not in r]
            if not done:
                table.append(row | {"error": group[0]["error"]})
                continue
            for seconds in (s for s in REPORT_AT if s < budget):
                values = [at(r["points"], seconds) for r in done]
                if all(v is not None for v in values):
                    row |= aggregate([{f"at_{seconds}": v} for v in values], [f"at_{seconds}"])
            for key in ("nll", "bits_per_dim"):
                if key in done[0]:
                    row |= aggregate(done, [key])
            row["parameters"] = done[0]["parameters"]
            if "steps" in done[0]:
                row["steps"] = statistics.mean(r["steps"] for r in done)
            table.append(row)
        mean = {r["method"]: r.get("nll") for r in table if r["data"] == name}
        gaussian, nsf, ours = mean.get("gaussian"), mean.get("nsf"), mean.get("brenier")
        if gaussian is not None and nsf is not None and ours is not None and gaussian != nsf:
            share = (gaussian - ours) / (gaussian - nsf)
            mine = next(r for r in table if r["data"] == name and r["method"] == "brenier")
            mine["share"] = f"{100 * share:.0f} %"
    return table


def columns(budget: float, clock: str = "CPU s") -> list[tuple[str, str]]:
    """The table's columns for runs of ``budget`` seconds of ``clock``."""
    return [
        ("data", "data"),
        ("method", "method"),
        *((f"at_{s}", f"NLL at {s} {clock}") for s in REPORT_AT if s < budget),
        ("nll", f"NLL at {budget:g} {clock}"),
        ("bits_per_dim", "bits/dim"),
        ("share", "share of NSF's gain"),
        ("parameters", "params"),
        ("steps", "steps"),
        ("error", "error"),
    ]


def filled_columns(table: list[dict], budget: float, clock: str) -> list[tuple[str, str]]:
    """The :func:`columns` that some row of ``table`` fills."""
    return [c for c in columns(budget, clock) if any(c[0] in r for r in table)]


def rendered(payload: dict) -> str:
    """The table of the benchmark's JSON ``payload``, from its runs' checkpoints (without the
    columns no row fills)."""
    budget = float(payload["args"]["budget"])
    table = rows(payload["runs"], budget)
    return markdown_table(table, filled_columns(table, budget, unit(payload)))


def figure(payload: dict) -> Figure:
    """Test NLL (of the best validated checkpoint by then) against seconds, one panel per data
    set, the Gaussian as a dashed line."""
    runs = [r for r in payload["runs"] if "error" not in r]
    names = list(dict.fromkeys(r["data"] for r in runs))
    fig = Figure(figsize=(3.8 * len(names), 3.4))
    axes = fig.subplots(1, len(names), squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=True):
        for method in METHODS:
            group = [r for r in runs if r["data"] == name and r["method"] == method]
            if not group:
                continue
            if method == "gaussian":
                ax.axhline(group[0]["nll"], color="k", ls="--", lw=1, label="Gaussian")
                continue
            seconds = sorted({p[0] for r in group for p in r["points"] if p[0] > 0})
            curve = [statistics.mean(_at_or_nan(r["points"], t) for r in group) for t in seconds]
            ax.plot(seconds, curve, marker=".", label=method)
        ax.set(xscale="log", title=name, xlabel=unit(payload))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("test NLL (nats)")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _parser() -> argparse.ArgumentParser:
    """``otflows bench density``'s options."""
    parser = argparse.ArgumentParser(
        prog="otflows bench density", description=description(__doc__)
    )
    choices = [*TOYS, "digits", *TABULAR]
    parser.add_argument(
        "--data",
        nargs="+",
        default=["two_moons", "eight_gaussians", "checkerboard", "digits"],
        choices=choices,
    )
    parser.add_argument("--root", default=None, help="folder of the tabular data sets")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--scaling", default="standard", choices=["logit", "standard"])
    parser.add_argument(
        "--budget", type=float, default=60.0, help="seconds of training per run (CPU s)"
    )
    parser.add_argument(
        "--brenier-start",
        default="auto",
        choices=list(STARTS),
        help="the Brenier flow's start: the Gaussian of the training set, random weights, or "
        "fit_flow's rule (auto)",
    )
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    add_threads_option(parser)
    add_device_option(parser)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (two moons, 2 s per run): its numbers mean nothing",
    )
    add_out_option(parser, "density.json", figure=True)
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the benchmark from command-line arguments; returns what it writes as JSON."""
    args = _parser().parse_args(argv)
    as_device(args.device, "--device")
    if args.quick:
        args.data, args.budget, args.seeds = ["two_moons"], 2.0, 1
    if "digits" in args.data and find_spec("sklearn") is None:
        print("digits skipped: it is read with scikit-learn (pip install scikit-learn)")
        args.data = [name for name in args.data if name != "digits"]
    if "nsf" in args.methods and find_spec("zuko") is None:
        print("nsf skipped: it is zuko's (pip install zuko)")
        args.methods = [method for method in args.methods if method != "nsf"]
    options = dict(
        budget=args.budget,
        scaling=args.scaling,
        root=args.root,
        threads=args.threads,
        small=args.quick,
        start=args.brenier_start,
        device=args.device,
    )
    plan = [
        dict(dataset=name, method=method, seed=seed, **options)
        for name in args.data
        for method in args.methods
        for seed in range(args.seeds)
    ]
    if args.jobs > 1:
        runs = in_parallel(_run, [(kwargs,) for kwargs in plan], args, args.jobs, _describe)
    else:
        runs = run_isolated(run, plan, "density", fresh=not args.quick)
    for r in runs:
        r["data"] = r.pop("dataset")
    payload = {"args": vars(args), "runs": runs}
    table = rows(runs, args.budget)
    filled = filled_columns(table, args.budget, unit(payload))
    return report(args, table, filled, runs, figure(payload))


def _run(kwargs: dict, args: argparse.Namespace) -> dict:
    """One run of the plan, in a worker process of :func:`otflows.bench.common.in_parallel`."""
    return kwargs | isolated(run, False, **kwargs)


def _describe(result: dict) -> str:
    return f"{result['dataset']} {result['method']}: " + (
        result["error"] if "error" in result else f"NLL {result['nll']:.4g}"
    )


if __name__ == "__main__":
    main()
