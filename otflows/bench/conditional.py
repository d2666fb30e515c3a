r"""Conditional flows and maps against closed forms: conditional Brenier flows beside nflows'
conditional MAF, and a conditional OT map at conditions seen and never seen in training.

    otflows bench conditional            # d = 8, 20 000 samples, 2000 steps
    otflows bench conditional --quick    # a smoke run

Every problem is a :class:`otflows.datasets.ConditionalGaussian`, so densities and maps are
known for every condition:

- ``coupling``: :math:`x \mid c \sim \mathcal N(m(c), S(c)^2)`, ``c`` uniform on
  :math:`[-1, 1]^2`, d = 8, mapped onto :math:`\mathcal N(0, I)`. A conditional
  :class:`otflows.BrenierFlow` (the quadratic ICNN with a context) and nflows' conditional MAF
  (5 MADE layers of 64 units) are fitted by :func:`otflows.fit_flow` to the same (c, x)
  pairs, with the same steps and batch. Scores on 5000 held-out pairs (fresh contexts): the KL
  divergence :math:`\mathbb E_c \mathrm{KL}(p(\cdot \mid c) \,\|\, q(\cdot \mid c))` and the
  L2-UVP of the flow's map to noise against the Brenier map :math:`S(c)^{-1}(x - m(c))`.
- ``sbi``: the posterior :math:`p(\theta \mid x)` of a linear-Gaussian model
  (:math:`\theta \in \mathbb R^8`, :math:`x = A\theta + 0.5\varepsilon \in \mathbb R^8`); the same
  two flows fitted to (x, θ) pairs of the joint; the posterior KL averaged over held-out
  observations.
- ``pairs``: a conditional OT map (:class:`otflows.BrenierMap` with ``ct``, its defaults) from
  :math:`\mathcal N(0, I)` samples shared by every condition onto
  :math:`\mathcal N(m(c), S(c)^2)`, d = 8, a one-dimensional condition ("a dose") on
  :math:`[-1, 1]`, fitted on 9 doses and scored by L2-UVP against :math:`S(c) z + m(c)` at
  those doses and at the 8 halfway between, never seen in training.
- ``w2pair`` (with ``--w2bench PATH``): the W2 benchmark's Mix3 → Mix10 pair
  (:class:`otflows.datasets.W2BenchmarkPair`, d = 8) whose input mixture's weights move with the
  dose, softmax(2c·(−1, 0, 1)) on :math:`[-1, 1]`: sources and targets labelled by dose, both
  sides changing with it, while the optimal map stays :math:`T^*` at every dose (the gradient
  of a convex function is optimal from any source). The conditional map must learn that from
  non-Gaussian samples; beside it, one unconditional map fitted to all doses pooled. Scored like
  ``pairs``. Without the folder the task is skipped and says so.

Prints the tables, writes JSON and a figure.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from otflows.bench.baselines import autoregressive_flow
from otflows.bench.common import (
    add_device_option,
    add_out_option,
    add_threads_option,
    description,
    markdown_table,
    save_figure,
    set_threads,
    write_json,
)
from otflows.bench.processes import run_isolated
from otflows.datasets import ConditionalGaussian, W2BenchmarkPair
from otflows.flows import BrenierFlow
from otflows.maps import BrenierMap
from otflows.metrics import l2_uvp, log_prob
from otflows.training.fit import fit_flow
from otflows.validation import as_device

FEATURES = 8
METHODS = ("brenier", "maf")
SEEN = np.linspace(-1.0, 1.0, 9)  # the training doses; scored too at the 8 halfway between
LABELS = {"brenier": "BrenierFlow (quadratic ICNN)", "maf": "nflows conditional MAF (5 × 64)"}


def problem(task: str) -> ConditionalGaussian:
    r"""The task's conditional Gaussian (``"coupling"``, ``"sbi"`` or ``"pairs"``)."""
    if task == "coupling":
        return ConditionalGaussian.smooth(FEATURES, 2, seed=0)
    if task == "sbi":
        return ConditionalGaussian.linear_gaussian_posterior(FEATURES, FEATURES, seed=0)
    return ConditionalGaussian.smooth(FEATURES, 1, seed=1)


