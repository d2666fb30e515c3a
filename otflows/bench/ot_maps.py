"""OT maps between two data sets, scored against known optimal maps: BrenierMap's objectives
and networks beside the linear (Bures) and entropic maps.

    otflows bench ot-maps --w2bench PATH/TO/w2bench            # the full table
    otflows bench ot-maps --quick                              # a smoke run

Problems: (i) Gaussian → Gaussian pairs (random means, Wishart covariances) whose Brenier map
is POT's `bures_wasserstein_mapping`, at d = 2, 8, 32, 64; (ii) the continuous W2 benchmark
pairs Mix3 → Mix10 of Korotin et al. (2021) at d = 2 … 64, read from the folder given by
--w2bench (skipped, with a message, when it is absent). Each method sees N unpaired source and
target samples and is scored on 4096 fresh source samples (--test-samples) by L2-UVP (%) and
the cosine of the displacements (definitions in the benchmark folder's README), and by its
error in the semi-dual
objective's own metric (`semidual_uvp`); its fitting time is reported.
Prints a markdown table and writes JSON (default otflows-results/ot_maps.json).
"""

from __future__ import annotations

import argparse
import copy
import inspect
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from otflows.bench.common import (
    add_device_option,
    add_out_option,
    add_threads_option,
    description,
    keep_freed_memory,
    markdown_table,
    set_threads,
    write_json,
)
from otflows.bench.peers import PUBLISHED_BEST
from otflows.datasets import GaussianCoupling, W2BenchmarkPair
from otflows.linalg import InverseError
from otflows.maps import BrenierMap, EntropicMap, Objective, bures_map, fenchel_young_gap
from otflows.metrics import l2_uvp, map_cosine
from otflows.transforms.brenier import BrenierTransform
from otflows.validation import as_device

W2_PROBLEM = "W2 Mix3→Mix10"  # the W2 benchmark's rows: its pair at each d
# The paper's linear-baseline row [L] (Korotin et al. 2021, Table, Mix3 → Mix10), by d.
PUBLISHED_LINEAR = {2: 14.1, 4: 14.9, 8: 27.3, 16: 41.6, 32: 55.3, 64: 63.9, 128: 63.6}


class KnownMapRegression(Objective):
    r"""A reference, not an OT objective: regresses the map onto the problem's *known* Brenier
    map, :math:`\mathbb E_\mu\|T(x) - T^*(x)\|^2 / \operatorname{Var}(\nu)` (a minibatch
    L2-UVP / 100). It shows what the network and the optimiser reach in the same steps when
    told the answer, so that a gap to it is the objective's, not the architecture's.
    ``--methods qicnn:known-map``.

    Example:
        >>> problem = GaussianCoupling.random_pair(2, seed=0)
        >>> X = problem.sample(256, seed=1)
        >>> otmap = BrenierMap(objective=KnownMapRegression(problem), max_iter=5, progress=False)
        >>> otmap.fit(Xs=X, Xt=problem.sample_target(256, seed=2)).log_["objective"]
        {'name': 'known-map'}
    """

    name = "known-map"

    def __init__(self, problem: GaussianCoupling | W2BenchmarkPair):
        self.problem = problem

    def setup(
        self,
        T: BrenierTransform,
        Xs: torch.Tensor,
        Xt: torch.Tensor,
        ct: torch.Tensor | None = None,
    ) -> None:
        self.variance = float(Xt.var(0).sum())

    def loss(
        self,
        T: BrenierTransform,
        xs: torch.Tensor,
        xt: torch.Tensor,
        index_t: torch.Tensor,
        cs: torch.Tensor | None = None,
        ct: torch.Tensor | None = None,
    ) -> torch.Tensor:
        true = self.problem.brenier_map(xs.detach())  # torch in, torch out
        return (T.transport(xs) - true).square().sum(-1).mean() / self.variance


def score(problem, X: np.ndarray, Y: np.ndarray) -> dict:
    true = problem.brenier_map(X)
    return {"l2_uvp": l2_uvp(Y, true), "cos": map_cosine(X, Y, true)}


