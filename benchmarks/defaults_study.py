r"""Which :class:`otflows.BrenierMap` defaults work on data nobody tuned them for.

Each candidate setting (network and learning rate; everything else at the estimator's
defaults) is fitted to every problem of the study, each fit in a fresh process:

- the continuous :math:`W_2` benchmark's pairs at d = 2 … 32, from an input mixture drawn with
  another seed than the benchmark's (``--mixture-seed``), so no setting was tuned on them;
- Gaussian pairs (closed-form Brenier map) at d = 2, 8 and 32;
- 2-D toys: two moons → two circles, eight Gaussians → checkerboard, Gaussian → swiss roll;
- POT's domain-adaptation sets (``ot.datasets.make_data_classif``: ``3gauss`` →
  ``3gauss2``, and ``3gauss`` → ``gaussrot``);
- colour transfer, china.jpg → flower.jpg pixels (scikit-learn's sample images).

Scores, all on samples the fit never saw: L2-UVP against the true map where it is known; for
every problem the exact :math:`W_2^2` between 2000 mapped source points and 2000 target points,
beside the sampling floor (:math:`W_2^2` between two target samples), POT's
``LinearTransport`` and ``EMDTransport`` (out-of-sample ``transform``) and the entropic map
(:class:`otflows.EntropicMap`, with its seconds) on the same points; the fit's seconds. Where
the map is known, every validation of the fit is also scored against it, and the Spearman
correlation between the validation scores (held-out :math:`W_2^2`, the objective's held-out
value) and the true L2-UVP says how well validation ranks checkpoints.

    python benchmarks/defaults_study.py --w2bench ../w2bench \
        --out benchmarks/results/defaults_study.json
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import ot
from scipy.stats import spearmanr

from otflows.bench.common import (
    add_study_options,
    description,
    markdown_table,
    previous_fits,
    set_threads,
    write_json,
)
from otflows.bench.processes import in_parallel
from otflows.datasets import (
    GaussianCoupling,
    W2BenchmarkPair,
    checkerboard,
    domain_adaptation,
    eight_gaussians,
    swiss_roll,
    two_circles,
    two_moons,
)
from otflows.maps import BrenierMap, EntropicMap
from otflows.metrics import l2_uvp, wasserstein2_squared

__all__ = ["CANDIDATES", "main", "problem_data"]

CANDIDATES: dict[str, dict[str, Any]] = {
    "qicnn, lr 3e-2": {"net": "qicnn", "lr": 3e-2},
    "qicnn, lr 1e-2": {"net": "qicnn", "lr": 1e-2},
    "mmgn, lr 1e-2": {"net": "mmgn", "lr": 1e-2},
    "mmgn, lr 1e-3": {"net": "mmgn", "lr": 1e-3},
}
TOY_PAIRS = {
    "moons → circles": (two_moons, two_circles),
    "8 Gaussians → checkerboard": (eight_gaussians, checkerboard),
    "Gaussian → swiss roll": (
        lambda n, seed: np.random.default_rng(seed).normal(size=(n, 2)),
        swiss_roll,
    ),
}
DA_PAIRS = {"DA 3gauss → 3gauss2": "3gauss2", "DA 3gauss → gaussrot": "gaussrot"}
TEST_POINTS = 2000  # per side, for the W2² scores (exact EMD)


def problem_data(name: str, args: argparse.Namespace) -> dict[str, Any]:
    r"""The training samples ``Xs``, ``Xt``, fresh test samples ``Xs_test``, ``Xt_test``,
    ``Xt_test2`` (for the sampling floor) and, where known, ``X_uvp`` with ``true_map``."""
    n, m = args.samples, TEST_POINTS
    pair: Any  # a W2BenchmarkPair or a GaussianCoupling
    source: Any  # their samplers and true maps, or a toy pair's samplers
    target: Any
    match = re.fullmatch(r"(W2|Gaussian) d=(\d+)", name)
    if match:
        d = int(match[2])
        if match[1] == "W2":
            pair = W2BenchmarkPair(args.w2bench, d, mixture_seed=args.mixture_seed)
            source, target, true_map = pair.sample_source, pair.sample_target, pair.brenier_map
        else:
            pair = GaussianCoupling.random_pair(d, seed=args.mixture_seed)
            source, target, true_map = pair.sample, pair.sample_target, pair.brenier_map
        X_uvp = source(8192, seed=105)
        return {
            "Xs": source(n, seed=101),
            "Xt": target(n, seed=102),
            "Xs_test": source(m, seed=103),
            "Xt_test": target(m, seed=104),
            "Xt_test2": target(m, seed=106),
            "X_uvp": X_uvp,
            "Y_uvp": true_map(X_uvp),
        }
    if name in TOY_PAIRS:
        source, target = TOY_PAIRS[name]
        sizes = {"Xs": n, "Xt": n, "Xs_test": m, "Xt_test": m, "Xt_test2": m}
        return {
            key: (source if key.startswith("Xs") else target)(size, seed=101 + i)
            for i, (key, size) in enumerate(sizes.items())
        }
    if name in DA_PAIRS:
        kind = DA_PAIRS[name]
        return {
            "Xs": domain_adaptation("3gauss", args.da_samples, 101),
            "Xt": domain_adaptation(kind, args.da_samples, 102),
            "Xs_test": domain_adaptation("3gauss", m, 103),
            "Xt_test": domain_adaptation(kind, m, 104),
            "Xt_test2": domain_adaptation(kind, m, 106),
        }
    if name == "colour china → flower":
        from sklearn.datasets import load_sample_image

        from otflows.maps.color import sample_pixels

        source = load_sample_image("china.jpg") / 255.0
        target = load_sample_image("flower.jpg") / 255.0
        return {
            "Xs": sample_pixels(source, 10_000, 101),
            "Xt": sample_pixels(target, 10_000, 102),
            "Xs_test": sample_pixels(source, m, 103),
            "Xt_test": sample_pixels(target, m, 104),
            "Xt_test2": sample_pixels(target, m, 106),
        }
    raise ValueError(f"unknown problem {name!r}")


def fit_one(problem: str, candidate: str, args: argparse.Namespace) -> dict[str, Any]:
    r"""One fit of the study in this process: its scores, and its validations against the
    truth where the map is known."""
    set_threads(args.threads)
    data = problem_data(problem, args)
    known = "X_uvp" in data
    trace: list[tuple[int, float]] = []

    def score(phase: str, step: int, otmap: BrenierMap) -> None:
        if known and phase == "fit":
            trace.append((step, l2_uvp(otmap.transform(data["X_uvp"]), data["Y_uvp"])))

    settings = CANDIDATES[candidate] | {"random_state": args.seed, "progress": False}
    if args.max_iter is not None:
        settings["max_iter"] = args.max_iter
    if args.quick:
        settings |= {"init_iter": 20, "hidden_features": 16}
    start = time.perf_counter()
    otmap = BrenierMap(**settings).fit(Xs=data["Xs"], Xt=data["Xt"], callback=score)
    seconds = time.perf_counter() - start
    history = otmap.log_["fit"]
    row = {
        "problem": problem,
        "candidate": candidate,
        "seconds": seconds,
        "fit_seconds": otmap.log_["seconds"],
        "w2": wasserstein2_squared(otmap.transform(data["Xs_test"]), data["Xt_test"]),
        "best_step": history["best_step"],
        "val_step": history["val_step"],
        "val_metrics": history["val_metrics"],
    }
    if known:
        row["uvp"] = l2_uvp(otmap.transform(data["X_uvp"]), data["Y_uvp"])
        # the validations after the first step, each beside the true L2-UVP then
        steps = dict(trace)
        uvp = [steps[s] for s in history["val_step"] if s in steps]
        row["uvp_trace"] = uvp
        for metric in ("w2", "objective"):
            values = [
                v
                for s, v in zip(history["val_step"], history["val_metrics"][metric], strict=True)
                if s in steps
            ]
            row[f"rank_{metric}"] = float(spearmanr(values, uvp).statistic)
    return row


def baselines(problem: str, args: argparse.Namespace) -> dict[str, Any]:
    r"""The sampling floor, POT's linear and EMD maps and the entropic map (its seconds too)
    on the same test points, each fitted to the first ``--emd-samples`` rows of each side."""
    set_threads(args.threads)
    data = problem_data(problem, args)
    Xs = data["Xs"][: args.emd_samples]
    Xt = data["Xt"][: args.emd_samples]
    row = {"problem": problem, "floor": wasserstein2_squared(data["Xt_test"], data["Xt_test2"])}
    start = time.perf_counter()
    entropic = EntropicMap().fit(Xs=Xs, Xt=Xt)
    row["entropic_seconds"] = time.perf_counter() - start
    linear, emd = ot.da.LinearTransport().fit(Xs=Xs, Xt=Xt), ot.da.EMDTransport().fit(Xs=Xs, Xt=Xt)
    for name, mapping in (
        ("linear", lambda X: linear.transform(Xs=X)),
        ("emd", lambda X: emd.transform(Xs=X)),
        ("entropic", entropic.transform),
    ):
        row[f"w2_{name}"] = wasserstein2_squared(mapping(data["Xs_test"]), data["Xt_test"])
        if "X_uvp" in data:
            row[f"uvp_{name}"] = l2_uvp(mapping(data["X_uvp"]), data["Y_uvp"])
    return row


def _task(kind: str, problem: str, candidate: str | None, args: argparse.Namespace) -> dict:
    try:
        if kind == "fit":
            return fit_one(problem, cast(str, candidate), args)
        return baselines(problem, args)
    except Exception as error:  # reported in the table, not fatal to the study
        return {
            "problem": problem,
            "candidate": candidate,
            "error": f"{type(error).__name__}: {error}",
        }


def problems(args: argparse.Namespace) -> list[str]:
    r"""The study's problems (the :math:`W_2` pairs only when ``--w2bench`` has them)."""
    names = []
    if args.w2bench is not None:
        available = W2BenchmarkPair.available(args.w2bench)
        names += [f"W2 d={d}" for d in args.w2_dims if d in available]
    names += [f"Gaussian d={d}" for d in args.gaussian_dims]
    names += [*TOY_PAIRS, *DA_PAIRS]
    if args.colour:
        names.append("colour china → flower")
    return [name for name in names if re.search(args.match, name)]


