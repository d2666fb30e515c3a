r"""The ``otflows`` command line: ``demo``, ``fit``, ``map``, ``color-transfer`` and ``bench``."""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from otflows.bench import BENCHMARKS, summary
from otflows.bench import run as run_benchmark
from otflows.color import color_transfer, read_image, write_image
from otflows.datasets import check_array_path, load_array, save_array
from otflows.demo import rendered as demo_rendered
from otflows.demo import run as demo_run
from otflows.distributed import init_from_environment, is_main
from otflows.flows import BrenierFlow, save_flow
from otflows.linalg import InverseError
from otflows.maps import OBJECTIVES, BrenierMap
from otflows.nets import UNCONDITIONAL_NETS
from otflows.plotting import plot_color_transfer, plot_coupling
from otflows.training import FIT_FLOW, LR, MIN_STEPS, ROWS_PER_DIMENSION, VALIDATION_ROWS, fit_flow
from otflows.validation import MappedSamples, as_samples, with_context

__all__ = ["main"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
STARTS: dict[str, bool | str] = {"auto": "auto", "gaussian": True, "random": False}  # --start


def demo(args: argparse.Namespace) -> None:
    r"""Fits an M-MGN flow to the MGN paper's d = 2 Gaussian and scores it against closed forms
    (:mod:`otflows.demo`)."""
    print(
        f"M-MGN flow, N(m, C) -> N(0, I) in d = 2 (MGN paper): {args.samples} training samples, "
        f"{args.steps} steps of batch 128, {args.dtype}"
    )
    payload, X_test, TX = demo_run(
        args.samples, args.steps, _DTYPES[args.dtype], args.seed, not args.no_progress
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
    dtype = _DTYPES[args.dtype]
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
        X.shape[1], args.net, num_blocks=args.num_blocks, hidden_features=args.hidden_features
    ).to(dtype=dtype, device=device)
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
        seed=args.seed,
        progress=not args.no_progress,
    )
    if not is_main():
        return
    save_flow(flow, args.out)
    summary = f"trained {len(history.loss)} steps in {history.seconds:.1f} s"
    if history.kept_gaussian:
        summary += (
            f"; kept the Gaussian of the data (validation NLL {history.gaussian_nll:.4f} nats; "
            f"the best trained weights scored {history.best_metrics['nll']:.4f})"
        )
    elif history.best_step is not None:
        summary += (
            f"; kept the weights of step {history.best_step}, validation NLL "
            f"{history.best_metrics['nll']:.4f} nats"
        )
    print(f"{summary}; saved {args.out}")


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
    save_array(args.out, mapped, "--out")
    print(
        f"fitted {args.net} + {otmap.log_['objective']['name']} in "
        f"{otmap.log_['seconds']:.1f} s; {_kept(otmap.log_)}; cost E|x - T(x)|^2 = "
        f"{np.square(mapped - Xs).sum(-1).mean():.6g}; wrote {written}"
    )
    if args.save:
        otmap.save(args.save)
        print(f"saved the map: {args.save}")


def _kept(log: dict) -> str:
    r"""Which map the fit ended at, and why, for the summary line."""
    if "floor" not in log:
        return "kept the network (no held-out rows to compare it with the Bures map)"
    floor = log["floor"]
    scores = (
        f"held-out W2^2 {floor['w2_network']:.4g} network, {floor['w2_bures']:.4g} Bures; "
        f"growth off the rows {floor['extrapolation']:.3g}"
    )
    return f"kept the {'network' if log['kept'] == 'network' else 'Bures (linear) map'} ({scores})"


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


def _default(name: str, of: Callable = BrenierMap) -> Any:
    r"""The default of the argument ``name`` of ``of`` (one definition of each default)."""
    return inspect.signature(of).parameters[name].default


