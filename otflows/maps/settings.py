r"""``BrenierMap``'s settings, checked before a fit, and what a fit makes of them: the settings
that follow the data's size, its seed and its dtype."""

from __future__ import annotations

import inspect
import math
import warnings
from types import SimpleNamespace
from typing import Any

import torch

from otflows.nets import CONDITIONAL_NETS, UNCONDITIONAL_NETS
from otflows.sizes import few_rows
from otflows.training import distributed

__all__ = [
    "BY_SIZE",
    "CHOSEN",
    "DTYPES",
    "GAMMA",
    "GAMMA_SHARE",
    "SCORES",
    "VALIDATION_W2_ROWS",
    "changed_params",
    "check_params",
    "dtype_of",
    "options_of",
    "settings_for",
]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
# BrenierMap's arguments that a fit chooses from its data where they are None
CHOSEN = ("hidden_features", "lr", "validation_score", "gamma")
SCORES = ("w2", "objective")
# The settings that follow the training rows per dimension (those of ``BrenierMap``'s
# arguments left ``None``), from benchmarks/small_data_study.md: with few rows a network of
# width 16 ends where one of width 64 does (at the Bures map, or at the same network) in less
# than half the time; with many rows, the defaults study's choice.
BY_SIZE: dict[str, dict[str, Any]] = {
    "few rows": {"hidden_features": 16, "lr": 1e-2},
    "many rows": {"hidden_features": 64, "lr": 3e-2},
}
# The validation score follows the held-out rows on the smaller side: below VALIDATION_W2_ROWS
# the exact W2² of the held-out rows (what users get; the best weights kept), from there on
# the objective, which follows the true map's error more closely over a fit's checkpoints
# (benchmarks/defaults_study.md) and needs no EMD of a thousand rows. The objective keeps the
# latest weights within two standard errors of the best, and on a few hundred held-out rows
# that is the last weights: it did so in every fit of POT's domain-adaptation sets at 300 and
# 1000 rows per side, where W2² kept steps 200-1600 and the maps ended alike
# (benchmarks/small_data_study.md).
VALIDATION_W2_ROWS = 500
# γ, the floor of the map's slopes (J_T ⪰ γI), follows the data's scales: GAMMA, or less where
# the Bures map of the data has slopes near it. At most GAMMA_SHARE of the Bures map's smallest
# slope, so that the Bures map is always within reach (every committed benchmark ran at
# γ/slope ≤ 0.12 and keeps its γ); a fixed 1e-2 could not map data onto data 100 times
# narrower, and ended far worse than the Bures map there.
GAMMA = 1e-2
GAMMA_SHARE = 1 / 8


def settings_for(
    params: dict[str, Any], rows: int, features: int, bures_slope: float, held_out: int
) -> dict[str, Any]:
    r"""The network width, learning rate, validation score and :math:`\gamma` of a fit with
    ``rows`` training rows and ``held_out`` held-out rows on its smaller side in ``features``
    dimensions, whose data's Bures map has ``bures_slope`` as its smallest eigenvalue: those of
    ``params`` (``BrenierMap``'s ``get_params()``) that are set, and for the others

    - width and learning rate: :data:`BY_SIZE`'s, with fewer than
      :data:`otflows.sizes.ROWS_PER_DIMENSION` rows per dimension
      (:func:`otflows.sizes.few_rows`) or not;
    - validation score: ``"w2"`` with fewer than :data:`VALIDATION_W2_ROWS` held-out rows,
      else ``"objective"``;
    - :math:`\gamma = \min(` :data:`GAMMA`, :data:`GAMMA_SHARE` × ``bures_slope`` :math:`)`;

    and ``"rows_per_dimension"``, ``"size"``, ``"held_out_rows"`` and ``"bures_slope"``, what
    chose them. A ``gamma`` given at or above ``bures_slope`` is kept, with a warning: the map
    cannot reach the Bures map of these data.

    Example:
        >>> from otflows import BrenierMap
        >>> params = BrenierMap(lr=0.1).get_params()
        >>> chosen = settings_for(params, rows=750, features=16, bures_slope=0.02, held_out=250)
        >>> chosen["size"], chosen["hidden_features"], chosen["lr"], chosen["validation_score"]
        ('few rows', 16, 0.1, 'w2')
        >>> chosen["gamma"]
        0.0025
    """
    size = "few rows" if few_rows(rows, features) else "many rows"
    chosen = {
        name: default if params[name] is None else params[name]
        for name, default in BY_SIZE[size].items()
    }
    score = params["validation_score"]
    if score is None:
        score = "w2" if held_out < VALIDATION_W2_ROWS else "objective"
    gamma = params["gamma"]
    if gamma is None:
        gamma = min(GAMMA, GAMMA_SHARE * bures_slope)
    elif gamma >= bures_slope:
        warnings.warn(
            f"gamma={gamma:g} is at least the smallest slope of the data's Bures map "
            f"({bures_slope:.3g}): the map's Jacobian is held above it, so the map cannot reach "
            "the Bures map of these data; gamma=None chooses it from the data",
            stacklevel=3,
        )
    return chosen | {
        "validation_score": score,
        "gamma": gamma,
        "rows_per_dimension": rows / features,
        "size": size,
        "held_out_rows": held_out,
        "bures_slope": bures_slope,
    }


