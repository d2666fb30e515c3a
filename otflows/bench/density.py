r"""Density estimation on the 2-D toys and a real data set that ships offline: stacked Brenier
flows beside CP-Flow (``cpflows``), MAF and IAF (``nflows``).

    otflows bench density                  # toys and digits (about 2 h on 2 cores)
    otflows bench density --quick          # a smoke run
    otflows bench density --data power --root ~/data/maf   # a tabular set read from disk

Data: the toys eight Gaussians, checkerboard (entropy log 8 = 2.079 nats, the floor of its NLL) and
two moons (20 000 training, 2 000 validation, 10 000 test samples); scikit-learn's digits (8 × 8
images with levels 0…16, 64-d; 1257 training, 180 validation, 360 test images), uniformly
dequantised to x = v + u, u ~ U[0, 1)⁶⁴, then standard-scaled (the training set's mean and std)
or logit-scaled (s = α + (1 − 2α)·x/17, α = 0.05); and, from a local path, POWER, GAS, HEPMASS,
MINIBOONE and BSDS300 (see :mod:`otflows.datasets.tabular`). Every model trains by maximum
likelihood with Adam and a cosine schedule, keeping the weights of the best validation NLL
(validated every 25 steps on a training set under 10 000 rows, else once per epoch). On such a
small set the Brenier flow starts from the Gaussian fitted to the training set
(:meth:`otflows.BrenierFlow.start_from_gaussian`; ``--brenier-start``); that Gaussian (full
covariance, closed form) is the reference row "gaussian".
Scores: the test NLL in nats of the data (digits: of the dequantised levels x, the
preprocessing's log-det included) and, for digits, in bits per dimension (a uniform model scores
log₂ 17 = 4.09). Prints markdown and writes JSON.
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
from torch.distributions import MultivariateNormal

from otflows.bench.baselines import CPFlow, autoregressive_flow, parameter_count
from otflows.bench.common import (
    add_device_option,
    add_out_option,
    add_threads_option,
    aggregate,
    description,
    report,
    run_isolated,
    set_threads,
)
from otflows.datasets import TOYS
from otflows.datasets.tabular import TABULAR, load_tabular
from otflows.flows import BrenierFlow
from otflows.metrics import log_prob
from otflows.sizes import ROWS_PER_DIMENSION
from otflows.training import fit_flow, starts_at_gaussian
from otflows.validation import as_device

METHODS = ("gaussian", "brenier", "cpflow", "maf", "iaf")
ALPHA = 0.05  # the logit transform's margin (as MAF, Papamakarios et al. 2017)
# Models of a small training set (digits: 1257 rows) overfit within a few hundred steps, so
# they are validated this often (else once per epoch, at most 20 times).
SMALL_DATA, SMALL_VALIDATION_INTERVAL = 10_000, 25
# The Brenier flow's start: "auto" is fit_flow's rule (otflows.training.starts_at_gaussian:
# the Gaussian of the training set where rows per dimension are few, else random weights)
STARTS = ("auto", "gaussian", "random")


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


def build(method: str, d: int, X: torch.Tensor, size: str, start: str) -> Any:
    """The model of ``method`` at dimension ``d``, initialised on ``X``; ``size`` is "toy" or
    "large"; ``start`` is the Brenier flow's (see :data:`STARTS`)."""
    toy = size == "toy"
    flow: Any  # a BrenierFlow, a CPFlow or an nflows Flow
    if method == "brenier":
        flow = BrenierFlow(
            d, "mmgn", num_blocks=8 if toy else 3, hidden_features=32, num_modules=8 if toy else 4
        )
        if start == "gaussian" or (start == "auto" and starts_at_gaussian(*X.shape)):
            flow.start_from_gaussian(X)
        return flow
    if method == "cpflow":
        flow = CPFlow(d, num_blocks=4 if toy else 2, bruteforce=d <= 2)
        flow.initialize(X[:512])
        return flow
    # beyond 2 layers, an untrained IAF's density direction (D sequential inversions per
    # layer) overflows on the 64-d digits, so the large IAF has 2 layers
    layers = 5 if toy or method == "maf" else 2
    return autoregressive_flow(d, method, num_layers=layers, hidden_features=64 if toy else 256)


