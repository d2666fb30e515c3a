r"""The demo (``otflows demo``): an M-MGN flow fitted to the MGN paper's d = 2 Gaussian
:math:`N(m, C) \to N(0, I)` and scored against closed forms."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from otflows.datasets import GaussianCoupling
from otflows.flows import BrenierFlow
from otflows.metrics import kl_divergence, l2_uvp, nll, transport_cost
from otflows.training.fit import fit_flow
from otflows.training.threads import threads_for

__all__ = ["COLUMNS", "rendered", "run"]

COLUMNS = [
    ("metric", "metric (10 000 test samples)"),
    ("value", "M-MGN"),
    ("closed", "closed form"),
]


def run(
    samples: int = 50_000,
    steps: int = 1500,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = None,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    r"""Fits the demo's flow (a random start, ``steps`` steps of batch 128, Adam 0.05: the MGN
    paper's protocol) to ``samples`` draws of N(m, C) with m = (1.5, 1),
    C = [[0.9, −0.75], [−0.75, 0.9]], and scores it on 10 000 test samples: the exact NLL
    against the entropy, KL(μ‖p), the transport cost against W2² and L2-UVP against the
    closed-form Brenier map.

    ``threads``: the fit's CPU threads (:func:`otflows.training.threads.threads_for`).

    Returns the results (``rows`` of metric, value and closed form; ``seconds`` of training
    on ``threads`` CPU threads; the settings) and the test samples x ``[10000, 2]`` with their
    images T(x) ``[10000, 2]``.

    Example:
        >>> payload, X, TX = run(samples=2000, steps=20, progress=False)
        >>> [row["metric"] for row in payload["rows"]][:2]
        ['NLL (nats, exact log-det)', 'KL = E[log μ − log p] (nats)']
    """
    torch.manual_seed(seed)
    problem = GaussianCoupling.mgn_2d()
    X = problem.sample(samples, seed=seed)
    X_val = problem.sample(5_000, seed=seed + 1)
    X_test = problem.sample(10_000, seed=seed + 2)
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=16, num_modules=4).to(dtype)
    start = time.perf_counter()
    fit_flow(
        flow,
        X,
        max_iter=steps,
        batch_size=128,
        lr=0.05,
        X_val=X_val,
        gaussian_start=False,  # the MGN paper's protocol: a random start, every step
        patience=None,
        keep_gaussian=False,
        random_state=seed,
        progress=progress,
        threads=threads,
    )
    seconds = time.perf_counter() - start
    threads = threads_for(sum(p.numel() for p in flow.parameters()) * 128, threads)
    flow.eval()
    with torch.no_grad():
        TX = flow.transport(torch.as_tensor(X_test, dtype=dtype)).double().numpy()
    true_cost = transport_cost(problem.brenier_map, X_test)
    rows = [
        {
            "metric": "NLL (nats, exact log-det)",
            "value": nll(flow, X_test),
            "closed": f"entropy {problem.entropy:.4f}",
        },
        {
            "metric": "KL = E[log μ − log p] (nats)",
            "value": kl_divergence(flow, X_test, problem.log_prob),
            "closed": "0",
        },
        {
            "metric": "cost E‖x − T(x)‖²",
            "value": transport_cost(flow.transport, X_test),
            "closed": f"W2² {problem.w2_squared:.4f}; true map on these points {true_cost:.4f}",
        },
        {
            "metric": "L2-UVP vs Brenier map (%)",
            "value": l2_uvp(TX, problem.brenier_map(X_test)),
            "closed": "0",
        },
    ]
    settings = {"samples": samples, "steps": steps, "dtype": str(dtype).removeprefix("torch.")}
    payload = {
        "args": settings | {"seed": seed},
        "rows": rows,
        "seconds": seconds,
        "threads": threads,
    }
    return payload, X_test, TX


def rendered(payload: dict) -> str:
    r"""The demo's table and its training time.

    Example:
        >>> row = {"metric": "L2-UVP vs Brenier map (%)", "value": 0.02651, "closed": "0"}
        >>> print(rendered({"rows": [row], "seconds": 3.71, "args": {"steps": 1500}}))
        | metric (10 000 test samples) | M-MGN | closed form |
        |---|---|---|
        | L2-UVP vs Brenier map (%) | 0.02651 | 0 |
        <BLANKLINE>
        Training: 1500 steps of batch 128 in 3.7 s.
    """
    from otflows.bench.common import markdown_table

    steps = payload["args"]["steps"]
    threads = payload.get("threads", payload.get("machine", {}).get("threads"))
    on = "" if threads is None else f" on {threads} CPU thread{'s' * (threads > 1)}"
    return (
        markdown_table(payload["rows"], COLUMNS)
        + f"\n\nTraining: {steps} steps of batch 128 in {payload['seconds']:.1f} s{on}."
    )
