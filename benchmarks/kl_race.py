r"""Exact gradients as wall time: an M-MGN flow with the structured (exact) log-det against
CP-Flow through the ``cpflows`` package (stochastic log-det), racing to a KL target on the
Gaussian coupling :math:`N(m, C) \to N(0, I)`, m ~ randn(d), C ~ Wishart(d + 1, I).

    python benchmarks/kl_race.py             # d = 64, 256
    python benchmarks/kl_race.py --quick     # d = 16, short runs

KL(μ‖p) = E_μ[log μ − log p] on held-out samples with exact log-determinants for both flows
(CP-Flow's brute-force Hessian), measured at checkpoints; only training time is counted. The
per-step costs are ``otflows bench logdet``'s. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch

from otflows.bench.baselines import CPFlow
from otflows.bench.common import (
    Curve,
    add_out_option,
    add_threads_option,
    description,
    markdown_table,
    seconds_to,
    set_threads,
    write_json,
)
from otflows.bench.processes import isolated


def race(
    method: str, d: int, steps: int, checkpoints: int, threads: int | None, target: float
) -> dict:
    """Trains one flow, measuring the exact test KL at ``checkpoints`` evenly spaced steps."""
    from otflows import BrenierFlow, fit_flow
    from otflows.datasets import GaussianCoupling
    from otflows.metrics import kl_divergence

    set_threads(threads)
    problem = GaussianCoupling.random(d, seed=0)
    X = torch.as_tensor(problem.sample(50_000, seed=1), dtype=torch.float32)
    X_test = problem.sample(5_000, seed=3)
    torch.manual_seed(0)
    flow: torch.nn.Module
    if method == "mmgn":
        flow = BrenierFlow(d, "mmgn", num_blocks=1, hidden_features=16, num_modules=4)
        protocol: dict[str, Any] = dict(batch_size=512, lr=0.01)
    else:  # CP-Flow's train_ot protocol, with its CG surrogate
        cpflow = CPFlow(d, bruteforce=False)
        cpflow.initialize(X[:128])
        flow = cpflow
        protocol = dict(batch_size=128, lr=0.05)
    curve = Curve(lambda model: kl_divergence(model, X_test, problem.log_prob, batch_size=250))
    curve.start()
    seconds = fit_flow(
        flow,
        X,
        max_iter=steps,
        clip_grad=10.0,
        validation_fraction=0,  # every step from a random start, as the papers train
        gaussian_start=False,
        random_state=0,
        progress=False,
        validation_interval=steps // checkpoints,
        callback=curve,
        **protocol,
    ).seconds
    points = curve.points
    return {
        "curve": points,
        "final_kl": points[-1][2],
        "seconds": seconds,
        "seconds_to_target": seconds_to(points, target),
        "entropy": problem.entropy,
    }


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the benchmark from command-line arguments; returns what it writes as JSON."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/kl_race.py", description=description(__doc__)
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (d = 16, short runs): its numbers mean nothing",
    )
    parser.add_argument("--dims", type=int, nargs="+", default=None)
    parser.add_argument("--target", type=float, default=0.05, help="KL target in nats")
    add_threads_option(parser)
    parser.add_argument("--methods", nargs="+", default=["mmgn", "cpflows"])
    add_out_option(parser, "kl_race.json")
    args = parser.parse_args(argv)
    dims = args.dims or ([16] if args.quick else [64, 256])
    # CP-Flow's protocol: 2 epochs of 50 000 at batch 128 = 782 steps; ours: batch 512
    plans = {
        "mmgn": (40, 2) if args.quick else (2400, 48),
        "cpflows": (20, 2) if args.quick else (782, 4),
    }
    rows = []
    for d in dims:
        for method in args.methods:
            steps, checkpoints = plans[method]
            result = isolated(
                race,
                fresh=not args.quick,
                method=method,
                d=d,
                steps=steps,
                checkpoints=checkpoints,
                threads=args.threads,
                target=args.target,
            )
            rows.append({"d": d, "method": method, "steps": steps, **result})
    for row in rows:
        cp = next((r for r in rows if r["d"] == row["d"] and r["method"] == "cpflows"), {})
        if row.get("seconds_to_target") and cp.get("seconds_to_target"):
            row["speedup"] = cp["seconds_to_target"] / row["seconds_to_target"]
        if "curve" in row and "final_kl" in cp:
            # when this run first matched CP-Flow's final KL, against CP-Flow's whole run
            row["seconds_to_cpflows_kl"] = seconds_to(row["curve"], cp["final_kl"])
            if row["seconds_to_cpflows_kl"] is not None:
                row["fraction_of_cpflows_time"] = row["seconds_to_cpflows_kl"] / cp["seconds"]
    payload = {"target": args.target, "rows": rows}
    print(rendered(payload))
    write_json(args.out, payload, smoke=args.quick)
    return payload


def rendered(payload: dict) -> str:
    r"""The race's table: per d and method, the training time, the final KL and the time to the
    KL target and to CP-Flow's final KL."""
    target = payload["target"]
    return markdown_table(
        payload["rows"],
        [
            ("d", "d"),
            ("method", "method"),
            ("steps", "steps"),
            ("seconds", "train s"),
            ("final_kl", "final KL"),
            ("seconds_to_target", f"s to KL < {target}"),
            ("speedup", "× CP-Flow"),
            ("seconds_to_cpflows_kl", "s to CP-Flow's final KL"),
            ("fraction_of_cpflows_time", "÷ CP-Flow's time"),
            ("error", "error"),
        ],
    )


if __name__ == "__main__":
    main()