def semidual_uvp(problem, X: np.ndarray, T: BrenierTransform) -> float | None:
    r"""The map's error in the semi-dual's metric, in L2-UVP's units:
    :math:`200\,\mathbb E[\varphi(x) + \varphi^*(T^*(x)) - \langle x, T^*(x)\rangle] /
    \operatorname{Var}(\nu)` (:func:`otflows.maps.fenchel_young_gap`, float64), which is
    :math:`100\,\mathbb E\langle\delta T, J_T^{-1}\delta T\rangle / \operatorname{Var}(\nu)`
    to second order: L2-UVP itself where :math:`J_T = I`, below it where errors sit in stiff
    directions. ``None`` (with a message) when a conjugate does not converge.

    Example:
        >>> from otflows import MMGN
        >>> problem = GaussianCoupling.random_pair(2, seed=0)
        >>> X = problem.sample(256, seed=1)
        >>> semidual_uvp(problem, X, BrenierTransform(MMGN(2, 4), gamma=0.5)) > 0
        True
    """
    x = torch.as_tensor(X, dtype=torch.float64)
    true = problem.brenier_map(x)
    try:
        gap = fenchel_young_gap(copy.deepcopy(T).double().cpu(), x, true)
    except InverseError as error:
        print(f"semi-dual gap not scored: {error}")
        return None
    return float(200.0 * gap.mean() / true.var(0, unbiased=False).sum())


def run(problem, name: str, d: int, methods: list[tuple[str, str]], args) -> list[dict]:
    sample_source: Any = getattr(problem, "sample_source", getattr(problem, "sample", None))
    Xs = sample_source(args.samples, seed=1)
    Xt = problem.sample_target(args.samples, seed=2)
    X = sample_source(args.test_samples, seed=3)
    rows = []
    A, b = bures_map(torch.as_tensor(Xs), torch.as_tensor(Xt))
    rows.append({"problem": name, "d": d, "method": "linear (Bures)", "seconds": 0.0})
    rows[-1] |= score(problem, X, X @ A.numpy() + b.numpy())
    print(markdown_table([rows[-1]], COLUMNS).splitlines()[-1], flush=True)
    k = min(args.entropic_samples, len(Xs))  # its memory is O(k²)
    start = time.perf_counter()
    entropic = EntropicMap().fit(Xs=Xs[:k], Xt=Xt[:k])
    rows.append({"problem": name, "d": d, "method": f"entropic ({k} samples per side)"})
    rows[-1] |= score(problem, X, entropic.transform(X)) | {"seconds": time.perf_counter() - start}
    print(markdown_table([rows[-1]], COLUMNS).splitlines()[-1], flush=True)
    if name == W2_PROBLEM and d in PUBLISHED_LINEAR:
        rows.append({"problem": name, "d": d, "method": "published [L]"})
        rows[-1]["l2_uvp"] = PUBLISHED_LINEAR[d]
    for net, objective in tqdm(methods, desc=f"{name}, d = {d}", unit="method"):
        max_iter = args.sinkhorn_iter if objective == "sinkhorn" else args.max_iter
        # the supervised reference regresses onto T*(x) of the source points: a refinement
        # round's problem (from T#μ) has no such answer to regress onto
        rounds = 0 if objective == "known-map" else args.refine_rounds
        estimator = BrenierMap(
            net=net,
            objective=KnownMapRegression(problem) if objective == "known-map" else objective,
            hidden_features=args.hidden,
            max_iter=max_iter,
            init_iter=args.init_iter,
            batch_size=args.batch_size,
            target_batch_size=args.target_batch_size,
            lr=args.lr,
            random_state=0,
            device=args.device,
            refine_rounds=rounds,
            refine_iter=args.refine_iter,
            validation_fraction=args.validation_fraction,
            progress=args.progress,
        )
        start = time.perf_counter()
        estimator.fit(Xs=Xs, Xt=Xt)
        seconds = time.perf_counter() - start
        method = f"{net} + {objective}"
        if rounds:
            method += f", refined ×{rounds} ({args.refine_iter} steps each)"
        row = {"problem": name, "d": d, "method": method, "steps": max_iter}
        row |= score(problem, X, estimator.transform(X)) | {"seconds": seconds}
        row["semidual_uvp"] = semidual_uvp(problem, X, estimator.transform_)
        rows.append(row)
        print(markdown_table([row], COLUMNS).splitlines()[-1], flush=True)
    return rows


