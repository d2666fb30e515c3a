r"""Which OT map to trust when samples are few: BrenierMap beside the Bures, entropic and EMD
maps on real data sets split in two populations, and on small samples of pairs with known maps.

Problems (none used to tune any default):

- scikit-learn's bundled tables, standardised, reduced by PCA (fitted on both populations) to
  ``d`` dimensions and split in two populations: breast cancer (malignant → benign), wine
  (cultivar 1 → 2), digits (0–4 → 5–9) and diabetes (by sex). Each population is split at
  random in halves, training and test rows, once per ``--splits`` seed.
- Small samples of the :math:`W_2` benchmark's pair and of a Gaussian pair (closed-form map),
  ``n`` rows per side, 2000 fresh test rows per side, drawn anew for each ``--splits`` seed.
- ``--problems domain-adaptation``: POT's domain-adaptation sets in d = 2 (three Gaussian
  clusters → three others, or → two rotated ones), 100, 300 and 1000 rows per side and 2000
  test rows per side, drawn anew for each seed.

Each map is fitted on the training rows and scored by the exact :math:`W_2^2` between the
mapped test source rows and the test target rows (what a user gets off the training rows),
beside not moving the points, the Bures (linear) map, the entropic map
(:class:`otflows.EntropicMap`, its ε rule) and POT's ``EMDTransport``; where the map is known,
by L2-UVP too. Every BrenierMap fit runs in a fresh process with one thread.

    python benchmarks/small_data_study.py --w2bench PATH \
        --out benchmarks/results/small_data_study.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import ot
import torch

from otflows.bench.common import (
    add_device_option,
    add_study_options,
    description,
    markdown_table,
    previous_fits,
    provenance,
    set_threads,
    write_json,
)
from otflows.bench.processes import in_parallel
from otflows.datasets import GaussianCoupling, W2BenchmarkPair, domain_adaptation
from otflows.maps import BrenierMap, EntropicMap
from otflows.maps.settings import BY_SIZE
from otflows.metrics import l2_uvp, wasserstein2_squared
from otflows.transforms.affine import bures_map
from otflows.validation import as_device

__all__ = ["CANDIDATES", "main", "problem_data", "rendered"]

# the width and learning rate that BrenierMap uses with many rows per dimension, here at
# every size
MANY_ROWS = BY_SIZE["many rows"]
CANDIDATES: dict[str, dict[str, Any]] = {
    "BrenierMap()": {},
    "width 64, lr 3e-2, by objective": MANY_ROWS | {"validation_score": "objective"},
    "held-out 0.1": {"validation_fraction": 0.1},
    "no fallback": {"fallback": False},  # the validated network, whatever the fallback's verdict
    "by held-out W2": MANY_ROWS | {"validation_score": "w2"},
    "width 16, lr 1e-2, by W2": {"hidden_features": 16, "lr": 1e-2, "validation_score": "w2"},
}
TABLES = {  # name: (loader, the two populations as a function of (X, y))
    "cancer": ("load_breast_cancer", lambda X, y: (X[y == 0], X[y == 1])),
    "wine": ("load_wine", lambda X, y: (X[y == 0], X[y == 1])),
    "digits": ("load_digits", lambda X, y: (X[y < 5], X[y >= 5])),
    "diabetes": (
        "load_diabetes",
        lambda X, y: (
            X[X[:, 1] < 0][:, [0, *range(2, 10)]],
            X[X[:, 1] > 0][:, [0, *range(2, 10)]],
        ),
    ),
}
REAL = [
    "cancer d=8",
    "cancer d=16",
    "wine d=4",
    "wine d=8",
    "digits d=16",
    "digits d=32",
    "diabetes d=8",
]
KNOWN = [
    "W2 d=8 n=200",
    "W2 d=8 n=500",
    "W2 d=8 n=1000",
    "W2 d=8 n=2000",
    "Gaussian d=16 n=200",
    "Gaussian d=16 n=500",
    "Gaussian d=16 n=2000",
]
# POT's domain-adaptation sets (ot.datasets.make_data_classif) at a few rows per side:
# strongly non-Gaussian in d = 2, where a map far from linear pays even with few rows
DOMAIN_ADAPTATION = [
    "DA 3gauss → 3gauss2 n=100",
    "DA 3gauss → 3gauss2 n=300",
    "DA 3gauss → 3gauss2 n=1000",
    "DA 3gauss → gaussrot n=100",
    "DA 3gauss → gaussrot n=300",
    "DA 3gauss → gaussrot n=1000",
]
PROBLEMS = {"main": REAL + KNOWN, "domain-adaptation": DOMAIN_ADAPTATION}
KEPT = ("network", "entropic", "bures")  # the maps a fit can end at (log_["kept"])
TEST_ROWS = 2000  # per side, for the pairs with known maps and the domain-adaptation sets


def problem_data(name: str, split: int, w2bench: Path | None) -> dict[str, np.ndarray]:
    r"""The training rows ``Xs``, ``Xt`` and test rows ``Xs_test``, ``Xt_test`` of a problem
    (and ``X_uvp``, ``Y_uvp`` where the map is known) for one split."""
    adaptation = re.fullmatch(r"DA 3gauss → (\w+) n=(\d+)", name)
    if adaptation is not None:
        kind, n, seed = adaptation[1], int(adaptation[2]), 100 * split
        return {
            "Xs": domain_adaptation("3gauss", n, seed + 1),
            "Xt": domain_adaptation(kind, n, seed + 2),
            "Xs_test": domain_adaptation("3gauss", TEST_ROWS, seed + 3),
            "Xt_test": domain_adaptation(kind, TEST_ROWS, seed + 4),
        }
    match = re.fullmatch(r"(\w+) d=(\d+)(?: n=(\d+))?", name)
    if match is None:
        raise ValueError(f"unknown problem {name!r}")
    kind, d = match[1], int(match[2])
    if match[3] is not None:  # a pair with a known map
        n = int(match[3])
        if kind == "W2" and w2bench is None:
            raise ValueError(f"{name} needs the W2 benchmark's folder (--w2bench)")
        pair: Any = (
            W2BenchmarkPair(cast(Path, w2bench), d, mixture_seed=7)
            if kind == "W2"
            else GaussianCoupling.random_pair(d, seed=7)
        )
        source = pair.sample_source if kind == "W2" else pair.sample
        X_uvp = source(4096, seed=100 * split + 5)
        return {
            "Xs": source(n, seed=100 * split + 1),
            "Xt": pair.sample_target(n, seed=100 * split + 2),
            "Xs_test": source(TEST_ROWS, seed=100 * split + 3),
            "Xt_test": pair.sample_target(TEST_ROWS, seed=100 * split + 4),
            "X_uvp": X_uvp,
            "Y_uvp": pair.brenier_map(X_uvp),
        }
    import sklearn.datasets
    from sklearn.decomposition import PCA

    loader, populations = TABLES[kind]
    X, y = getattr(sklearn.datasets, loader)(return_X_y=True)
    X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
    A, B = populations(X, y)
    pca = PCA(d, random_state=0).fit(np.concatenate([A, B]))
    A, B = pca.transform(A), pca.transform(B)
    rng = np.random.default_rng(split)
    a, b = rng.permutation(len(A)), rng.permutation(len(B))
    return {
        "Xs": A[a[: len(A) // 2]],
        "Xt": B[b[: len(B) // 2]],
        "Xs_test": A[a[len(A) // 2 :]],
        "Xt_test": B[b[len(B) // 2 :]],
    }


def _scores(data: dict[str, np.ndarray], mapping: Any) -> dict[str, float]:
    scores = {"w2": wasserstein2_squared(mapping(data["Xs_test"]), data["Xt_test"])}
    if "X_uvp" in data:
        scores["uvp"] = l2_uvp(mapping(data["X_uvp"]), data["Y_uvp"])
    return scores


def baselines(problem: str, split: int, args: argparse.Namespace) -> dict[str, Any]:
    r"""Not moving the points, the Bures map, the entropic map and POT's EMD map, scored."""
    set_threads(args.threads)
    data = problem_data(problem, split, args.w2bench)
    Xs, Xt = data["Xs"], data["Xt"]
    A, b = (m.numpy() for m in bures_map(torch.as_tensor(Xs), torch.as_tensor(Xt)))
    entropic = EntropicMap()
    start = time.perf_counter()
    entropic.fit(Xs=Xs, Xt=Xt)
    entropic_seconds = time.perf_counter() - start
    emd = ot.da.EMDTransport().fit(Xs=Xs, Xt=Xt)
    row: dict[str, Any] = {"problem": problem, "split": split, "rows": min(len(Xs), len(Xt))}
    row["d"] = Xs.shape[1]
    for name, mapping in (
        ("identity", lambda X: X),
        ("bures", lambda X: X @ A + b),
        ("entropic", entropic.transform),
        ("emd", lambda X: emd.transform(Xs=X)),
    ):
        row.update({f"{key}_{name}": v for key, v in _scores(data, mapping).items()})
    row["entropic_seconds"] = entropic_seconds
    return row


