r"""Which defaults of :func:`otflows.fit_flow` and ``otflows fit`` work on small and medium
data sets nobody tuned them for: is the fitted flow better than the Gaussian on held-out rows?

Each candidate (a :class:`otflows.BrenierFlow` architecture and :func:`otflows.fit_flow`
arguments; everything else at their defaults) is fitted, in a fresh process, to each data set
as ``otflows fit`` would fit it: 20 % of the rows are set aside as a test set, the rest go to
``fit_flow``, which holds out its own validation rows. The data sets are taken as a user
would pass them, unscaled:

- scikit-learn's iris (150 × 4), wine (178 × 13), breast cancer (569 × 30), diabetes (442 ×
  11: the ten features and the target) and digits (1797 × 64, the grey levels dequantised
  with uniform noise);
- 2-D toys of 2000 rows (two moons, checkerboard, swiss roll) and one of 20 000 rows (eight
  Gaussians).

Scores: the test NLL in nats beside the Gaussian's (the training rows' mean and covariance),
over several splits (``--seeds``); the summary gives each candidate's worst and mean gap to
the Gaussian (negative: better than the Gaussian) and its seconds.

    python benchmarks/fit_defaults_study.py --out benchmarks/results/fit_defaults_study.json
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from importlib.util import find_spec
from inspect import signature
from typing import Any

import numpy as np
import torch
from torch.distributions import MultivariateNormal

from otflows.bench.baselines import spline_flow
from otflows.bench.clock import at, timed_fit
from otflows.bench.common import (
    add_study_options,
    aggregate,
    description,
    markdown_table,
    previous_fits,
    set_threads,
    write_json,
)
from otflows.bench.processes import in_parallel
from otflows.datasets import TOYS
from otflows.datasets.w2bench import GaussianMixture
from otflows.flows import BrenierFlow
from otflows.metrics import log_prob, nll
from otflows.training.fit import HELD_OUT_ROWS, fit_flow
from otflows.training.gaussian import starts_at_gaussian
from otflows.validation import split_held_out

__all__ = ["CANDIDATES", "DATA", "main", "split"]

# name: (BrenierFlow's arguments, fit_flow's arguments); hidden_features as otflows fit's
CANDIDATES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "1 block, random start, 20 epochs, lr 1e-2, no fallback": (
        {"net": "mmgn", "num_blocks": 1},
        {
            "epochs": 20,
            "lr": 1e-2,
            "gaussian_start": False,
            "keep_gaussian": False,
            "patience": None,
        },
    ),
    "4 blocks, Gaussian start, lr 1e-3": (
        {"net": "mmgn", "num_blocks": 4},
        {"gaussian_start": True, "lr": 1e-3},
    ),
    "4 blocks, Gaussian start, lr 1e-2": (
        {"net": "mmgn", "num_blocks": 4},
        {"gaussian_start": True, "lr": 1e-2},
    ),
    "4 blocks, random start, lr 1e-2": (
        {"net": "mmgn", "num_blocks": 4},
        {"gaussian_start": False, "lr": 1e-2},
    ),
    # fit_flow's start rule, its choice between the trained weights and the Gaussian by two
    # standard errors, 10 epochs and at least "min_steps" steps
    "M-MGN, lr 1e-3 from the Gaussian, else 1e-2; 2000 steps": (
        {"net": "mmgn", "num_blocks": 4},
        {"lr": None, "min_steps": 2000},
    ),
    "ICGN, lr 1e-2; 2000 steps": (
        {"net": "icgn", "num_blocks": 4},
        {"lr": 1e-2, "min_steps": 2000},
    ),
    "ICGN, lr 1e-2; 4000 steps": (
        {"net": "icgn", "num_blocks": 4},
        {"lr": 1e-2, "min_steps": 4000},
    ),
    # the default given five times its steps (about five times its CPU time)
    "ICGN, lr 1e-2; 5 x (4000 steps)": (
        {"net": "icgn", "num_blocks": 4},
        {"lr": 1e-2, "min_steps": 4000, "times": 5},
    ),
    "ICGN 4 x 64; 4000 steps": (
        {"net": "icgn", "num_blocks": 4, "hidden_features": 64},
        {"lr": 1e-2, "min_steps": 4000},
    ),
    "ICGN 8 x 32; 4000 steps": (
        {"net": "icgn", "num_blocks": 8},
        {"lr": 1e-2, "min_steps": 4000},
    ),
    "ICGN 8 x 16; 4000 steps": (
        {"net": "icgn", "num_blocks": 8, "hidden_features": 16},
        {"lr": 1e-2, "min_steps": 4000},
    ),
    "ICGN, batch 256; 4000 steps": (
        {"net": "icgn", "num_blocks": 4},
        {"lr": 1e-2, "min_steps": 4000, "batch_size": 256},
    ),
    "ICGN, lr 3e-3; 4000 steps": (
        {"net": "icgn", "num_blocks": 4},
        {"lr": 3e-3, "min_steps": 4000},
    ),
    "ICGN, learned gamma; 4000 steps": (
        {"net": "icgn", "num_blocks": 4, "learn_gamma": True},
        {"lr": 1e-2, "min_steps": 4000},
    ),
    "ICGN, lr 2e-2; 4000 steps": (
        {"net": "icgn", "num_blocks": 4},
        {"lr": 2e-2, "min_steps": 4000},
    ),
    "ICGN, lr 3e-2 with warm-up; 4000 steps": (
        {"net": "icgn", "num_blocks": 4},
        {"lr": 3e-2, "min_steps": 4000, "schedule": "warmup_cosine"},
    ),
    "ICGN 6 x 32; 4000 steps": (
        {"net": "icgn", "num_blocks": 6},
        {"lr": 1e-2, "min_steps": 4000},
    ),
    "ICGN 8 x 32, lr 2e-2; 4000 steps": (
        {"net": "icgn", "num_blocks": 8},
        {"lr": 2e-2, "min_steps": 4000},
    ),
    "ICGN, softplus; 4000 steps": (
        {"net": "icgn", "num_blocks": 4, "activation": "softplus"},
        {"lr": 1e-2, "min_steps": 4000},
    ),
    # what a user runs: BrenierFlow(d) (otflows fit's flow) at fit_flow's own settings, and the
    # same flow told the box its data lie in where a user knows one (BOUNDS)
    "fit_flow's defaults": ({}, {}),
    "fit_flow's defaults, the data's bounds": ({"bounds": "known"}, {}),
    # the same given five times its steps (max_iter; about five times its CPU time)
    "fit_flow's defaults, 5 x its steps": ({}, {"min_steps": 4000, "times": 5}),
    # the former defaults: the same without the spline on each feature
    "fit_flow's defaults, no marginal splines": ({"marginals": False}, {}),
}
# the box a user knows the data lie in: digits' grey levels 0…16, dequantised by U[0, 1)
BOUNDS = {"digits": (0.0, 17.0)}
# fit_flow's default: the Gaussian start at 1e-3 with few rows per dimension, the random start
# at 1e-2 with many (starts_at_gaussian); its rows are those two candidates' on each data set
DEFAULT = "default: the Gaussian start at 1e-3 below 100 rows per dimension, else random at 1e-2"
PARTS = ("4 blocks, Gaussian start, lr 1e-3", "4 blocks, random start, lr 1e-2")
SKLEARN = ("iris", "wine", "breast_cancer", "diabetes", "digits")
DATA = {
    **{name: None for name in SKLEARN},
    "two_moons": 2000,
    "checkerboard": 2000,
    "swiss_roll": 2000,
    "eight_gaussians": 20_000,
    "two_moons_20k": 20_000,
    "checkerboard_20k": 20_000,
    "mixture_d8": 20_000,
    "mixture_d16": 30_000,
    "mixture_d32": 30_000,
}
MIXTURE_COMPONENTS = 6
TEST_FRACTION = 0.2
# the spline flow users would otherwise run: zuko's NSF as its README sets it up, trained on
# standardised rows by the plainest loop (Adam 1e-3, batch 256, the best of its validations)
NSF = {"transforms": 3, "hidden_features": [64, 64]}


def load(name: str, seed: int) -> np.ndarray:
    r"""The rows ``[N, D]`` of data set ``name`` (a toy or a mixture drawn with ``seed``):
    ``mixture_dD`` is an equal mixture of :data:`MIXTURE_COMPONENTS` Gaussians in ``D``
    dimensions (:class:`otflows.datasets.w2bench.GaussianMixture`, built with seed 0)."""
    if name.startswith("mixture_d"):
        dim = int(name.removeprefix("mixture_d"))
        mixture = GaussianMixture(dim, components=MIXTURE_COMPONENTS, seed=0)
        return mixture.sample(DATA[name], seed=seed)
    if name not in SKLEARN:
        return TOYS[name.removesuffix("_20k")](DATA[name], seed=seed)
    from sklearn import datasets

    if name == "diabetes":
        X, y = datasets.load_diabetes(return_X_y=True)
        return np.c_[X, y]
    X = getattr(datasets, f"load_{name}")().data
    if name == "digits":  # grey levels 0…16, dequantised
        X = X + np.random.default_rng(seed).uniform(size=X.shape)
    return X


def split(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    r"""``(rest, test)``: a random :data:`TEST_FRACTION` of the rows for testing."""
    X = load(name, seed)
    order = np.random.default_rng(seed).permutation(len(X))
    n = round(TEST_FRACTION * len(X))
    return X[order[n:]], X[order[:n]]


def fit_one(data: str, candidate: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    r"""One candidate fitted to one split, in this process: its test NLL and CPU seconds (the
    NSF: its test NLL at checkpoints through its budget of CPU seconds, ``--nsf-budget`` or,
    with ``--nsf-after``, the split's own in ``args.nsf_budgets``)."""
    set_threads(args.threads)
    rest, test = split(data, seed)
    row: dict[str, Any] = {"data": data, "candidate": candidate, "seed": seed}
    if candidate == "gaussian":
        X, T = torch.as_tensor(rest), torch.as_tensor(test)
        row["nll"] = float(-MultivariateNormal(X.mean(0), torch.cov(X.T)).log_prob(T).mean())
        return row
    if candidate == "nsf":
        budget = args.nsf_budgets.get(f"{data} {seed}", args.nsf_budget)
        return row | nsf_run(rest, test, seed, budget)
    flow_args, fit_args = CANDIDATES[candidate]
    if flow_args.get("bounds") == "known":
        flow_args = flow_args | {"bounds": BOUNDS.get(data)}
    torch.manual_seed(seed)
    flow = BrenierFlow(rest.shape[1], **{"hidden_features": args.hidden_features} | flow_args)
    if "min_steps" in fit_args:  # 10 epochs of the training rows, at least min_steps; "times" that
        batch = fit_args.get("batch_size", signature(fit_flow).parameters["batch_size"].default)
        epochs = 10 * math.ceil(training_shape(data)[0] / batch)
        times = fit_args.get("times", 1)
        fit_args = {k: v for k, v in fit_args.items() if k not in ("min_steps", "times")}
        fit_args["max_iter"] = times * max(CANDIDATES[candidate][1]["min_steps"], epochs)
    if args.max_iter is not None:
        fit_args = {k: v for k, v in fit_args.items() if k != "epochs"} | {
            "max_iter": args.max_iter
        }
    start = time.process_time()
    try:
        history = fit_flow(flow, rest, random_state=seed, progress=False, **fit_args)
    except ValueError as error:  # a setting that cannot represent the data says so
        return row | {"error": str(error)}
    row["seconds"] = time.process_time() - start
    row["steps"] = len(history.loss)
    row["best_step"] = history.best_step
    row["kept_gaussian"] = history.kept_gaussian
    row["nll"] = float(-log_prob(flow, test, batch_size=1000).double().mean())
    return row


def nsf_run(rest: np.ndarray, test: np.ndarray, seed: int, budget: float) -> dict[str, Any]:
    r"""zuko's NSF (:data:`NSF`) fitted to the standardised rows ``rest`` for ``budget`` CPU
    seconds, holding out the same rows as ``fit_flow`` does for the candidates; ``points``:
    ``(seconds, step, validation NLL, test NLL)`` in nats of the unscaled data."""
    mean, std = rest.mean(0), rest.std(0)
    offset = float(np.log(std).sum())  # the standardisation's log-det
    X = torch.as_tensor((rest - mean) / std, dtype=torch.float32)
    T = torch.as_tensor((test - mean) / std, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)  # fit_flow's draw of its held-out rows
    X, X_val, _, _ = split_held_out(X, None, None, None, 0.1, generator, max_rows=HELD_OUT_ROWS)
    torch.manual_seed(seed)
    model = spline_flow(rest.shape[1], "zuko", NSF["transforms"], NSF["hidden_features"][0])

    def score(model: Any) -> tuple[float, float]:
        return nll(model, X_val) + offset, nll(model, T) + offset

    clock, history = timed_fit(
        model, X, budget, score, X_val=X_val, batch_size=256, lr=1e-3, random_state=seed
    )
    if history is None:
        return {"points": clock.points, "error": "diverged"}
    return {"points": clock.points, "nll": clock.points[-1][3], "seconds": clock.points[-1][0]}


def _task(data: str, candidate: str, seed: int, args: argparse.Namespace) -> dict:
    try:
        return fit_one(data, candidate, seed, args)
    except Exception as error:  # reported in the table, not fatal to the study
        return {"data": data, "candidate": candidate, "seed": seed, "error": repr(error)}


def training_shape(data: str) -> tuple[int, int]:
    r"""The rows ``fit_flow`` trains on in the study (the set less its test and validation
    rows) and their dimension."""
    n, d = load(data, 0).shape
    rest = n - round(TEST_FRACTION * n)
    return rest - min(round(0.1 * rest), HELD_OUT_ROWS), d


def with_default(fits: list[dict], candidates: list[str]) -> tuple[list[dict], list[str]]:
    r"""The fits and candidates with :data:`DEFAULT` added when both its :data:`PARTS` ran:
    on each data set, the part that ``fit_flow``'s ``"auto"`` choice would run."""
    if not set(PARTS) <= set(candidates):
        return fits, candidates
    derived = [
        f | {"candidate": DEFAULT}
        for f in fits
        if f["candidate"] == PARTS[not starts_at_gaussian(*training_shape(f["data"]))]
    ]
    return fits + derived, [*candidates, DEFAULT]


def analyse(payload: dict) -> dict:
    r"""The tables' rows from every fit of the study JSON ``payload``: per data set, each
    candidate's mean test NLL over seeds beside the Gaussian's; per candidate, its gaps."""
    fits, candidates = with_default(payload["fits"], payload["args"]["candidates"])
    rows: list[dict] = []
    gaps: dict[str, list[float]] = {c: [] for c in candidates}
    shares: dict[str, list[float]] = {c: [] for c in candidates}
    for data in payload["data"]:
        runs = [f for f in fits if f["data"] == data]
        gaussian = {f["seed"]: f["nll"] for f in runs if f["candidate"] == "gaussian"}
        nsf = {f["seed"]: f for f in runs if f["candidate"] == "nsf" and "error" not in f}
        row = {
            "data": data,
            **aggregate([{"gaussian": v} for v in gaussian.values()], ["gaussian"]),
        }
        for candidate in candidates:
            mine = [f for f in runs if f["candidate"] == candidate]
            if not mine:  # not run on this set (e.g. a candidate for bounded data)
                continue
            failed = [f for f in mine if "error" in f or not np.isfinite(f.get("nll", np.nan))]
            if failed:
                row[candidate] = (failed[0].get("error") or "not finite")[:48]
                gaps[candidate].append(np.inf)
                continue
            row |= {
                (candidate if k == "nll" else f"{candidate}{k[3:]}"): v
                for k, v in aggregate(mine, ["nll"]).items()
            }
            gap = [f["nll"] - gaussian[f["seed"]] for f in mine]
            gaps[candidate].append(max(gap))
            row[f"{candidate} s"] = float(np.mean([f["seconds"] for f in mine]))
            share = [_share(f, gaussian[f["seed"]], nsf.get(f["seed"])) for f in mine]
            if None not in share:
                row[f"{candidate} share"] = float(np.mean(share))
                shares[candidate].append(row[f"{candidate} share"])
        rows.append(row)
    summary = [
        {
            "candidate": c,
            "worst": float(max(g)),
            "mean": float(np.mean(g)),
            "better": int(sum(v < 0 for v in g)),
            "seconds": float(sum(f.get("seconds", 0.0) for f in fits if f["candidate"] == c)),
        }
        | (
            {"worst_share": min(shares[c]), "mean_share": float(np.mean(shares[c]))}
            if shares[c]
            else {}
        )
        for c, g in gaps.items()
        if g
    ]
    return {"rows": rows, "summary": summary}


def _share(fit: dict, gaussian: float, nsf: dict | None) -> float | None:
    r"""The share of the NSF's gain over the Gaussian that ``fit`` gains, the NSF given the
    fit's own CPU seconds (its best validated checkpoint by then); ``None`` without an NSF
    run of that split.

    Example:
        >>> nsf = {"points": [(10.0, 100, 2.2, 2.0), (40.0, 400, 2.1, 1.0)]}
        >>> _share({"nll": 2.5, "seconds": 20.0}, 3.0, nsf)  # (3 - 2.5) / (3 - 2)
        0.5
    """
    if nsf is None:
        return None
    reference = at(nsf["points"], fit["seconds"])
    if reference is None or reference >= gaussian:
        return None
    return (gaussian - fit["nll"]) / (gaussian - reference)


def rendered(payload: dict) -> str:
    r"""The study's tables (markdown) from its JSON."""
    analysed = analyse(payload)
    candidates = with_default([], payload["args"]["candidates"])[1]
    nll = [("data", "data"), ("gaussian", "Gaussian")] + [(c, c) for c in candidates]
    seconds = [("data", "data")] + [(f"{c} s", c) for c in candidates]
    share = [("data", "data")] + [(f"{c} share", c) for c in candidates]
    summary = [
        ("candidate", "candidate"),
        ("worst", "worst gap to the Gaussian (nats)"),
        ("mean", "mean gap"),
        ("better", "sets better than the Gaussian"),
        ("seconds", "total s"),
        ("worst_share", "worst share of NSF's gain"),
        ("mean_share", "mean share"),
    ]
    has_nsf = any("worst_share" in r for r in analysed["summary"])
    summary = summary if has_nsf else summary[:-2]
    shares = (
        [
            "Share of the NSF's gain over the Gaussian, the NSF given each fit's own CPU "
            "seconds (mean over splits):\n\n" + markdown_table(analysed["rows"], share)
        ]
        if has_nsf
        else []
    )
    return "\n\n".join(
        [
            "Test NLL (nats; mean ± std over splits):\n\n" + markdown_table(analysed["rows"], nll),
            # CPU seconds since the NSF reference came in, wall-clock seconds before it
            f"{'CPU s' if 'nsf_budget' in payload['args'] else 'Seconds'} per fit:\n\n"
            + markdown_table(analysed["rows"], seconds),
            *shares,
            "Summary over data sets (a set's gap: the worst split's NLL minus the Gaussian's):"
            "\n\n" + markdown_table(analysed["summary"], summary),
        ]
    )


def main(argv: Sequence[str] | None = None) -> dict:
    r"""Runs the study; prints its tables and writes them as JSON."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/fit_defaults_study.py", description=description(__doc__)
    )
    parser.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    parser.add_argument(
        "--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES)
    )
    parser.add_argument("--seeds", type=int, default=3, help="random test splits per data set")
    parser.add_argument("--hidden-features", type=int, default=32, help="the networks' width")
    parser.add_argument(
        "--max-iter", type=int, default=None, help="steps of every fit (default: the candidate's)"
    )
    parser.add_argument(
        "--nsf-budget",
        type=float,
        default=120.0,
        help="CPU seconds of the NSF reference on each split (0: none; it needs zuko)",
    )
    parser.add_argument(
        "--nsf-after",
        action="store_true",
        help="run the NSF after the candidates, each split for 1.1 times its slowest "
        "candidate's CPU seconds (at least --nsf-budget): the reference for long candidates",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (2 data sets, 2 candidates, 1 split, 20 steps): its numbers mean "
        "nothing",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="keep the fits of --out's JSON (each with the command, commit and date it came "
        "from) and run only the data sets, candidates and splits it lacks",
    )
    add_study_options(parser, "fit_defaults_study.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.data, args.candidates = ["iris", "two_moons"], args.candidates[-2:]
        args.seeds, args.max_iter, args.hidden_features = 1, 20, 8
        args.nsf_budget = min(args.nsf_budget, 2.0)
    if args.nsf_budget > 0 and find_spec("zuko") is None:
        print("the NSF reference skipped: pip install zuko to include it")
        args.nsf_budget = 0.0
    if find_spec("sklearn") is None:
        print("scikit-learn's data sets skipped: pip install scikit-learn to include them")
        args.data = [name for name in args.data if name not in SKLEARN]
    nsf = ["nsf"] if args.nsf_budget > 0 else []
    first = args.candidates if args.nsf_after else [*nsf, *args.candidates]
    tasks = [
        (data, candidate, seed)
        for data in args.data
        for seed in range(args.seeds)
        for candidate in ["gaussian", *first]
    ]
    args.nsf_budgets = {}
    kept = previous_fits(args.out) if args.update else []
    done = {(f["data"], f["candidate"], f["seed"]) for f in kept}

    def described(f: dict) -> str:
        return f"{f['data']} {f['candidate']} seed {f['seed']}: {f.get('nll', f.get('error'))}"

    fits = kept + in_parallel(
        _task, [t for t in tasks if t not in done], args, args.jobs, described
    )
    if args.nsf_after and nsf:
        for f in fits:
            key = f"{f['data']} {f['seed']}"
            budget = max(args.nsf_budget, 1.1 * f.get("seconds", 0.0))
            args.nsf_budgets[key] = max(args.nsf_budgets.get(key, 0.0), budget)
        later = [(data, "nsf", seed) for data in args.data for seed in range(args.seeds)]
        fits += in_parallel(_task, [t for t in later if t not in done], args, args.jobs, described)
        tasks += later
    if kept:  # the kept fits' data sets and candidates stay in the tables
        tasks += [(f["data"], f["candidate"], f["seed"]) for f in kept]
        args.data = list(dict.fromkeys([*(f["data"] for f in kept), *args.data]))
        old = [f["candidate"] for f in kept if f["candidate"] in CANDIDATES]
        args.candidates = list(dict.fromkeys([*old, *args.candidates]))
    order = {task: i for i, task in enumerate(dict.fromkeys(tasks))}
    fits.sort(key=lambda f: order[(f["data"], f["candidate"], f["seed"])])
    payload = {
        "args": vars(args) | {"out": str(args.out)},
        "data": args.data,
        "fits": fits,
    }
    payload |= analyse(payload)
    print(rendered(payload))
    write_json(args.out, payload, smoke=args.quick)
    return payload


if __name__ == "__main__":
    main()