COLUMNS = [
    ("problem", "problem"),
    ("d", "d"),
    ("method", "method"),
    ("steps", "steps"),
    ("l2_uvp", "L2-UVP (%)"),
    ("cos", "cos"),
    ("semidual_uvp", "semi-dual gap (%)"),
    ("seconds", "fit time (s)"),
]

# the settings a row of rendered_together shows beside its scores: (option, header)
SETTINGS = [
    ("max_iter", "steps"),
    ("lr", "lr"),
    ("hidden", "width"),
    ("samples", "samples per side"),
    ("target_batch_size", "targets per step"),
]


def rendered(payload: dict) -> str:
    r"""A run's table (its ``rows`` under :data:`COLUMNS`); a file of several runs (``runs``)
    as :func:`rendered_together` shows them."""
    if "runs" in payload:
        return rendered_together(payload["runs"])
    return markdown_table(payload["rows"], COLUMNS)


def rendered_together(payloads: list[dict]) -> str:
    r"""Runs of different settings side by side: a row per fitted method of each run (its
    scores, settings, threads and the number of its run), with the linear (Bures) map, the
    published linear row [L] and, on the W2 benchmark, the best published L2-UVP of any solver
    of Korotin et al. (2021) beside it (:data:`otflows.bench.peers.PUBLISHED_BEST`); the runs'
    commands listed below the table, by number, so that the table fits a page's column.

    Example:
        >>> run = {"command": "otflows bench ot-maps", "machine": {"threads": 1},
        ...        "args": {"max_iter": "800", "lr": "0.01", "refine_rounds": "0"},
        ...        "rows": [{"d": 2, "method": "linear (Bures)", "l2_uvp": 13.88},
        ...                 {"d": 2, "method": "icnn + semidual", "l2_uvp": 2.41,
        ...                  "problem": "Gaussian"}]}
        >>> print(rendered_together([run]))
        | d | method | L2-UVP (%) | steps | lr | threads | linear (Bures) | run |
        |---|---|---|---|---|---|---|---|
        | 2 | icnn + semidual | 2.41 | 800 | 0.01 | 1 | 13.88 | [1] |
        <BLANKLINE>
        Runs:
        <BLANKLINE>
        1. `otflows bench ot-maps`
    """
    table, commands = [], []
    for payload in payloads:
        args = payload["args"]
        reference = {
            (row["d"], row["method"]): row["l2_uvp"]
            for row in payload["rows"]
            if row["method"] in ("linear (Bures)", "published [L]")
        }
        settings = {
            header: args[key] for key, header in SETTINGS if args.get(key, "None") != "None"
        }
        if int(args.get("refine_rounds", 0)):
            settings["refinement"] = f"{args['refine_rounds']} × {args['refine_iter']} steps"
        command = payload["command"].replace(str(args.get("w2bench")), "PATH/TO/w2bench")
        for row in payload["rows"]:
            if (row["d"], row["method"]) in reference:
                continue
            beside = {
                key: reference[row["d"], method]
                for key, method in (("bures", "linear (Bures)"), ("published", "published [L]"))
                if (row["d"], method) in reference
            }
            if row["problem"] == W2_PROBLEM and row["d"] in PUBLISHED_BEST:
                beside["best"] = PUBLISHED_BEST[row["d"]]
            threads = payload["machine"]["threads"]
            if command not in commands:  # numbered as its first row is shown
                commands.append(command)
            run = f"[{commands.index(command) + 1}]"
            table.append(row | settings | beside | {"threads": threads, "run": run})
    columns = [
        ("d", "d"),
        ("method", "method"),
        ("l2_uvp", "L2-UVP (%)"),
        ("cos", "cos"),
        ("semidual_uvp", "semi-dual gap (%)"),
        *((header, header) for _, header in SETTINGS),
        ("refinement", "refinement"),
        ("seconds", "fit time (s)"),
        ("threads", "threads"),
        ("bures", "linear (Bures)"),
        ("published", "published [L]"),
        ("best", "best published"),
        ("run", "run"),
    ]
    listed = "\n".join(f"{i}. `{command}`" for i, command in enumerate(commands, 1))
    return f"{markdown_table(table, columns)}\n\nRuns:\n\n{listed}"