def run(
    dataset: str,
    method: str,
    seed: int,
    steps: int,
    scaling: str,
    root: str | None,
    threads: int | None,
    small: bool,
    start: str = "auto",
    device: str = "cpu",
) -> dict:
    """Trains and scores one model on ``device`` (run in a fresh process by :func:`main`)."""
    set_threads(threads)
    splits = data(dataset, seed, scaling, Path(root) if root else None, small)
    X = torch.as_tensor(splits["train"], dtype=torch.float32)
    d = X.shape[1]
    torch.manual_seed(seed)
    if method == "gaussian":  # the closed-form reference: the training set's mean and covariance
        X64, test = (torch.as_tensor(splits[k], dtype=torch.float64) for k in ("train", "test"))
        log_p = MultivariateNormal(X64.mean(0), torch.cov(X64.T)).log_prob(test).numpy()
        fitted = {"parameters": d + d * (d + 1) // 2, "seconds": 0.0, "best_step": None}
    else:
        model = build(method, d, X, "toy" if d <= 2 else "large", start).to(device)
        history = fit_flow(
            model,
            X.to(device),
            max_iter=steps,
            batch_size=256 if d <= 2 else 128,
            lr=1e-2 if method == "cpflow" or (method == "brenier" and d <= 2) else 1e-3,
            X_val=splits["val"],
            gaussian_start=False,  # build() starts the flow
            patience=None,
            keep_gaussian=False,
            clip_grad=10.0,
            random_state=seed,
            progress=False,
            validation_interval=SMALL_VALIDATION_INTERVAL if len(X) < SMALL_DATA else None,
        )
        log_p = log_prob(model, splits["test"], batch_size=1000).double().cpu().numpy()
        fitted = {
            "parameters": parameter_count(model),
            "seconds": history.seconds,
            "best_step": history.best_step,
        }
    if "test_offset" in splits:
        log_p = log_p + splits["test_offset"]
    test_nll = float(-log_p.mean())
    row = {
        "nll": test_nll,
        "nll_se": float(log_p.std() / math.sqrt(len(log_p))),
        **fitted,
    }
    if dataset == "digits":
        row["bits_per_dim"] = test_nll / (d * math.log(2))
    return row


COLUMNS = [
    ("data", "data"),
    ("method", "method"),
    ("nll", "test NLL (nats)"),
    ("bits_per_dim", "bits/dim"),
    ("reference", "reference"),
    ("parameters", "params"),
    ("seconds", "train s"),
    ("error", "error"),
]


def summarise(
    runs: list[dict], names: Sequence[str], methods: Sequence[str], seeds: int
) -> list[dict]:
    """One row per data set and method (mean ± std over seeds); the Brenier flow's row gives
    its gap to the best baseline."""
    rows = []
    for name in names:
        for method in methods:
            group = [r for r in runs if r["data"] == name and r["method"] == method]
            done = [r for r in group if "error" not in r]
            row: dict[str, Any] = {"data": name, "method": method}
            if done:
                row |= aggregate(
                    done, [k for k in ("nll", "bits_per_dim", "seconds") if k in done[0]]
                )
                row["parameters"] = done[0]["parameters"]
            else:
                row["error"] = group[0]["error"]
            if name == "checkerboard":
                row["reference"] = f"entropy {math.log(8):.3f}"
            rows.append(row)
        scored = [r for r in runs if r["data"] == name and "nll" in r]
        best = [
            statistics.mean(r["nll"] for r in scored if r["method"] == m)
            for m in ("cpflow", "maf", "iaf")
            if any(r["method"] == m for r in scored)
        ]
        ours = [r["nll"] for r in scored if r["method"] == "brenier"]
        if best and ours and len(ours) == seeds:
            gap = (statistics.mean(ours) - min(best)) / abs(min(best))
            row = next(r for r in rows if r["data"] == name and r["method"] == "brenier")
            row["reference"] = f"{100 * gap:+.1f} % vs best baseline"
    return rows


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the benchmark from command-line arguments; returns what it writes as JSON."""
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
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument(
        "--brenier-start",
        default="auto",
        choices=STARTS,
        help="the Brenier flow's start: the Gaussian of the training set or random weights "
        f"(auto: the Gaussian with fewer than {ROWS_PER_DIMENSION} rows per dimension)",
    )
    parser.add_argument("--seeds", type=int, default=1)
    add_threads_option(parser)
    add_device_option(parser)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (two moons, 10 steps): its numbers mean nothing",
    )
    add_out_option(parser, "density.json")
    args = parser.parse_args(argv)
    as_device(args.device, "--device")
    if args.quick:
        args.data, args.steps, args.seeds = ["two_moons"], 10, 1
    if "digits" in args.data and find_spec("sklearn") is None:
        print("digits skipped: it is read with scikit-learn (pip install scikit-learn)")
        args.data = [name for name in args.data if name != "digits"]
    options = dict(
        steps=args.steps,
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
    runs = run_isolated(run, plan, "density", fresh=not args.quick)
    for r in runs:
        r["data"] = r.pop("dataset")
    rows = summarise(runs, args.data, args.methods, args.seeds)
    return report(args, rows, COLUMNS, runs)


if __name__ == "__main__":
    main()