def summarise(fits: list[dict], base: dict[str, dict]) -> tuple[list[dict], list[dict]]:
    r"""The per-problem rows (each candidate's L2-UVP or :math:`W_2^2` over the floor) and one
    row per candidate: the geometric mean, over problems, of its score over the best
    candidate's, its wins, its worst such ratio and its total seconds."""
    rows: list[dict] = []
    ratios: dict[str, list[float]] = {c: [] for c in CANDIDATES}
    by_problem: dict[str, list[dict]] = {}
    for fit in fits:
        by_problem.setdefault(fit["problem"], []).append(fit)
    for problem, group in by_problem.items():
        b = base.get(problem, {})
        key = "uvp" if "uvp_linear" in b else "w2"
        row = {"problem": problem, "floor": None if key == "uvp" else b.get("floor")}
        row["linear"] = b.get(f"{key}_linear")
        row["emd"] = None if key == "uvp" else b.get("w2_emd")
        row["entropic"] = b.get(f"{key}_entropic")
        row["entropic s"] = b.get("entropic_seconds")
        scores = {}
        for fit in group:
            if "error" in fit:
                row[fit["candidate"]] = fit["error"][:40]
                continue
            scores[fit["candidate"]] = fit[key]
            row[fit["candidate"]] = fit[key]
            row[f"{fit['candidate']} s"] = fit["seconds"]
        row["metric"] = "L2-UVP %" if key == "uvp" else "W2²"
        best = min(scores.values()) if scores else None
        if key == "w2" and b.get("floor") is not None:
            best = max(best, b["floor"]) if best is not None else None
        for candidate, value in scores.items():
            ratios[candidate].append(max(value, best) / best if best else np.nan)
        rows.append(row)
    summary = []
    for candidate, values in ratios.items():
        if not values:
            continue
        seconds = sum(
            f["seconds"] for f in fits if f.get("candidate") == candidate and "seconds" in f
        )
        summary.append(
            {
                "candidate": candidate,
                "geomean": float(np.exp(np.mean(np.log(values)))),
                "worst": float(np.max(values)),
                "wins": int(sum(v == 1.0 for v in values)),
                "seconds": seconds,
            }
        )
    return rows, summary