def fit_one(problem: str, split: int, candidate: str, args: argparse.Namespace) -> dict:
    r"""One BrenierMap fit of the study (a fresh process): its scores, what it kept and why
    (the fallback's record), and the step whose weights validation kept."""
    set_threads(args.threads)
    data = problem_data(problem, split, args.w2bench)
    settings = CANDIDATES[candidate] | {"random_state": split, "progress": False}
    settings["device"] = args.device
    if args.quick:
        settings |= {"max_iter": 20, "init_iter": 10, "hidden_features": 8}
    start = time.perf_counter()
    otmap = BrenierMap(**settings).fit(Xs=data["Xs"], Xt=data["Xt"])
    row = {"problem": problem, "split": split, "candidate": candidate}
    row |= {"seconds": time.perf_counter() - start, "kept": otmap.log_["kept"]}
    row["fallback"] = otmap.log_.get("fallback")  # both held-out tests, the growth off the rows
    history = otmap.log_["fit"]
    row |= {"best_step": history["best_step"], "steps": history["val_step"][-1]}
    row["settings"] = otmap.settings_
    return row | _scores(data, otmap.transform)


def _task(kind: str, problem: str, split: int, candidate: str | None, args) -> dict:
    try:
        if kind == "fit":
            assert candidate is not None
            return fit_one(problem, split, candidate, args)
        return baselines(problem, split, args)
    except Exception as error:  # reported in the table, not fatal to the study
        return {
            "problem": problem,
            "split": split,
            "candidate": candidate,
            "error": f"{type(error).__name__}: {error}",
        }


