r"""The ``otflows`` command line: ``demo``, ``fit``, ``map``, ``color-transfer`` and ``bench``."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from otflows.cli.arguments import STARTS, build_parser
from otflows.cli.demo import rendered as demo_rendered
from otflows.cli.demo import run as demo_run
from otflows.datasets import check_array_path, csv_columns, load_array, save_array
from otflows.flows import BrenierFlow, save_flow
from otflows.linalg import InverseError
from otflows.maps import BrenierMap
from otflows.maps.color import color_transfer, read_image, write_image
from otflows.maps.settings import dtype_of
from otflows.plotting import plot_color_transfer, plot_coupling
from otflows.training.distributed import init_from_environment, is_main
from otflows.training.fit import fit_flow
from otflows.training.gaussian import FlowHistory
from otflows.training.parts import SELECTION_SIGNIFICANCE
from otflows.training.threads import set_fit_threads
from otflows.transforms.logit import check_bounds
from otflows.validation import MappedSamples, as_samples, with_context

__all__ = ["main"]


def demo(args: argparse.Namespace) -> None:
    r"""Fits an M-MGN flow to the MGN paper's d = 2 Gaussian and scores it against closed forms
    (:mod:`otflows.cli.demo`)."""
    print(
        f"M-MGN flow, N(m, C) -> N(0, I) in d = 2 (MGN paper): {args.samples} training samples, "
        f"{args.steps} steps of batch 128, {args.dtype}"
    )
    payload, X_test, TX = demo_run(
        args.samples,
        args.steps,
        dtype_of(args.dtype),
        args.seed,
        not args.no_progress,
    )
    print("\n" + demo_rendered(payload))
    fig = plot_coupling(X_test[:3000], TX[:3000], ("data x ~ N(m, C)", "T(x) (M-MGN)"))
    fig.savefig(args.out, dpi=120)
    print(f"coupling figure: {args.out}")
    if args.json:
        from otflows.bench.common import write_json

        write_json(args.json, payload)


def fit(args: argparse.Namespace) -> None:
    r"""Fits a Brenier flow to a user's samples and saves a checkpoint (under ``torchrun``:
    data-parallel, rank 0 saves)."""
    device = init_from_environment(args.device)
    dtype = dtype_of(args.dtype)
    array = load_array(args.data, mmap=args.mmap)
    name = f"--data {args.data}"
    # errors name the flag and the file; a memmap's rows are checked as they are read
    X = (
        MappedSamples(array, name)
        if args.mmap
        else as_samples(array, name, dtype=dtype, device=device)
    )
    torch.manual_seed(args.seed)
    flow = BrenierFlow(
        X.shape[1],
        args.net,
        num_blocks=args.num_blocks,
        hidden_features=args.hidden_features,
        marginals=args.marginals,
        bounds=None if args.bounds is None else tuple(args.bounds),
    ).to(dtype=dtype, device=device)
    check_bounds(flow, **{name: X})
    history = fit_flow(
        flow,
        X,
        epochs=args.epochs,
        max_iter=args.max_iter,
        batch_size=args.batch_size,
        lr=args.lr,
        validation_fraction=args.validation_fraction,
        patience=args.patience,
        max_time=args.max_time,
        gaussian_start=STARTS[args.start],
        random_state=args.seed,
        progress=not args.no_progress,
    )
    if not is_main():
        return
    save_flow(flow, args.out)
    print(f"trained {len(history.loss)} steps in {history.seconds:.1f} s; saved {args.out}")
    print(_kept_flow(history, bounded=args.bounds is not None))


def _kept_flow(history: FlowHistory, bounded: bool = False) -> str:
    r"""Which weights ``fit_flow`` ended at, and why, in words: the Gaussian of the data (or its
    Gaussian copula), or a step's weights, with the held-out NLL of each (a ``bounded`` flow's
    Gaussian is that of the data's logits in their box).

    Example:
        >>> history = FlowHistory(best_step=900, val_step=[0, 900], val_metrics={"nll": [2, 1]})
        >>> history.gaussian_nll, history.gaussian_difference = 1.5, (-0.5, 0.1)
        >>> _kept_flow(history)
        'kept the weights of step 900: held-out NLL 1 nats, the Gaussian of the data 1.5'
        >>> history.kept_gaussian, history.gaussian_difference = True, (-0.05, 0.1)
        >>> _kept_flow(history)  # doctest: +NORMALIZE_WHITESPACE
        'kept the Gaussian of the data: held-out NLL 1.5 nats; the best trained weights (step
        900) are not significantly better (difference -0.05 ± 0.1 nats)'
    """
    nll = history.best_metrics.get("nll")
    of = history.gaussian + ("'s logits" if bounded else "")
    if nll is None:
        return "kept the last weights (no held-out rows to validate them)"
    gaussian = history.gaussian_nll
    if history.kept_gaussian:
        if history.best_step == 0 or history.gaussian_difference is None:
            return f"kept {of}: held-out NLL {gaussian:.5g} nats; no trained weights scored lower"
        mean, error = history.gaussian_difference
        return (
            f"kept {of}: held-out NLL {gaussian:.5g} nats; the best trained "
            f"weights (step {history.best_step}) are not significantly better (difference "
            f"{mean:+.2g} ± {error:.2g} nats)"
        )
    against = "" if gaussian is None else f", {of} {gaussian:.5g}"
    return f"kept the weights of step {history.best_step}: held-out NLL {nll:.5g} nats{against}"


def _estimator(args: argparse.Namespace) -> BrenierMap:
    return BrenierMap(
        device=init_from_environment(args.device),
        net=args.net,
        objective=args.objective,
        hidden_features=args.hidden_features,
        max_iter=args.max_iter,
        batch_size=args.batch_size,
        target_batch_size=args.target_batch_size,
        lr=args.lr,
        dtype=args.dtype,
        random_state=args.seed,
        refine_rounds=args.refine_rounds,
        refine_iter=args.refine_iter,
        validation_fraction=args.validation_fraction,
        patience=args.patience,
        max_time=args.max_time,
        progress=not args.no_progress,
    )


def map_command(args: argparse.Namespace) -> None:
    r"""Fits the OT map from one sample file to another (given conditions, the conditional
    map T(x; c)) and writes the mapped source."""
    Xs = load_array(args.source)
    Xt = load_array(args.target)
    cs, ct = _conditions(args, Xs, Xt)
    shared = ct is not None and cs is None  # written [G, N, D]
    check_array_path(args.out, "--out", 3 if shared else 2)
    otmap = _estimator(args).fit(Xs=Xs, Xt=Xt, cs=cs, ct=ct)
    if not shared:
        mapped = otmap.transform(Xs, cs=cs)
        written = str(args.out)
    else:  # shared sources: mapped at every training condition, [G, N, D]
        assert otmap.conditions_ is not None
        conditions = otmap.conditions_.cpu().numpy()
        mapped = np.stack([otmap.transform(Xs, cs=np.tile(c, (len(Xs), 1))) for c in conditions])
        written = (
            f"{args.out}: the source mapped at each of the {len(conditions)} conditions of "
            "--target-conditions, in the order of its distinct rows sorted"
        )
    if not is_main():
        return
    save_array(args.out, mapped, "--out", columns=None if shared else csv_columns(args.source))
    print(
        f"fitted {args.net} + {otmap.log_['objective']['name']} in "
        f"{otmap.log_['seconds']:.1f} s ({_settings(otmap.settings_)}); cost E|x - T(x)|^2 = "
        f"{np.square(mapped - Xs).sum(-1).mean():.6g}; wrote {written}"
    )
    print(_kept(otmap.log_))
    if args.save:
        otmap.save(args.save)
        print(f"saved the map: {args.save}")


def _settings(settings: dict) -> str:
    r"""The fit's width, learning rate, validation score and γ, and the sizes that chose them."""
    return (
        f"width {settings['hidden_features']}, lr {settings['lr']:g}, validated by "
        f"{settings['validation_score']} on {settings['held_out_rows']} held-out rows, gamma "
        f"{settings['gamma']:.3g}; {settings['rows_per_dimension']:.4g} training rows per "
        f"dimension: {settings['size']}"
    )