def flow_run(
    task: str, method: str, samples: int, steps: int, threads: int | None, device: str = "cpu"
) -> dict:
    r"""Fits one conditional flow to ``samples`` (c, x) pairs on ``device`` and scores it on
    5000 fresh ones: KL and the L2-UVP of its map to noise."""
    set_threads(threads)
    truth = problem(task)
    c, x = truth.sample(samples, seed=1)
    c_test, x_test = truth.sample(5000, seed=2)
    torch.manual_seed(0)
    C = c.shape[1]
    if method == "brenier":
        flow = BrenierFlow(FEATURES, "qicnn", context_features=C)
    else:
        flow = autoregressive_flow(FEATURES, "maf", 5, 64, context_features=C)
    flow.to(device)
    history = fit_flow(
        flow,
        x.astype(np.float32),
        c=c.astype(np.float32),
        max_iter=steps,
        batch_size=256,
        random_state=0,
        progress=False,
    )
    flow.eval()
    q = log_prob(flow, x_test.astype(np.float32), context=c_test.astype(np.float32))
    with torch.no_grad():
        z = flow.transport(
            torch.as_tensor(x_test, dtype=torch.float32, device=device),
            torch.as_tensor(c_test, dtype=torch.float32, device=device),
        )
    return {
        "kl": float(np.mean(truth.log_prob(x_test, c_test) - q.double().cpu().numpy())),
        "l2_uvp": l2_uvp(z.double().cpu().numpy(), truth.to_normal(x_test, c_test)),
        "steps": len(history.loss),
        "best_step": history.best_step,
        "seconds": history.seconds,
    }


def scored_doses(score: Callable[[float], float]) -> list[dict]:
    r"""``score(dose)`` at the training doses :data:`SEEN` and halfway between, in order."""
    doses = np.sort(np.concatenate([SEEN, (SEEN[:-1] + SEEN[1:]) / 2]))
    return [
        {"dose": float(dose), "seen": bool(np.isin(dose, SEEN)), "l2_uvp": score(dose)}
        for dose in doses
    ]


def pairs_run(samples: int, steps: int, threads: int | None, device: str = "cpu") -> dict:
    r"""Fits the conditional OT map on 9 doses (``samples`` target rows each, as many shared
    source rows in all) and scores it at every dose and halfway between."""
    set_threads(threads)
    truth = problem("pairs")
    rng = np.random.default_rng(1)
    ct = np.repeat(SEEN, samples)[:, None]
    Xt = truth.sample(len(ct), seed=2, context=ct)[1]
    Xs = rng.normal(size=(len(ct), FEATURES))
    start = time.perf_counter()
    otmap = BrenierMap(max_iter=steps, random_state=0, progress=False, device=device)
    otmap.fit(Xs=Xs, Xt=Xt, ct=ct)
    seconds = time.perf_counter() - start
    z = np.random.default_rng(3).normal(size=(4000, FEATURES))

    def score(dose: float) -> float:
        c = np.full((len(z), 1), dose)
        return l2_uvp(otmap.transform(z, cs=c), truth.from_normal(z, c))

    return {"doses": scored_doses(score), "seconds": seconds, "steps": steps}


def mixture_weights(dose: np.ndarray) -> np.ndarray:
    r"""The input mixture's weights at each dose, ``[n] -> [n, 3]``: softmax(2c·(−1, 0, 1)),
    mass moving from the first component (87 % at c = −1) to the third (87 % at c = 1)."""
    logits = 2.0 * np.asarray(dose, dtype=np.float64)[:, None] * np.array([-1.0, 0.0, 1.0])
    weights = np.exp(logits)
    return weights / weights.sum(1, keepdims=True)


