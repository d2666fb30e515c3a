r"""The MGN paper's Table 1: regressing the gradient of a convex function on the unit square.

    otflows bench gradient-field            # 5 trials, the GradNets protocol (about 15 min)
    otflows bench gradient-field --quick    # a smoke run

f(x) = x₁⁴ + x₁²/2 + x₁x₂/2 + 3x₂²/2 − x₂³/3 (the authors' code and the ICGN paper; the MGN
paper prints x₂/2), convex on [0, 1]²; ∇f = [4x₁³ + x₁ + x₂/2, x₁/2 + 3x₂ − x₂²]. Each network
(≤ 100 parameters) regresses ∇f on 100 000 uniform points (batch 1000, 200 epochs, as the
GradNets notebook; Adam 1e-2 annealed by a cosine, where the notebook keeps 5e-3: ``--lr``).
Score: the MSE in dB, 10·log₁₀ mean ‖ĝ(x) − ∇f(x)‖², on a 100 × 100 grid. Mean ± std over
trials; the published rows beside ours. Prints markdown, writes JSON and the error-map figure
(MGN Fig. 1).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor
from tqdm.auto import tqdm

from otflows.bench.baselines import parameter_count
from otflows.bench.common import (
    add_device_option,
    add_out_option,
    add_threads_option,
    aggregate,
    description,
    report,
    set_threads,
)
from otflows.nets import build_net
from otflows.training.optim import adam, descend
from otflows.validation import as_device

# (net, sizes): each at most 100 parameters at d = 2
NETS = {
    "C-MGN (2 layers)": ("cmgn", dict(hidden_features=10, num_layers=2)),
    "C-MGN (3 layers)": ("cmgn", dict(hidden_features=8, num_layers=3)),
    # without the learnable scalings α, β, ω: their parameters buy width and depth instead
    "C-MGN (4 layers, unscaled)": ("cmgn", dict(hidden_features=15, num_layers=4, scaled=False)),
    "M-MGN": ("mmgn", dict(hidden_features=8, num_modules=3)),
    "ICGN": ("icgn", dict(hidden_features=30)),
    "ICNN": ("icnn", dict(hidden_features=6, num_layers=2)),
}
# MGN paper Table 1 (dB, parameters) and GradNets' notebook (mean over 5 trials)
PUBLISHED = [
    {"method": "ICGN (MGN paper)", "db": -15.00, "parameters": 15},
    {"method": "ICNN (MGN paper)", "db": -30.88, "parameters": 163},
    {"method": "C-MGN (MGN paper)", "db": -39.10, "parameters": 14},
    {"method": "M-MGN (MGN paper)", "db": -32.31},
    {"method": "mGradNet-C (GradNets)", "db": -49.05, "parameters": 100},
    {"method": "mGradNet-M (GradNets)", "db": -48.65, "parameters": 94},
]


def grad_f(x: Tensor) -> Tensor:
    r""":math:`\nabla f` at ``x`` ``[N, 2]``.

    Example:
        >>> grad_f(torch.tensor([[1.0, 1.0]]))
        tensor([[5.5000, 2.5000]])
    """
    x1, x2 = x[:, 0], x[:, 1]
    return torch.stack([4 * x1**3 + x1 + x2 / 2, x1 / 2 + 3 * x2 - x2**2], dim=1)


def grid(n: int = 100, device: str | torch.device = "cpu") -> Tensor:
    """The ``n × n`` evaluation grid on [0, 1]², ``[n², 2]``, on ``device``."""
    t = torch.linspace(0.0, 1.0, n, device=device)
    return torch.cartesian_prod(t, t)


def trial(name: str, seed: int, epochs: int, samples: int, lr: float, device: str = "cpu") -> dict:
    """Trains one network from seed ``seed`` on ``device``; its grid MSE (dB) and
    squared-error map."""
    net_name, sizes = NETS[name]
    generator = torch.Generator().manual_seed(seed)
    X = torch.rand(samples, 2, generator=generator).to(device)
    Y = grad_f(X)
    torch.manual_seed(seed)
    net = build_net(net_name, 2, **sizes).to(device)
    batch = min(1000, samples)
    steps = epochs * math.ceil(samples / batch)
    optimizer, scheduler = adam(net.parameters(), lr=lr, total=steps)
    start = time.perf_counter()
    for step in range(steps):
        if step % math.ceil(samples / batch) == 0:
            order = torch.randperm(samples, generator=generator).to(device)
        index = order[(step * batch) % samples :][:batch]
        loss = (net(X[index]) - Y[index]).square().sum(-1).mean()
        descend(loss, optimizer, scheduler, clip_grad=None, step=step)
    seconds = time.perf_counter() - start
    G = grid(device=device)
    with torch.no_grad():
        error = (net(G) - grad_f(G)).square().sum(-1).cpu()
    return {
        "db": 10 * math.log10(float(error.mean())),
        "parameters": parameter_count(net),
        "seconds": seconds,
        "error_map": error.reshape(100, 100).tolist(),
    }


def plot(best: dict[str, dict]) -> Figure:
    """Each network's squared-error map on the grid (log scale), as MGN Fig. 1."""
    fig = Figure(figsize=(3.2 * len(best), 3), layout="constrained")
    axes = fig.subplots(1, len(best), squeeze=False)[0]
    for ax, (name, result) in zip(axes, best.items(), strict=True):
        image = ax.imshow(
            np.log10(np.asarray(result["error_map"]).T + 1e-12),
            origin="lower",
            extent=(0, 1, 0, 1),
            vmin=-9,
            vmax=-2,
        )
        ax.set_title(f"{name}\n{result['db']:.1f} dB", fontsize=9)
    fig.colorbar(image, ax=axes, label="log10 ‖ĝ − ∇f‖²", shrink=0.8)
    return fig


COLUMNS = [
    ("method", "method"),
    ("db", "MSE (dB)"),
    ("best_db", "best trial (dB)"),
    ("parameters", "parameters"),
    ("seconds", "train s"),
]


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the benchmark from command-line arguments; returns what it writes as JSON."""
    parser = argparse.ArgumentParser(
        prog="otflows bench gradient-field", description=description(__doc__)
    )
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam's initial rate (cosine)")
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    add_threads_option(parser)
    add_device_option(parser)
    parser.add_argument("--quick", action="store_true", help="2 trials, 3 epochs of 20 000")
    add_out_option(parser, "gradient_field.json", figure=True)
    args = parser.parse_args(argv)
    as_device(args.device, "--device")
    if args.quick:
        args.trials, args.epochs, args.samples = 2, 3, 20_000
    set_threads(args.threads)
    plan = [(name, seed) for name in args.nets for seed in range(args.trials)]
    runs = [
        {"method": name, "seed": seed}
        | trial(name, seed, args.epochs, args.samples, args.lr, args.device)
        for name, seed in tqdm(plan, desc="gradient field", unit="trial")
    ]
    rows = []
    best = {}
    for name in args.nets:
        group = [r for r in runs if r["method"] == name]
        rows.append(
            {
                "method": name,
                **aggregate(group, ["db"]),
                "best_db": min(r["db"] for r in group),
                "parameters": group[0]["parameters"],
                "seconds": statistics.mean(r["seconds"] for r in group),
            }
        )
        best[name] = min(group, key=lambda r: r["db"])
    rows += PUBLISHED
    figure = plot(best)
    for r in runs:
        del r["error_map"]
    return report(args, rows, COLUMNS, runs, figure)


if __name__ == "__main__":
    main()