MAP_NAMES = {"network": "network", "bures": "Bures (linear) map", "entropic": "entropic map"}


def _kept(log: dict) -> str:
    r"""Which map the fit ended at, and why, in words: the fallback's tests
    (:func:`otflows.maps.fallback.fall_back`) and the choice of the simple map, one sentence
    each.

    Example:
        >>> record = {"kept": "bures", "verdict": "bures", "baseline": "bures", "w2_network": 6.37,
        ...          "w2_baseline": 6.6, "difference_se": 0.1, "semidual_difference": -0.03,
        ...          "semidual_se": 0.04, "better": False, "extrapolation": 1.2,
        ...          "extrapolation_limit": 2.0,
        ...          "cv_difference": None}
        >>> import textwrap
        >>> print(textwrap.fill(_kept({"fallback": record, "kept": "bures"}), 88))
        kept the Bures (linear) map: the network's held-out W2^2 6.37 is not significantly below
        the Bures (linear) map's 6.6 (difference -0.23 ± 0.1), nor its held-out semi-dual
        objective (difference -0.03 ± 0.04); 3 standard errors needed
    """
    if "fallback" not in log:
        return "kept the network (no held-out rows to compare it with the Bures map)"
    record = log["fallback"]
    baseline = MAP_NAMES[record["baseline"]]
    w2 = (
        f"held-out W2^2 {record['w2_network']:.4g} against the {baseline}'s "
        f"{record['w2_baseline']:.4g} (difference "
        f"{record['w2_network'] - record['w2_baseline']:.3g} ± {record['difference_se']:.2g})"
    )
    semidual = ""
    if record["semidual_difference"] is not None:
        semidual = (
            f"held-out semi-dual objective (difference {record['semidual_difference']:.3g} ± "
            f"{record['semidual_se']:.2g})"
        )
    if record["verdict"] == "network":
        tests = w2 if not semidual else f"{w2}; {semidual}"
        why = f"it maps the held-out rows significantly better than the {baseline}: {tests}"
    elif record["better"]:  # better on the held-out rows, refused off them
        why = (
            f"the network maps rows a little outside the training rows "
            f"{record['extrapolation']:.3g} times as far from the Bures map as their nearest "
            f"training rows (at most {record['extrapolation_limit']:g} allowed)"
        )
    else:
        why = (
            f"the network's held-out W2^2 {record['w2_network']:.4g} is not significantly "
            f"below the {baseline}'s {record['w2_baseline']:.4g} (difference "
            f"{record['w2_network'] - record['w2_baseline']:.3g} ± {record['difference_se']:.2g})"
            + (f", nor its {semidual}" if semidual else "")
            + f"; {SELECTION_SIGNIFICANCE:g} standard errors needed"
        )
    sentence = f"kept the {MAP_NAMES[log['kept']]}: {why}"
    if log["kept"] != record["verdict"]:
        sentence = (
            f"kept the network (fallback=False; the fallback would have kept the {baseline}: "
            f"{why})"
        )
    if record["cv_difference"] is not None:
        choice = "better" if record["baseline"] == "entropic" else "no better"
        sentence += (
            f"\nthe simple map was the {baseline}: the entropic map cross-validated {choice} "
            f"than the Bures map (discrepancy difference {record['cv_difference']:.3g} ± "
            f"{record['cv_se']:.2g})"
        )
    return sentence