def w2pair_run(
    folder: str, dim: int, samples: int, steps: int, threads: int | None, device: str = "cpu"
) -> dict[str, Any]:
    r"""Fits the conditional map to the W2 pair with dose-dependent mixture weights
    (``samples`` rows per side and dose) and one unconditional map to all doses pooled;
    scores both against :math:`T^*` at every dose and halfway between."""
    set_threads(threads)
    pair = W2BenchmarkPair(folder, dim)
    c = np.repeat(SEEN, samples)[:, None]
    Xs = pair.sample_source(len(c), seed=1, weights=mixture_weights(c[:, 0]))
    Xt = pair.sample_target(len(c), seed=2, weights=mixture_weights(c[:, 0]))
    start = time.perf_counter()
    settings: dict[str, Any] = {"max_iter": steps, "random_state": 0, "progress": False}
    settings["device"] = device
    otmap = BrenierMap(**settings).fit(Xs=Xs, Xt=Xt, cs=c, ct=c)
    seconds = time.perf_counter() - start
    pooled = BrenierMap(**settings).fit(Xs=Xs, Xt=Xt)

    @functools.cache
    def test_points(dose: float) -> tuple[np.ndarray, np.ndarray]:
        z = pair.sample_source(4000, seed=3, weights=mixture_weights(np.full(4000, dose)))
        return z, pair.brenier_map(z)

    def conditional(dose: float) -> float:
        z, true = test_points(dose)
        return l2_uvp(otmap.transform(z, cs=np.full((len(z), 1), dose)), true)

    def unconditional(dose: float) -> float:
        z, true = test_points(dose)
        return l2_uvp(pooled.transform(z), true)

    return {
        "doses": scored_doses(conditional),
        "pooled": scored_doses(unconditional),
        "seconds": seconds,
        "steps": steps,
        "dim": dim,
    }


def summarise(pairs: dict) -> list[dict]:
    r"""A conditional pair's rows: L2-UVP at the seen and at the unseen doses (mean and
    worst), and, where there is one, the pooled unconditional map's at all of them."""
    if "doses" not in pairs:  # skipped or failed: its reason
        return [pairs]
    rows: list[dict[str, Any]] = []
    for seen in (True, False):
        values = [d["l2_uvp"] for d in pairs["doses"] if d["seen"] == seen]
        rows.append(
            {
                "doses": "seen in training (9)" if seen else "halfway between (8, unseen)",
                "l2_uvp": float(np.mean(values)),
                "l2_uvp_max": float(np.max(values)),
            }
        )
    if "pooled" in pairs:
        values = [d["l2_uvp"] for d in pairs["pooled"]]
        rows.append(
            {
                "doses": "all 17, one unconditional map of the pooled doses",
                "l2_uvp": float(np.mean(values)),
                "l2_uvp_max": float(np.max(values)),
            }
        )
    for row in rows[1:]:
        row["ratio"] = row["l2_uvp"] / rows[0]["l2_uvp"]
    return rows


FLOW_COLUMNS = [
    ("task", "task"),
    ("method", "method"),
    ("kl", "KL (nats)"),
    ("l2_uvp", "L2-UVP (%)"),
    ("steps", "steps"),
    ("best_step", "kept step"),
    ("seconds", "train s"),
    ("error", "error"),
]
PAIR_COLUMNS = [
    ("doses", "doses"),
    ("l2_uvp", "mean L2-UVP (%)"),
    ("l2_uvp_max", "worst L2-UVP (%)"),
    ("ratio", "÷ seen"),
    ("error", "error"),
]
TITLES = {
    "pairs": "N(0, I) → N(m(c), S(c)²), d = 8",
    "w2pair": "W2 pair, mixture weights by dose, d = 8",
}


def rendered(payload: dict) -> str:
    r"""The flows' table and a table per conditional OT pair."""
    flows = [r | {"method": LABELS[r["method"]]} for r in payload["flows"]]
    tables = [markdown_table(flows, FLOW_COLUMNS)]
    for task in TITLES:
        if f"{task}_rows" in payload:
            tables += [f"{task}:", markdown_table(payload[f"{task}_rows"], PAIR_COLUMNS)]
    return "\n\n".join(tables)