def check_params(params: dict[str, Any], conditional: bool = False) -> None:
    r"""One clear error for the first of ``BrenierMap``'s ``params`` (its
    ``get_params()``) that a fit (a ``conditional`` one) cannot take.

    Example:
        >>> from otflows import BrenierMap
        >>> check_params(BrenierMap(max_iter=0).get_params())
        Traceback (most recent call last):
        ...
        ValueError: max_iter must be a positive integer; got 0
    """
    p = SimpleNamespace(**params)
    counts = {"max_iter": p.max_iter, "batch_size": p.batch_size}
    for name in ("target_batch_size", "validation_interval", "patience", "threads"):
        if params[name] is not None:
            counts[name] = params[name]
    if p.refine_rounds:
        counts["refine_iter"] = p.refine_iter
    for name, value in counts.items():
        if not _positive(value, integer=True):
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    for name in ("init_iter", "refine_rounds"):
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer; got {value!r}")
    for name in ("fallback", "progress", "floor"):  # floor: fallback's old name, or None
        if not isinstance(params[name], bool) and (name, params[name]) != ("floor", None):
            raise ValueError(f"{name} must be True or False; got {params[name]!r}")
    if p.max_time is not None and not _positive(p.max_time):
        raise ValueError(f"max_time must be a positive number of seconds; got {p.max_time!r}")
    if not 0 <= p.validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1); got {p.validation_fraction!r}")
    if p.validation_score is not None and p.validation_score not in SCORES:
        raise ValueError(
            f"validation_score must be one of {SCORES} or None (by the held-out rows); "
            f"got {p.validation_score!r}"
        )
    by_data = {
        "hidden_features": ("a positive integer", "by the rows per dimension"),
        "lr": ("a positive number", "by the rows per dimension"),
        "gamma": ("a positive number", "from the data"),
    }
    for name, (kind, chosen) in by_data.items():
        value = params[name]
        if value is not None and not _positive(value, integer=name == "hidden_features"):
            raise ValueError(f"{name} must be {kind} or None ({chosen}); got {value!r}")
    nets = CONDITIONAL_NETS if conditional else UNCONDITIONAL_NETS
    if p.net not in nets:
        kind = "conditional" if conditional else "unconditional (no ct given)"
        raise ValueError(f"net must be one of {nets} for a {kind} fit; got {p.net!r}")
    if conditional and p.refine_rounds:
        raise ValueError(
            "refine_rounds must be 0 for a conditional fit: residual refinement maps "
            "unconditional samples only"
        )
    size = distributed.world()[1]
    for name in ("batch_size", "target_batch_size"):
        if counts.get(name, 0) % size:
            raise ValueError(
                f"{name} ({counts[name]}) must be a multiple of the number of processes ({size})"
            )


def _positive(value: Any, integer: bool = False) -> bool:
    r"""Whether ``value`` is a positive integer (``integer``) or a positive finite number (not
    a bool either way)."""
    if isinstance(value, bool):
        return False
    if integer:
        return isinstance(value, int) and value >= 1
    return isinstance(value, (int, float)) and 0 < value < math.inf


def dtype_of(dtype: torch.dtype | str) -> torch.dtype:
    r"""``"float32"``, ``"float64"`` or those torch dtypes, as a torch dtype.

    Example:
        >>> dtype_of("float64")
        torch.float64
    """
    resolved = DTYPES.get(dtype) if isinstance(dtype, str) else dtype
    if not isinstance(resolved, torch.dtype) or resolved not in DTYPES.values():
        raise ValueError(f"dtype must be torch.float32 or torch.float64; got {dtype!r}")
    return resolved


def options_of(options: dict[str, Any]) -> dict[str, Any]:
    r"""``BrenierMap``'s arguments: ``options`` over its defaults (its signature holds the one
    definition of each); a :class:`TypeError` names an option it does not take.

    Example:
        >>> options_of({"max_iter": 10})["max_iter"], options_of({})["net"]
        (10, 'qicnn')
    """
    from otflows.maps.estimator import BrenierMap

    defaults = {name: p.default for name, p in inspect.signature(BrenierMap).parameters.items()}
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise TypeError(f"unknown options {unknown}: the options are BrenierMap's arguments")
    return defaults | options


def changed_params(cls: type, params: dict[str, Any]) -> list[str]:
    r"""``"name=value"`` for each of ``params`` that differs from its default in ``cls``'s
    signature: an estimator's repr, as scikit-learn prints it.

    Example:
        >>> from otflows import BrenierMap
        >>> changed_params(BrenierMap, BrenierMap(lr=0.1).get_params())
        ['lr=0.1']
    """
    defaults = {name: p.default for name, p in inspect.signature(cls).parameters.items()}
    return [
        f"{name}={value!r}" for name, value in params.items() if not _same(value, defaults[name])
    ]


def _same(a: Any, b: Any) -> bool:
    r"""Whether two parameter values are equal (``False`` where ``==`` is not a bool)."""
    try:
        return bool(a == b)
    except (TypeError, ValueError, RuntimeError):
        return False
