r"""Held-out rows: the validation samples a fit sets aside, with their contexts."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from otflows.validation.samples import as_samples

__all__ = ["held_out_rows", "hold_out", "hold_out_with_context", "split_held_out", "with_context"]


def held_out_rows(
    rows: int, name: str, fraction: float, *, max_rows: int | None = None, advice: str = ""
) -> int:
    r"""How many of ``rows`` samples ``fraction`` holds out for validation:
    :math:`\operatorname{round}(\text{fraction}\cdot N)`, at most ``max_rows``.

    Raises:
        ValueError: Naming ``name`` when that leaves no row on either side (``advice`` says
            what else the caller can pass).

    Example:
        >>> held_out_rows(1000, "X", 0.1, max_rows=64)
        64
    """
    n = round(fraction * rows)
    if max_rows is not None:
        n = min(n, max_rows)
    if n < 1 or n == rows:
        raise ValueError(
            f"validation_fraction {fraction} of the {rows} rows of {name} leaves {n} for "
            f"validation and {rows - n} for training; give more rows{advice} or "
            "validation_fraction=0"
        )
    return n


def hold_out(
    X: Tensor,
    name: str,
    fraction: float,
    generator: torch.Generator,
    *,
    max_rows: int | None = None,
    advice: str = "",
) -> tuple[Tensor, Tensor]:
    r"""Splits ``X [N, D]`` into training rows ``[N - n, D]`` and random held-out ones
    ``[n, D]``, ``n`` from :func:`held_out_rows` (which raises when a side would be empty).

    Example:
        >>> train, val = hold_out(torch.randn(10, 2), "X", 0.2, torch.Generator().manual_seed(0))
        >>> train.shape, val.shape
        (torch.Size([8, 2]), torch.Size([2, 2]))
    """
    n = held_out_rows(len(X), name, fraction, max_rows=max_rows, advice=advice)
    order = torch.randperm(len(X), generator=generator).to(X.device)
    return X[order[n:]], X[order[:n]]


def with_context(
    X: Tensor | np.ndarray,
    context: Tensor | np.ndarray,
    name: str,
    context_name: str,
    context_features: int | None = None,
    **spec: Any,
) -> tuple[Tensor, Tensor]:
    r"""Samples ``X [N, D]`` (:func:`as_samples` with ``spec``) and their contexts
    ``[N, C]``, one per row of ``X`` (same dtype and device; ``C = context_features`` when
    given).

    Example:
        >>> X, c = with_context(np.zeros((3, 2)), np.ones((3, 1)), "Xs", "cs")
        >>> c.shape
        torch.Size([3, 1])
    """
    X = as_samples(X, name, **spec)
    context = as_samples(context, context_name, **(spec | {"features": context_features}))
    if len(context) != len(X):
        raise ValueError(
            f"{context_name} must have one row per row of {name} ({len(X)}); got {len(context)}"
        )
    return X, context


def hold_out_with_context(
    X: Tensor,
    context: Tensor,
    name: str,
    fraction: float,
    generator: torch.Generator,
    *,
    max_rows: int | None = None,
    advice: str = "",
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r""":func:`hold_out` of rows with their contexts: ``X`` and ``context`` ``[N, C]`` split
    by one draw, as ``(X_train, X_val, context_train, context_val)``.

    Example:
        >>> X, c = torch.randn(10, 2), torch.randn(10, 1)
        >>> parts = hold_out_with_context(X, c, "X", 0.2, torch.Generator().manual_seed(0))
        >>> [tuple(p.shape) for p in parts]
        [(8, 2), (2, 2), (8, 1), (2, 1)]
    """
    joint = torch.cat([X, context], dim=1)
    train, held = hold_out(joint, name, fraction, generator, max_rows=max_rows, advice=advice)
    D = X.shape[1]
    return train[:, :D], held[:, :D], train[:, D:], held[:, D:]


def split_held_out(
    X: Tensor,
    context: Tensor | None,
    X_val: Tensor | np.ndarray | None,
    context_val: Tensor | np.ndarray | None,
    fraction: float,
    generator: torch.Generator,
    *,
    names: tuple[str, str] = ("X", "c"),
    what: str = "contexts",
    max_rows: int | None = None,
    advice: str = "",
    **spec: Any,
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    r"""A data set's training and held-out rows, with their contexts: ``(X, X_val, context,
    context_val)``. The held-out rows are those given (``X_val``, with ``context_val`` where
    ``X`` has a ``context``), checked with ``spec`` (:func:`as_samples`); else a random
    ``fraction`` of the rows drawn with ``generator`` (:func:`hold_out`, at most
    ``max_rows``; :func:`hold_out_with_context`); else none (``fraction`` 0). ``names`` and
    ``what`` name the arguments in errors.

    Example:
        >>> X, c = torch.randn(10, 2), torch.randn(10, 1)
        >>> parts = split_held_out(X, c, None, None, 0.2, torch.Generator().manual_seed(0))
        >>> [tuple(p.shape) for p in parts]
        [(8, 2), (2, 2), (8, 1), (2, 1)]
    """
    name, cname = names
    if X_val is not None:
        if context is None:
            if context_val is not None:
                raise ValueError(f"{cname}_val is given without {cname}")
            return X, as_samples(X_val, f"{name}_val", **spec), None, None
        if context_val is None:
            raise ValueError(f"{cname}_val must be given with {name}_val (their {what})")
        X_val, context_val = with_context(
            X_val, context_val, f"{name}_val", f"{cname}_val", context.shape[1], **spec
        )
        return X, X_val, context, context_val
    if fraction == 0:
        return X, None, context, None
    options: dict[str, Any] = {"max_rows": max_rows, "advice": advice}
    if context is None:
        X, held = hold_out(X, name, fraction, generator, **options)
        return X, held, None, None
    return hold_out_with_context(X, context, name, fraction, generator, **options)