def figure(payload: dict) -> Figure:
    r"""L2-UVP of each conditional OT map at each dose, seen and unseen (a panel per pair)."""
    tasks = [t for t in TITLES if "doses" in payload.get(t, {})]
    fig = Figure(figsize=(6 * len(tasks), 3.5))
    for ax, task in zip(fig.subplots(1, len(tasks), squeeze=False)[0], tasks, strict=True):
        for seen, marker, label in ((True, "o", "seen in training"), (False, "x", "unseen")):
            doses = [d for d in payload[task]["doses"] if d["seen"] == seen]
            ax.plot([d["dose"] for d in doses], [d["l2_uvp"] for d in doses], marker, label=label)
        if "pooled" in payload[task]:
            pooled = payload[task]["pooled"]
            ax.plot(
                [d["dose"] for d in pooled],
                [d["l2_uvp"] for d in pooled],
                "--",
                color="gray",
                label="one map of the pooled doses",
            )
        ax.set_xlabel("dose c")
        ax.set_ylabel("L2-UVP (%)")
        ax.set_title(f"Conditional OT map: {TITLES[task]}", fontsize=10)
        ax.legend()
    fig.tight_layout()
    return fig


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the benchmark from command-line arguments; returns what it writes as JSON."""
    parser = argparse.ArgumentParser(
        prog="otflows bench conditional", description=description(__doc__)
    )
    parser.add_argument("--samples", type=int, default=20_000, help="the flows' (c, x) pairs")
    parser.add_argument("--steps", type=int, default=2000, help="the flows' steps (each)")
    parser.add_argument("--pair-samples", type=int, default=2000, help="target rows per dose")
    parser.add_argument("--pair-steps", type=int, default=2000, help="BrenierMap's max_iter")
    parser.add_argument(
        "--w2bench",
        type=Path,
        default=None,
        help="the W2 benchmark's folder, for the w2pair task (skipped without it)",
    )
    parser.add_argument("--w2-dim", type=int, default=FEATURES, help="the w2pair's dimension")
    parser.add_argument("--quick", action="store_true", help="a smoke run: short fits")
    add_threads_option(parser)
    add_device_option(parser)
    add_out_option(parser, "conditional.json", figure=True)
    args = parser.parse_args(argv)
    as_device(args.device, "--device")
    if args.quick:
        args.samples, args.steps, args.pair_samples, args.pair_steps = 2000, 20, 200, 20
    plan = [
        {"task": task, "method": method, "samples": args.samples, "steps": args.steps}
        for task in ("coupling", "sbi")
        for method in METHODS
    ]
    fresh = not args.quick
    where = {"threads": args.threads, "device": args.device}
    flows = run_isolated(flow_run, [p | where for p in plan], "flows", fresh)
    pair = {"samples": args.pair_samples, "steps": args.pair_steps} | where
    pairs = run_isolated(pairs_run, [pair], "pairs", fresh)[0]
    if args.w2bench is None:
        w2pair: dict[str, Any] = {"error": "skipped: no --w2bench folder given"}
    elif args.w2_dim not in W2BenchmarkPair.available(args.w2bench):
        w2pair = {"error": f"skipped: no d = {args.w2_dim} pair in {args.w2bench}"}
    else:
        task = pair | {"folder": str(args.w2bench), "dim": args.w2_dim}
        w2pair = run_isolated(w2pair_run, [task], "w2pair", fresh)[0]
    payload: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "flows": [{k: v for k, v in r.items() if k not in where} for r in flows],
        "pairs": pairs,
        "pairs_rows": summarise(pairs),
        "w2pair": w2pair,
        "w2pair_rows": summarise(w2pair),
    }
    payload["rows"] = payload["flows"] + payload["pairs_rows"]
    print(rendered(payload))
    drawn = save_figure(figure(payload), args.out) if "doses" in pairs else None
    write_json(args.out, payload, smoke=args.quick, figure=drawn)
    return payload


if __name__ == "__main__":
    main()