# the net:objective pairs run by default; "known-map" is the supervised reference
DEFAULT_METHODS = (
    "qicnn:semidual",
    "mmgn:semidual",
    "mmgn:likelihood",
    "mmgn:sinkhorn",
    "qicnn:known-map",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otflows bench ot-maps", description=description(__doc__)
    )
    parser.add_argument("--w2bench", type=Path, default=None, help="the W2 benchmark folder")
    parser.add_argument("--gaussian-dims", type=int, nargs="*", default=[2, 8, 32, 64])
    parser.add_argument("--w2-dims", type=int, nargs="*", default=[2, 4, 8, 16, 32, 64])
    parser.add_argument(
        "--methods",
        nargs="*",
        default=list(DEFAULT_METHODS),
        help="net:objective pairs; objective 'known-map' is the supervised reference "
        "(KnownMapRegression)",
    )
    parser.add_argument("--max-iter", type=int, default=2000)
    parser.add_argument(
        "--init-iter",
        type=int,
        default=inspect.signature(BrenierMap).parameters["init_iter"].default,
        help="steps of the Bures start (BrenierMap's init_iter)",
    )
    parser.add_argument("--sinkhorn-iter", type=int, default=300)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument(
        "--entropic-samples",
        type=int,
        default=5000,
        help="samples per side the entropic map is fitted on (its memory grows as their square)",
    )
    parser.add_argument(
        "--test-samples", type=int, default=4096, help="fresh source samples that score a map"
    )
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--target-batch-size", type=int, default=None, help="default --batch-size")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument(
        "--refine-rounds", type=int, default=0, help="BrenierMap's refine_rounds (not known-map)"
    )
    parser.add_argument("--refine-iter", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.0,
        help="held-out share of each side that selects the best weights (BrenierMap's "
        "validation_fraction; default 0: every sample trains, as in the recorded runs)",
    )
    add_threads_option(parser)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (d = 2 and 8, 30 steps): its numbers mean nothing",
    )
    parser.add_argument("--progress", action="store_true")
    add_device_option(parser)
    add_out_option(parser, "ot_maps.json")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the benchmark from command-line arguments; returns what it writes as JSON."""
    args = _parser().parse_args(argv)
    if args.quick:
        args.gaussian_dims, args.w2_dims = [2, 8], [2]
        args.max_iter = args.sinkhorn_iter = 30
        args.init_iter = 10
        args.samples, args.batch_size, args.hidden = 4000, 64, 16
        args.test_samples = 512
    set_threads(args.threads)
    as_device(args.device, "--device")
    keep_freed_memory()
    methods = [tuple(m.split(":")) for m in args.methods]

    rows = []
    for d in args.gaussian_dims:
        rows += run(GaussianCoupling.random_pair(d, seed=0), "Gaussian", d, methods, args)
    if args.w2bench is None or not args.w2bench.is_dir():
        print(f"W2 benchmark skipped: no folder {args.w2bench} (give --w2bench PATH)")
    else:
        available = W2BenchmarkPair.available(args.w2bench)
        for d in args.w2_dims:
            if d not in available:
                print(f"W2 benchmark d = {d} skipped: its weights are not in {args.w2bench}")
                continue
            rows += run(W2BenchmarkPair(args.w2bench, d), W2_PROBLEM, d, methods, args)
    print(markdown_table(rows, COLUMNS))
    payload = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
    write_json(args.out, payload, smoke=args.quick)
    return payload


if __name__ == "__main__":
    main()
