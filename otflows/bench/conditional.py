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

Prints the tables, writes JSON and a figure.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from otflows.bench.baselines import autoregressive_flow
from otflows.bench.common import (
    add_out_option,
    add_threads_option,
    description,
    markdown_table,
    run_isolated,
    set_threads,
    write_json,
)
from otflows.datasets import ConditionalGaussian
from otflows.flows import BrenierFlow
from otflows.maps import BrenierMap
from otflows.metrics import l2_uvp, log_prob
from otflows.training import fit_flow

FEATURES = 8
METHODS = ("brenier", "maf")
LABELS = {"brenier": "BrenierFlow (quadratic ICNN)", "maf": "nflows conditional MAF (5 × 64)"}


def problem(task: str) -> ConditionalGaussian:
    r"""The task's conditional Gaussian (``"coupling"``, ``"sbi"`` or ``"pairs"``)."""
    if task == "coupling":
        return ConditionalGaussian.smooth(FEATURES, 2, seed=0)
    if task == "sbi":
        return ConditionalGaussian.linear_gaussian_posterior(FEATURES, FEATURES, seed=0)
    return ConditionalGaussian.smooth(FEATURES, 1, seed=1)


def flow_run(task: str, method: str, samples: int, steps: int, threads: int | None) -> dict:
    r"""Fits one conditional flow to ``samples`` (c, x) pairs and scores it on 5000 fresh
    ones: KL and the L2-UVP of its map to noise."""
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
    history = fit_flow(
        flow,
        x.astype(np.float32),
        context=c.astype(np.float32),
        max_iter=steps,
        batch_size=256,
        seed=0,
        progress=False,
    )
    flow.eval()
    q = log_prob(flow, x_test.astype(np.float32), context=c_test.astype(np.float32))
    with torch.no_grad():
        z = flow.transport(
            torch.as_tensor(x_test, dtype=torch.float32),
            torch.as_tensor(c_test, dtype=torch.float32),
        )
    return {
        "kl": float(np.mean(truth.log_prob(x_test, c_test) - q.double().numpy())),
        "l2_uvp": l2_uvp(z.double().numpy(), truth.to_normal(x_test, c_test)),
        "steps": len(history.loss),
        "best_step": history.best_step,
        "seconds": history.seconds,
    }


def pairs_run(samples: int, steps: int, threads: int | None) -> dict:
    r"""Fits the conditional OT map on 9 doses (``samples`` target rows each, as many shared
    source rows in all) and scores it at every dose and halfway between."""
    set_threads(threads)
    truth = problem("pairs")
    seen = np.linspace(-1.0, 1.0, 9)
    rng = np.random.default_rng(1)
    ct = np.repeat(seen, samples)[:, None]
    Xt = truth.sample(len(ct), seed=2, context=ct)[1]
    Xs = rng.normal(size=(len(ct), FEATURES))
    start = time.perf_counter()
    otmap = BrenierMap(max_iter=steps, random_state=0, progress=False).fit(Xs=Xs, Xt=Xt, ct=ct)
    seconds = time.perf_counter() - start
    z = np.random.default_rng(3).normal(size=(4000, FEATURES))
    scores = []
    for dose in np.sort(np.concatenate([seen, (seen[:-1] + seen[1:]) / 2])):
        c = np.full((len(z), 1), dose)
        uvp = l2_uvp(otmap.transform(z, cs=c), truth.from_normal(z, c))
        scores.append({"dose": float(dose), "seen": bool(np.isin(dose, seen)), "l2_uvp": uvp})
    return {"doses": scores, "seconds": seconds, "steps": steps}


def summarise(pairs: dict) -> list[dict]:
    r"""The pairs' rows: L2-UVP at the seen and at the unseen doses (mean and worst)."""
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
    rows[1]["ratio"] = rows[1]["l2_uvp"] / rows[0]["l2_uvp"]
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
]


def rendered(payload: dict) -> str:
    r"""The flows' table and the conditional OT map's."""
    flows = [r | {"method": LABELS[r["method"]]} for r in payload["flows"]]
    return (
        markdown_table(flows, FLOW_COLUMNS)
        + "\n\n"
        + markdown_table(payload["pairs_rows"], PAIR_COLUMNS)
    )


def plot(payload: dict) -> Figure:
    r"""L2-UVP of the conditional OT map at each dose, seen and unseen."""
    figure = Figure(figsize=(6, 3.5))
    ax = figure.subplots()
    for seen, marker, label in ((True, "o", "seen in training"), (False, "x", "unseen")):
        doses = [d for d in payload["pairs"]["doses"] if d["seen"] == seen]
        ax.plot([d["dose"] for d in doses], [d["l2_uvp"] for d in doses], marker, label=label)
    ax.set_xlabel("dose c")
    ax.set_ylabel("L2-UVP (%)")
    ax.set_title("Conditional OT map N(0, I) → N(m(c), S(c)²), d = 8")
    ax.legend()
    figure.tight_layout()
    return figure


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the benchmark from command-line arguments; returns what it writes as JSON."""
    parser = argparse.ArgumentParser(
        prog="otflows bench conditional", description=description(__doc__)
    )
    parser.add_argument("--samples", type=int, default=20_000, help="the flows' (c, x) pairs")
    parser.add_argument("--steps", type=int, default=2000, help="the flows' steps (each)")
    parser.add_argument("--pair-samples", type=int, default=2000, help="target rows per dose")
    parser.add_argument("--pair-steps", type=int, default=2000, help="BrenierMap's max_iter")
    parser.add_argument("--quick", action="store_true", help="a smoke run: short fits")
    add_threads_option(parser)
    add_out_option(parser, "conditional.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.steps, args.pair_samples, args.pair_steps = 2000, 20, 200, 20
    plan = [
        {"task": task, "method": method, "samples": args.samples, "steps": args.steps}
        for task in ("coupling", "sbi")
        for method in METHODS
    ]
    fresh = not args.quick
    flows = run_isolated(flow_run, [p | {"threads": args.threads} for p in plan], "flows", fresh)
    pairs = run_isolated(
        pairs_run,
        [{"samples": args.pair_samples, "steps": args.pair_steps, "threads": args.threads}],
        "pairs",
        fresh,
    )[0]
    payload: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "flows": [{k: v for k, v in r.items() if k != "threads"} for r in flows],
        "pairs": pairs,
        "pairs_rows": summarise(pairs) if "doses" in pairs else [pairs],
    }
    payload["rows"] = payload["flows"] + payload["pairs_rows"]
    print(rendered(payload))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if "doses" in pairs:
        plot(payload).savefig(args.out.with_suffix(".png"), dpi=120)
    write_json(args.out, payload, smoke=args.quick)
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return payload


if __name__ == "__main__":
    main()