def _candidates(payload: dict) -> list[str]:
    r"""The candidates fitted in the study's JSON (those an ``--update`` kept too), in the
    order of :data:`CANDIDATES`."""
    fitted = {f["candidate"] for f in payload["fits"]}
    return [c for c in CANDIDATES if c in fitted]


def summarise(payload: dict) -> list[dict]:
    r"""A row per problem: the mean held-out :math:`W_2^2` of each map over the splits, and
    each candidate's worst ratio to the Bures and entropic maps' (split by split) and how
    often it ended at each of :data:`KEPT`."""
    rows = []
    for problem in payload["problems"]:
        base = [b for b in payload["baselines"] if b["problem"] == problem and "error" not in b]
        if not base:
            continue
        row: dict[str, Any] = {"problem": problem, "rows": base[0]["rows"]}
        row["rows_per_d"] = base[0]["rows"] / base[0]["d"]
        for name in ("identity", "bures", "entropic", "emd"):
            row[name] = statistics.mean(b[f"w2_{name}"] for b in base)
        row["entropic s"] = statistics.mean(b["entropic_seconds"] for b in base)
        by_split = {b["split"]: b for b in base}
        for candidate in _candidates(payload):
            fits = [
                f
                for f in payload["fits"]
                if f["problem"] == problem
                and f["candidate"] == candidate
                and "error" not in f
                and f["split"] in by_split  # scored beside its baselines
            ]
            if not fits:
                continue
            row[candidate] = statistics.mean(f["w2"] for f in fits)
            row[f"{candidate} s"] = statistics.mean(f["seconds"] for f in fits)
            for name in ("bures", "entropic"):
                row[f"{candidate} ÷ {name}"] = max(
                    f["w2"] / by_split[f["split"]][f"w2_{name}"] for f in fits
                )
            row[f"{candidate} kept"] = "/".join(
                str(sum(f["kept"] == kept for f in fits)) for kept in KEPT
            )
        rows.append(row)
    return rows