def _conditions(
    args: argparse.Namespace, Xs: np.ndarray, Xt: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None]:
    r"""The conditions files' arrays (``None`` where not given), checked against the samples
    with one-line errors naming the flag and the file."""
    features = as_samples(Xs, f"--source {args.source}").shape[1]
    as_samples(Xt, f"--target {args.target}", features=features)
    if args.target_conditions is None:
        if args.source_conditions is not None:
            raise ValueError("--source-conditions needs --target-conditions")
        return None, None
    ct = load_array(args.target_conditions)
    target = (f"--target {args.target}", f"--target-conditions {args.target_conditions}")
    C = with_context(Xt, ct, *target)[1].shape[1]
    if args.source_conditions is None:
        return None, ct
    cs = load_array(args.source_conditions)
    source = (f"--source {args.source}", f"--source-conditions {args.source_conditions}")
    with_context(Xs, cs, *source, context_features=C)
    return cs, ct


def color_transfer_command(args: argparse.Namespace) -> None:
    r"""Recolours an image with another's colours by their OT map and saves it."""
    source, target = read_image(args.source), read_image(args.target)
    mapped, _, scores = color_transfer(
        source, target, _estimator(args), pixels=args.pixels, seed=args.seed
    )
    if not is_main():
        return
    write_image(args.out, mapped)
    print(
        f"fitted in {scores['seconds']:.1f} s; cost E|x - T(x)|^2 = {scores['cost']:.4f}; "
        f"Sinkhorn divergence to the target colours {scores['sinkhorn']:.4g}; wrote {args.out}"
    )
    if args.figure:
        plot_color_transfer(source, target, mapped).savefig(args.figure, dpi=100)
        print(f"before/after figure: {args.figure}")


# the commands' functions, by name (``bench`` runs the benchmark it names)
COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "demo": demo,
    "fit": fit,
    "map": map_command,
    "color-transfer": color_transfer_command,
}


def _check_outputs(args: argparse.Namespace) -> None:
    r"""A one-line error naming the flag, before any work, when an output's folder is
    missing."""
    for flag in ("out", "save", "figure", "json"):
        path = getattr(args, flag, None)
        if path is not None and not Path(path).resolve().parent.is_dir():
            name = "out" if flag == "out" and args.command == "color-transfer" else f"--{flag}"
            raise FileNotFoundError(
                f"{name} {path}: the folder {Path(path).resolve().parent} does not exist"
            )


def main(argv: Sequence[str] | None = None) -> int:
    r"""Runs the command line; returns the exit status (errors print one line, status 2).

    Example:
        >>> main(["fit", "--data", "missing.npy", "--out", "m.pt"])
        2
    """
    args = build_parser(COMMANDS).parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line(args.command)
            _check_outputs(args)
            if getattr(args, "threads", None) is not None:
                if args.threads < 1:
                    raise ValueError(f"--threads must be >= 1; got {args.threads}")
                set_fit_threads(args.threads)
            args.run(args)
    except (ValueError, TypeError, FileNotFoundError, InverseError) as error:
        print(f"otflows {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


def _warning_line(command: str) -> Callable[..., None]:
    r"""Shows a warning as one line naming the command, as errors are, without the source
    line Python's default shows."""

    def show(message: Warning | str, *_: Any, **__: Any) -> None:
        print(f"otflows {command}: warning: {message}", file=sys.stderr)

    return show