def main(argv: Sequence[str] | None = None) -> dict:
    r"""Runs the study; prints its tables and writes them as JSON."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/defaults_study.py", description=description(__doc__)
    )
    parser.add_argument("--w2bench", type=Path, default=None, help="the W2 benchmark folder")
    parser.add_argument("--w2-dims", type=int, nargs="*", default=[2, 4, 8, 16, 32])
    parser.add_argument("--gaussian-dims", type=int, nargs="*", default=[2, 8, 32])
    parser.add_argument(
        "--mixture-seed",
        type=int,
        default=7,
        help="seeds the W2 pairs' input mixture and the Gaussian pairs",
    )
    parser.add_argument(
        "--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES)
    )
    parser.add_argument("--samples", type=int, default=20_000, help="training samples per side")
    parser.add_argument(
        "--da-samples",
        type=int,
        default=1000,
        help="training samples per side of the domain-adaptation sets",
    )
    parser.add_argument(
        "--emd-samples",
        type=int,
        default=2000,
        help="training samples per side for POT's EMDTransport",
    )
    parser.add_argument(
        "--max-iter", type=int, default=None, help="steps of every fit (default: BrenierMap's)"
    )
    parser.add_argument(
        "--no-colour",
        dest="colour",
        action="store_false",
        help="skip colour transfer (it needs scikit-learn's sample images)",
    )
    parser.add_argument(
        "--match", default="", help="only the problems whose name this regex matches (e.g. W2)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (2 small problems, 2 candidates, 20 steps): its numbers mean nothing",
    )
    add_study_options(parser, "defaults_study.json", baselines=True)
    args = parser.parse_args(argv)
    if args.quick:
        args.w2_dims, args.gaussian_dims, args.max_iter = [2], [2], 20
        args.samples, args.colour, args.candidates = 1000, False, args.candidates[:2]
    names = problems(args)
    if args.quick:
        names = names[:2]
    tasks = [("baseline", p, None) for p in names]
    kept = previous_fits(args.out) if args.baselines_only else []
    if not args.baselines_only:
        tasks += [("fit", p, c) for p in names for c in args.candidates]
    results = kept + in_parallel(
        _task,
        tasks,
        args,
        args.jobs,
        lambda r: (
            f"{r['problem']} {r.get('candidate') or ''} "
            f"{r.get('uvp', r.get('w2', r.get('error', '')))}"
        ),
    )
    payload = analyse(args, results, names)
    print(tables(payload))
    write_json(args.out, payload, smoke=args.quick)
    return payload


def analyse(args: argparse.Namespace | dict, results: list[dict], names: list[str]) -> dict:
    r"""The study's JSON: its options, every fit and baseline as measured, and the tables'
    rows derived from them."""
    options = (
        args
        if isinstance(args, dict)
        else vars(args) | {"out": str(args.out), "w2bench": str(args.w2bench)}
    )
    base = {r["problem"]: r for r in results if "candidate" not in r}
    fits = [r for r in results if "candidate" in r]
    order = {p: i for i, p in enumerate(names)}
    fits.sort(key=lambda r: (order[r["problem"]], list(CANDIDATES).index(r["candidate"])))
    rows, summary = summarise(fits, base)
    rows.sort(key=lambda r: order[r["problem"]])
    return {
        "args": options,
        "problems": names,
        "rows": rows,
        "summary": summary,
        "ranks": rank_correlations(fits),
        "fits": fits,
        "baselines": list(base.values()),
    }


def rendered(payload: dict) -> str:
    r"""The tables of the study JSON ``payload``, its rows derived anew from its fits."""
    results = payload["fits"] + payload["baselines"]
    return tables(analyse(payload["args"], results, payload["problems"]))


def rank_correlations(fits: list[dict]) -> list[dict]:
    r"""Per fit with a known map: the Spearman correlations between its validation scores and
    the true L2-UVP over its checkpoints; per problem, over the candidates' final fits."""
    ranks = [
        {
            "problem": f["problem"],
            "candidate": f["candidate"],
            "rank_w2": f["rank_w2"],
            "rank_objective": f["rank_objective"],
        }
        for f in fits
        if "rank_w2" in f
    ]
    for problem in dict.fromkeys(r["problem"] for r in ranks):
        group = [f for f in fits if f["problem"] == problem and "rank_w2" in f]
        if len(group) > 2:
            best = [min(f["val_metrics"]["w2"]) for f in group]
            statistic = spearmanr(best, [f["uvp"] for f in group]).statistic
            ranks.append(
                {"problem": problem, "candidate": "(over candidates)", "rank_w2": float(statistic)}
            )
    return ranks


