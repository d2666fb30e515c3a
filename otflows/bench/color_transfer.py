"""Colour transfer on scikit-learn's sample images (china.jpg → flower.jpg): BrenierMap beside
POT's ``ot.da.LinearTransport`` and ``ot.da.SinkhornTransport`` (its out-of-sample
``transform``).

    otflows bench color-transfer            # 10 000 fitting pixels, 1000 steps
    otflows bench color-transfer --quick    # a smoke run

Every method is fitted on the same random pixels of each image (RGB in [0, 1]) and maps every
pixel of china.jpg (of every ``--stride``-th row and column). Scores: the transport cost
E‖x − T(x)‖² over those pixels, the debiased Sinkhorn divergence
(:func:`otflows.metrics.sinkhorn_divergence`) between ``--score-pixels`` mapped fitting
pixels and as many target pixels, the round-trip error of the inverse where a method has one,
and the time.
Prints a markdown table, writes JSON and the before/after figure.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import ot
from sklearn.datasets import load_sample_image

from otflows import BrenierMap
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
from otflows.maps.color import color_transfer, sample_pixels
from otflows.metrics import sinkhorn_divergence
from otflows.plotting import plot_color_transfer
from otflows.validation import as_device

COLUMNS = [
    ("method", "method"),
    ("cost", "cost E‖x − T(x)‖²"),
    ("sinkhorn", "Sinkhorn div. to target"),
    ("inverse", "max |T⁻¹(T(x)) − x|"),
    ("seconds", "fit + map time (s)"),
    ("inverse_seconds", "inverse time (s)"),
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otflows bench color-transfer", description=description(__doc__)
    )
    parser.add_argument("--pixels", type=int, default=10_000)
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--sinkhorn-pixels", type=int, default=2000, help="POT's Sinkhorn fit")
    parser.add_argument(
        "--stride", type=int, default=1, help="map every STRIDE-th pixel of each row and column"
    )
    parser.add_argument(
        "--score-pixels", type=int, default=1000, help="pixels the Sinkhorn divergence compares"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run (stride 8)")
    add_threads_option(parser)
    add_device_option(parser, " (the BrenierMap fit)")
    add_out_option(parser, "color_transfer.json", figure=True)
    return parser


def _pot_maps(
    Xs: np.ndarray, Xt: np.ndarray, pixels: np.ndarray, args: argparse.Namespace
) -> list[tuple[dict, str, np.ndarray]]:
    """POT's linear and Sinkhorn maps fitted to the sampled pixels and applied to every
    pixel ``[P, 3]``: each one's row of scores, name and mapped pixels."""
    k, maps = args.score_pixels, []
    for name, da, n in (
        ("ot.da.LinearTransport", ot.da.LinearTransport(), args.pixels),
        ("ot.da.SinkhornTransport (reg 1e-2)", ot.da.SinkhornTransport(reg_e=1e-2), None),
    ):
        n = n or args.sinkhorn_pixels
        start = time.perf_counter()
        da.fit(Xs=Xs[:n], Xt=Xt[:n])
        out = da.transform(Xs=pixels)
        row = {
            "method": name,
            "cost": float(np.square(out - pixels).sum(-1).mean()),
            "sinkhorn": sinkhorn_divergence(da.transform(Xs=Xs[:k]), Xt[:k]),
            "seconds": time.perf_counter() - start,
        }
        if "Linear" in name:
            row["inverse"] = float(np.abs(da.inverse_transform(Xt=out) - pixels).max())
        maps.append((row, name, out))
    return maps


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the benchmark from command-line arguments; returns what it writes as JSON."""
    args = _parser().parse_args(argv)
    as_device(args.device, "--device")
    if args.quick:
        args.pixels, args.max_iter, args.sinkhorn_pixels, args.stride = 1000, 30, 300, 8
        args.score_pixels = 200
    set_threads(args.threads)
    source = load_sample_image("china.jpg")[:: args.stride, :: args.stride] / 255.0
    target = load_sample_image("flower.jpg")[:: args.stride, :: args.stride] / 255.0
    pixels = source.reshape(-1, 3)
    Xs, Xt = sample_pixels(source, args.pixels, 0), sample_pixels(target, args.pixels, 1)

    rows, images, k = [], {}, args.score_pixels
    estimator = BrenierMap(
        net="mmgn",
        max_iter=args.max_iter,
        batch_size=512,
        lr=1e-2,
        random_state=0,
        validation_fraction=0,
        device=args.device,
    )
    mapped, fitted, scores = color_transfer(
        source, target, estimator, args.pixels, seed=0, score_pixels=args.score_pixels
    )
    flat = mapped.reshape(-1, 3)
    start = time.perf_counter()
    back = fitted.inverse_transform(Xt=flat)
    rows.append(
        {
            "method": "BrenierMap (M-MGN, semi-dual)",
            "cost": scores["cost"],
            "sinkhorn": scores["sinkhorn"],
            "inverse": float(np.abs(back - pixels).max()),
            "seconds": scores["seconds"],
            "inverse_seconds": time.perf_counter() - start,
        }
    )
    images["BrenierMap"] = mapped
    for row, name, out in _pot_maps(Xs, Xt, pixels, args):
        rows.append(row)
        images[name] = out.reshape(source.shape)
    rows.append({"method": "no map (source colours)", "cost": 0.0})
    rows[-1]["sinkhorn"] = sinkhorn_divergence(Xs[:k], Xt[:k])
    print(markdown_table(rows, COLUMNS))
    figure = save_figure(plot_color_transfer(source, target, images["BrenierMap"]), args.out, 80)
    payload = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
    write_json(args.out, payload, smoke=args.quick, figure=figure)
    return payload


if __name__ == "__main__":
    main()