def rendered(payload: dict) -> str:
    r"""The study's table from its JSON: mean held-out :math:`W_2^2` per map, and each
    candidate's worst ratio to the Bures and entropic maps over the splits; the entropic
    map's and each candidate's mean seconds to fit."""
    columns = [
        ("problem", "problem"),
        ("rows", "train rows/side"),
        ("rows_per_d", "rows/d"),
        ("identity", "no map"),
        ("bures", "Bures"),
        ("entropic", "entropic"),
        ("emd", "EMD"),
        ("entropic s", "entropic s"),
    ]
    for c in _candidates(payload):
        columns += [
            (c, c),
            (f"{c} ÷ bures", "worst ÷ Bures"),
            (f"{c} ÷ entropic", "worst ÷ entropic"),
            (f"{c} kept", "kept: network/entropic/Bures"),
            (f"{c} s", "s"),
        ]
    return markdown_table(summarise(payload), columns)


def main(argv: Sequence[str] | None = None) -> dict:
    r"""Runs the study; prints its table and writes its JSON."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/small_data_study.py", description=description(__doc__)
    )
    parser.add_argument("--w2bench", type=Path, default=None, help="the W2 benchmark folder")
    parser.add_argument(
        "--splits",
        type=int,
        default=3,
        help="random splits of each table, and samples of each pair",
    )
    parser.add_argument(
        "--candidates",
        nargs="+",
        default=["BrenierMap()", "width 64, lr 3e-2, by objective", "held-out 0.1"],
        choices=list(CANDIDATES),
        help="the BrenierMap settings fitted (default: the released ones, the many-rows "
        "settings at every size and a tenth held out: the study's main table)",
    )
    parser.add_argument(
        "--problems",
        choices=list(PROBLEMS),
        default="main",
        help="the real tables and the pairs with known maps, or POT's domain-adaptation sets "
        "at a few rows per side",
    )
    parser.add_argument("--match", default="", help="only the problems this regex matches")
    parser.add_argument(
        "--update",
        action="store_true",
        help="rerun the problems --match selects (their baselines and the --candidates' fits), "
        "keeping every other row of --out's JSON: the other problems' and the other "
        "candidates' fits (each keeps the command, commit and date it came from)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: two problems, 20 steps")
    add_device_option(parser, " (the BrenierMap fits; one job per GPU)")
    add_study_options(parser, "small_data_study.json", baselines=True)
    args = parser.parse_args(argv)
    as_device(args.device, "--device")
    names = PROBLEMS[args.problems]
    if args.w2bench is None:
        names = [n for n in names if not n.startswith("W2 ")]
    if args.quick:
        names, args.splits, args.candidates = (
            ["wine d=4", "Gaussian d=16 n=200"],
            1,
            ["BrenierMap()"],
        )
    names = [n for n in names if re.search(args.match, n)]
    tasks: list[tuple] = [("baseline", n, s, None) for n in names for s in range(args.splits)]
    kept: list[dict] = []
    kept_baselines: list[dict] = []
    problems = names
    if args.update:  # the other rows, as they were
        old = json.loads(args.out.read_text())
        kept = [
            f
            for f in previous_fits(args.out)
            if f["problem"] not in names or f["candidate"] not in args.candidates
        ]
        kept_baselines = [b for b in old["baselines"] if b["problem"] not in names]
        problems = old["problems"] + [n for n in names if n not in old["problems"]]
    if args.baselines_only:
        kept = previous_fits(args.out)
    else:
        tasks += [
            ("fit", n, s, c) for n in names for s in range(args.splits) for c in args.candidates
        ]
    results = in_parallel(
        _task,
        tasks,
        args,
        args.jobs,
        lambda r: (
            f"{r['problem']} #{r['split']} {r.get('candidate') or 'baselines'} "
            f"{r.get('w2', r.get('w2_bures', r.get('error', '')))}"
        ),
    )
    results = [r | provenance() for r in results]
    payload = {
        "args": vars(args) | {"out": str(args.out), "w2bench": str(args.w2bench)},
        "problems": problems,
        "fits": kept + [r for r in results if r.get("candidate")],
        "baselines": kept_baselines + [r for r in results if not r.get("candidate")],
    }
    payload["rows"] = summarise(payload)
    print(rendered(payload))
    write_json(args.out, payload, smoke=args.quick)
    return payload


if __name__ == "__main__":
    main()