def tables(payload: dict) -> str:
    r"""The study's tables (markdown) from its JSON: scores, seconds, the candidates'
    summary, and how validation ranks maps."""
    candidates = payload["args"]["candidates"]
    scores = [
        ("problem", "problem"),
        ("metric", "metric"),
        ("floor", "floor"),
        ("linear", "linear"),
        ("emd", "EMD"),
        ("entropic", "entropic"),
    ] + [(c, c) for c in candidates]
    seconds = [("problem", "problem"), ("entropic s", "entropic")]
    seconds += [(f"{c} s", c) for c in candidates]
    summary = [
        ("candidate", "candidate"),
        ("geomean", "geomean ratio to best"),
        ("worst", "worst ratio"),
        ("wins", "wins"),
        ("seconds", "total s"),
    ]
    ranks = [
        ("problem", "problem"),
        ("candidate", "candidate"),
        ("rank_w2", "Spearman(held-out W2², L2-UVP)"),
        ("rank_objective", "Spearman(held-out objective, L2-UVP)"),
    ]
    return "\n\n".join(
        [
            "Scores (L2-UVP in %, or W2² on fresh samples):\n\n"
            + markdown_table(payload["rows"], scores),
            "Seconds per fit:\n\n" + markdown_table(payload["rows"], seconds),
            "Summary over problems:\n\n" + markdown_table(payload["summary"], summary),
            "Validation against the truth:\n\n" + markdown_table(payload["ranks"], ranks),
        ]
    )


if __name__ == "__main__":
    main()
