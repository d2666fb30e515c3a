r"""Scores of a map: its transport cost, and its error against a known map (L2-UVP and
cosine)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from otflows.metrics.inputs import Array, as_float64, model_spec
from otflows.validation import as_samples

__all__ = ["l2_uvp", "map_cosine", "transport_cost"]


def transport_cost(T: Callable[[Tensor], Tensor], X: Array, batch_size: int = 4096) -> float:
    r"""The transport cost :math:`\mathbb E\|x - T(x)\|^2` of a map on samples.

    Arguments:
        T: The map (e.g. :meth:`BrenierFlow.transport`), ``[B, D] -> [B, D]``.
        X: Samples ``[N, D]``; arrays are cast to the map's dtype when it is a module.

    Example:
        >>> transport_cost(lambda x: 2 * x, torch.ones(4, 3))
        3.0
    """
    owner = getattr(T, "__self__", T)
    spec = model_spec(owner) if isinstance(owner, torch.nn.Module) else {}
    X = as_samples(X, "X", **spec)
    with torch.no_grad():
        costs = [(batch - T(batch)).square().sum(-1) for batch in X.split(batch_size)]
    return float(torch.cat(costs).mean())


def l2_uvp(pred: Array, true: Array) -> float:
    r"""The unexplained variance percentage of a map,
    :math:`100\,\mathbb E\|\hat T(x) - T^*(x)\|^2 / \operatorname{tr}\operatorname{Cov}(T^*(x))`.

    Arguments:
        pred: :math:`\hat T(x)` on samples, ``[N, D]``.
        true: :math:`T^*(x)` on the same samples, ``[N, D]``.

    Example:
        >>> true = np.array([[0.0, 0.0], [2.0, 2.0]])
        >>> l2_uvp(true + 0.1, true)  # 100 · 0.02 / 2
        1.0000000000000009
    """
    pred = as_float64(pred, "pred")
    true = as_float64(true, "true", pred.shape[1])
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have the same shape; got {pred.shape}, {true.shape}")
    return float(100.0 * np.square(pred - true).sum(-1).mean() / true.var(axis=0).sum())


def map_cosine(x: Array, pred: Array, true: Array) -> float:
    r"""The cosine between a map's and the true map's displacements (Korotin et al., 2021),

    .. math:: \cos(\hat T) = \frac{\mathbb E\langle \hat T(x) - x, T^*(x) - x\rangle}
        {\sqrt{\mathbb E\|\hat T(x) - x\|^2\,\mathbb E\|T^*(x) - x\|^2}}.

    Arguments:
        x: Samples ``[N, D]``.
        pred: :math:`\hat T(x)`, ``[N, D]``.
        true: :math:`T^*(x)`, ``[N, D]``.

    Example:
        >>> x = np.zeros((2, 2))
        >>> map_cosine(x, np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[2.0, 0.0], [0.0, 2.0]]))
        1.0
    """
    x = as_float64(x, "x")
    pred, true = as_float64(pred, "pred", x.shape[1]), as_float64(true, "true", x.shape[1])
    if not x.shape == pred.shape == true.shape:
        raise ValueError(
            f"x, pred and true must have the same shape; got {x.shape}, {pred.shape}, {true.shape}"
        )
    u, v = pred - x, true - x
    inner = (u * v).sum(-1).mean()
    return float(inner / np.sqrt(np.square(u).sum(-1).mean() * np.square(v).sum(-1).mean()))
