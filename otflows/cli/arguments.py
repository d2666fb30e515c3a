r"""What each ``otflows`` command takes: one argument parser per command, its defaults read
from the functions it calls (one definition of each)."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from typing import Any

from otflows import __version__
from otflows.bench import BENCHMARKS, summary
from otflows.bench import run as run_benchmark
from otflows.flows import DENSITY_FLOW
from otflows.maps import OBJECTIVES, BrenierMap
from otflows.maps.settings import DTYPES
from otflows.nets import UNCONDITIONAL_NETS
from otflows.sizes import ROWS_PER_DIMENSION
from otflows.training.fit import HELD_OUT_ROWS, LR, MIN_STEPS, fit_flow

__all__ = ["BUILDERS", "STARTS", "build_parser"]

STARTS: dict[str, bool | str] = {"auto": "auto", "gaussian": True, "random": False}  # --start


def _default(name: str, of: Callable = BrenierMap) -> Any:
    r"""The default of the argument ``name`` of ``of`` (one definition of each default)."""
    return inspect.signature(of).parameters[name].default


def _map_options(p: argparse.ArgumentParser) -> None:
    r"""``otflows map``'s network, objective and optimiser options (``BrenierMap``'s)."""
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
        "--hidden-features",
        type=int,
        default=_default("hidden_features"),
        help="network width (default: by the training rows per dimension, as BrenierMap's)",
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
    p.add_argument(
        "--lr",
        type=float,
        default=_default("lr"),
        help="Adam's peak learning rate (default: by the training rows per dimension)",
    )
    _map_validation_options(p)


def _map_validation_options(p: argparse.ArgumentParser) -> None:
    r"""``otflows map``'s refinement, validation and time options (``BrenierMap``'s)."""
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
        help="share of each side held out (at most 1024 rows) to validate the map and to "
        "decide between it and the Bures map; 0: none",
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


def build_parser(runs: dict[str, Callable[[argparse.Namespace], None]]) -> argparse.ArgumentParser:
    r"""The ``otflows`` parser: a subcommand per command of :data:`BUILDERS`, which runs
    ``runs[name]`` (``args.run``), and ``bench``, which runs the benchmark it names.

    Example:
        >>> build_parser({name: print for name in BUILDERS}).parse_args(["demo"]).steps
        1500
    """
    parser = argparse.ArgumentParser(
        prog="otflows",
        description="otflows: optimal-transport maps as normalizing flows. Commands: demo, fit, "
        "map, color-transfer, bench; 'otflows COMMAND --help' describes each.",
    )
    parser.add_argument("--version", action="version", version=f"otflows {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, add in BUILDERS.items():
        add(commands).set_defaults(run=runs[name])
    _bench_parser(commands)
    return parser


def _command(commands: Any, name: str, help: str) -> argparse.ArgumentParser:
    r"""The subcommand ``name``, its help the first line of its description."""
    return commands.add_parser(name, help=help, description=help, formatter_class=_HelpFormatter)


def _demo_parser(commands: Any) -> argparse.ArgumentParser:
    r"""``otflows demo``."""
    p = _command(commands, "demo", "fit an M-MGN flow to the d = 2 Gaussian coupling and score it")
    p.add_argument("--steps", type=int, default=1500, help="training steps")
    p.add_argument("--samples", type=int, default=50_000, help="training samples")
    p.add_argument("--json", help="also write the scores as JSON, with the machine and command")
    _common_options(p, out="otflows_demo.png", out_help="the coupling figure (.png)")
    return p


def _fit_parser(commands: Any) -> argparse.ArgumentParser:
    r"""``otflows fit``."""
    p = _command(commands, "fit", "fit a Brenier flow to samples in a .npy or .csv file")
    p.add_argument(
        "--data", required=True, help="samples [N, D] (.npy, or .csv with one row each)"
    )
    p.add_argument(
        "--net",
        choices=sorted(UNCONDITIONAL_NETS),
        default=DENSITY_FLOW["net"],
        help="the network of a block",
    )
    p.add_argument(
        "--num-blocks",
        type=int,
        default=DENSITY_FLOW["num_blocks"],
        help="Brenier blocks, each after an ActNorm; more blocks (and --max-iter) trade time "
        "for quality",
    )
    p.add_argument(
        "--hidden-features",
        type=int,
        default=DENSITY_FLOW["hidden_features"],
        help="the networks' width",
    )
    p.add_argument(
        "--marginals",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a spline on each feature before the blocks, started at the data's marginals "
        "(default: with more than one block)",
    )
    _fit_training_options(p)
    p.add_argument(
        "--bounds",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="the box the data lie in (e.g. 0 256 for dequantised 8-bit pixels): the flow's "
        "first step is then its logit, and the density lives in the box",
    )
    p.add_argument(
        "--mmap",
        action="store_true",
        help="memory-map the .npy file and read a minibatch at a time (data larger than "
        "memory); the file's last --validation-fraction rows validate",
    )
    _common_options(p, out=None, out_help="checkpoint path (.pt)", device=True)
    return p


def _fit_training_options(p: argparse.ArgumentParser) -> None:
    r"""``otflows fit``'s training options: ``fit_flow``'s steps, batch, learning rate,
    validation, time and start."""
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
        help=f"Adam's peak learning rate (default: {LR['gaussian']:g} from the Gaussian of "
        f"the data, {LR['random']:g} from random weights)",
    )
    p.add_argument(
        "--validation-fraction",
        type=float,
        default=_default("validation_fraction", fit_flow),
        help=f"share of the rows held out (at most {HELD_OUT_ROWS}); the best validated "
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


def _map_parser(commands: Any) -> argparse.ArgumentParser:
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
    return p


def _color_transfer_parser(commands: Any) -> argparse.ArgumentParser:
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
    return p


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
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="precision")
    p.add_argument("--seed", type=int, default=0, help="seeds initialisation and minibatches")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (default: the fit's on one where its steps are small, else on "
        "torch's, which OMP_NUM_THREADS sets: otflows.training.threads)",
    )
    if device:
        p.add_argument(
            "--device", default="cpu", help="cpu or cuda (one GPU per torchrun process)"
        )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


# the commands other than ``bench``, each run by the function ``build_parser`` is given
BUILDERS: dict[str, Callable[[Any], argparse.ArgumentParser]] = {
    "demo": _demo_parser,
    "fit": _fit_parser,
    "map": _map_parser,
    "color-transfer": _color_transfer_parser,
}