def _map_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--net",
        choices=sorted(UNCONDITIONAL_NETS),
        default=_default("net"),
        help="the monotone gradient network",
    )
    p.add_argument(
        "--objective",
        choices=sorted(OBJECTIVES),
        default=_default("objective"),
        help="what the map is fitted to (BrenierMap's objective)",
    )
    p.add_argument(
        "--hidden-features", type=int, default=_default("hidden_features"), help="network width"
    )
    p.add_argument("--max-iter", type=int, default=_default("max_iter"), help="optimisation steps")
    p.add_argument(
        "--batch-size", type=int, default=_default("batch_size"), help="source samples per step"
    )
    p.add_argument(
        "--target-batch-size",
        type=int,
        default=None,
        help="target samples per step (default --batch-size): the semi-dual's cost, one "
        "Newton solve each",
    )
    p.add_argument("--lr", type=float, default=_default("lr"), help="Adam's peak learning rate")
    p.add_argument(
        "--refine-rounds",
        type=int,
        default=_default("refine_rounds"),
        help="rounds of residual refinement after the fit (BrenierMap's refine_rounds)",
    )
    p.add_argument(
        "--refine-iter", type=int, default=_default("refine_iter"), help="steps of each round"
    )
    p.add_argument(
        "--validation-fraction",
        type=float,
        default=_default("validation_fraction"),
        help="share of each side held out (at most 1024 rows) to keep the best map by the "
        "held-out W2 between mapped source and target; 0: none",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=_default("patience"),
        help="stop after this many validations without a better map (default: never stop)",
    )
    p.add_argument(
        "--max-time",
        type=float,
        default=None,
        help="wall-clock seconds for the fit: it stops when they are spent (or after "
        "--max-iter steps), with the learning rate annealed over whichever is further along",
    )


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    r"""Shows each option's default, except where there is none to show (``None``, a flag's
    ``False``) or its help already names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        hidden = action.default is None or action.default is False
        if hidden or action.default == argparse.SUPPRESS or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action) or ""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otflows",
        description="otflows: optimal-transport maps as normalizing flows. Commands: demo, fit, "
        "map, color-transfer, bench; 'otflows COMMAND --help' describes each.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_demo_parser, _fit_parser, _map_parser, _color_transfer_parser, _bench_parser):
        add(commands)
    return parser


def _command(commands: Any, name: str, help: str) -> argparse.ArgumentParser:
    r"""The subcommand ``name``, its help the first line of its description."""
    return commands.add_parser(name, help=help, description=help, formatter_class=_HelpFormatter)


def _demo_parser(commands: Any) -> None:
    r"""``otflows demo``."""
    p = _command(commands, "demo", "fit an M-MGN flow to the d = 2 Gaussian coupling and score it")
    p.add_argument("--steps", type=int, default=1500, help="training steps")
    p.add_argument("--samples", type=int, default=50_000, help="training samples")
    p.add_argument("--json", help="also write the scores as JSON, with the machine and command")
    _common_options(p, out="otflows_demo.png", out_help="the coupling figure (.png)")
    p.set_defaults(run=demo)


def _fit_parser(commands: Any) -> None:
    r"""``otflows fit``."""
    p = _command(commands, "fit", "fit a Brenier flow to samples in a .npy or .csv file")
    p.add_argument(
        "--data", required=True, help="samples [N, D] (.npy, or .csv with one row each)"
    )
    p.add_argument(
        "--net",
        choices=sorted(UNCONDITIONAL_NETS),
        default=FIT_FLOW["net"],
        help="the network of a block",
    )
    p.add_argument(
        "--num-blocks",
        type=int,
        default=FIT_FLOW["num_blocks"],
        help="Brenier blocks, each after an ActNorm; more blocks (and --max-iter) trade time "
        "for quality",
    )
    p.add_argument(
        "--hidden-features",
        type=int,
        default=FIT_FLOW["hidden_features"],
        help="the networks' width",
    )
    p.add_argument(
        "--max-iter",
        type=int,
        default=None,
        help=f"training steps (default: 10 epochs, at least {MIN_STEPS}); early stopping "
        "(--patience) usually ends small data sets sooner",
    )
    p.add_argument("--epochs", type=int, default=None, help="passes over the rows, instead")
    p.add_argument(
        "--batch-size", type=int, default=_default("batch_size", fit_flow), help="rows per step"
    )
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"Adam's peak learning rate (default: {LR['gaussian start']:g} from the Gaussian "
        f"start, {LR['random start']:g} from random weights)",
    )
    p.add_argument(
        "--validation-fraction",
        type=float,
        default=_default("validation_fraction", fit_flow),
        help=f"share of the rows held out (at most {VALIDATION_ROWS}); the best validated "
        "weights, or the Gaussian of the data if it scores better, are kept; 0: none",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=_default("patience", fit_flow),
        help="stop after this many validations without a better NLL",
    )
    p.add_argument(
        "--max-time",
        type=float,
        default=None,
        help="wall-clock seconds for training: it stops when they are spent, with the learning "
        "rate annealed over whichever is further along, steps or time",
    )
    p.add_argument(
        "--start",
        choices=list(STARTS),
        default="auto",
        help=f"train from the Gaussian fitted to the rows (BrenierFlow.start_from_gaussian) or "
        f"from random weights; auto: the Gaussian with fewer than {ROWS_PER_DIMENSION} "
        "training rows per dimension. Either "
        "way the flow ends at that Gaussian when it scores better on the held-out rows",
    )
    p.add_argument(
        "--mmap",
        action="store_true",
        help="memory-map the .npy file and read a minibatch at a time (data larger than "
        "memory); the file's last --validation-fraction rows validate",
    )
    _common_options(p, out=None, out_help="checkpoint path (.pt)", device=True)
    p.set_defaults(run=fit)


def _map_parser(commands: Any) -> None:
    r"""``otflows map``."""
    p = _command(
        commands, "map", "fit the OT map between two sample files and write the mapped source"
    )
    p.add_argument("--source", required=True, help="source samples [N, D] (.npy or .csv)")
    p.add_argument("--target", required=True, help="target samples [M, D] (.npy or .csv)")
    p.add_argument(
        "--target-conditions",
        help="the target rows' conditions [M, C] (.npy or .csv): fit the conditional map "
        "T(x; c), a Brenier map for each condition c",
    )
    p.add_argument(
        "--source-conditions",
        help="the source rows' conditions [N, C], each source row mapped at its own; without "
        "it every source row is shared by all conditions and written mapped at each, [G, N, D]",
    )
    p.add_argument("--save", help="also save the fitted map (.pt)")
    _map_options(p)
    _common_options(
        p,
        out=None,
        out_help="where the mapped source goes (.npy, or .csv for [N, D])",
        device=True,
    )
    p.set_defaults(run=map_command)


def _color_transfer_parser(commands: Any) -> None:
    r"""``otflows color-transfer``."""
    p = _command(
        commands, "color-transfer", "recolour an image with another's colours by their OT map"
    )
    p.add_argument("source", help="the image to recolour (PNG or JPEG)")
    p.add_argument("target", help="the image whose colours are wanted")
    p.add_argument("out", help="the recoloured image (PNG)")
    p.add_argument("--pixels", type=int, default=10_000, help="pixels per image for fitting")
    p.add_argument("--figure", help="also save a before/after figure (.png)")
    _map_options(p)
    _common_options(p, out=False, out_help="", device=True)
    p.set_defaults(run=color_transfer_command)


def _bench_parser(commands: Any) -> None:
    r"""``otflows bench``, listing every benchmark."""
    listing = "\n".join(f"  {name:<15} {summary(name)}" for name in sorted(BENCHMARKS))
    p = commands.add_parser(
        "bench",
        help="run a benchmark (options after the name go to it; NAME --help lists them)",
        description="Runs a benchmark: options after NAME go to it ('otflows bench NAME --help'\n"
        "lists them); it prints its table and writes JSON where --out says.",
        epilog=f"benchmarks:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", choices=sorted(BENCHMARKS), metavar="NAME", help="one of those below")
    p.add_argument("options", nargs=argparse.REMAINDER, help="e.g. --quick")
    p.set_defaults(run=lambda args: run_benchmark(args.name, args.options))


def _common_options(
    p: argparse.ArgumentParser, out: str | bool | None, out_help: str, device: bool = False
) -> None:
    r"""``--out`` (required when ``out`` is ``None``; none when ``False``), ``--dtype``,
    ``--seed``, ``--threads``, ``--no-progress`` and, if asked, ``--device``."""
    if out is not False:
        p.add_argument("--out", required=out is None, default=out, help=out_help)
    p.add_argument("--dtype", choices=sorted(_DTYPES), default="float32", help="precision")
    p.add_argument("--seed", type=int, default=0, help="seeds initialisation and minibatches")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch's CPU threads (default: torch's own, which OMP_NUM_THREADS sets); on a "
        "machine shared with other jobs, fewer threads than cores avoids oversubscription",
    )
    if device:
        p.add_argument(
            "--device", default="cpu", help="cpu or cuda (one GPU per torchrun process)"
        )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


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
    args = _parser().parse_args(argv)
    try:
        _check_outputs(args)
        if getattr(args, "threads", None) is not None:
            if args.threads < 1:
                raise ValueError(f"--threads must be >= 1; got {args.threads}")
            torch.set_num_threads(args.threads)
        args.run(args)
    except (ValueError, TypeError, FileNotFoundError, InverseError) as error:
        print(f"otflows {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
