r"""Scalar functions the networks are built from."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "MONOTONE_ACTIVATIONS",
    "dsigmoid",
    "dtanh",
    "gaussian_softplus",
    "inverse_softplus",
    "logcosh",
]


def logcosh(x: Tensor) -> Tensor:
    r"""The convex, non-negative :math:`\log\cosh x`, stable for large :math:`|x|`.

    Example:
        >>> logcosh(torch.tensor([0.0, 1000.0], dtype=torch.float64))
        tensor([  0.0000, 999.3069], dtype=torch.float64)
    """
    x = x.abs()
    return x + F.softplus(-2.0 * x) - math.log(2.0)


def gaussian_softplus(x: Tensor) -> Tensor:
    r"""The ReLU smoothed by a Gaussian, :math:`x\Phi(x) + \phi(x)`; convex and increasing.

    Example:
        >>> gaussian_softplus(torch.tensor([0.0]))  # φ(0) = 1/√(2π)
        tensor([0.3989])
    """
    return x * torch.special.ndtr(x) + torch.exp(-0.5 * x.square()) / math.sqrt(2.0 * math.pi)


def inverse_softplus(y: Tensor) -> Tensor:
    r"""The inverse of :func:`torch.nn.functional.softplus` for ``y > 0``.

    Example:
        >>> F.softplus(inverse_softplus(torch.tensor([0.5, 2.0])))
        tensor([0.5000, 2.0000])
    """
    return y + torch.log(-torch.expm1(-y))


def dtanh(x: Tensor) -> Tensor:
    r""":math:`\tanh'(x) = 1 - \tanh^2 x`."""
    return 1.0 - torch.tanh(x).square()


def dsigmoid(x: Tensor) -> Tensor:
    r""":math:`\sigma'(x) = \sigma(x)\sigma(-x)`."""
    return torch.sigmoid(x) * torch.sigmoid(-x)


# Monotone increasing activations σ and their derivatives σ'.
MONOTONE_ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "tanh": (torch.tanh, dtanh),
    "sigmoid": (torch.sigmoid, dsigmoid),
    "softplus": (F.softplus, torch.sigmoid),
}
