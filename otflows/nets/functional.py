r"""Scalar functions the networks are built from."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "MONOTONE_ACTIVATIONS",
    "convex_quadratic",
    "dsigmoid",
    "dtanh",
    "gaussian_softplus",
    "inverse_softplus",
    "logcosh",
    "quadratic_icnn",
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


def convex_quadratic(x: Tensor, A: Tensor, W: Tensor, b: Tensor) -> Tensor:
    r"""The convex quadratic layer :math:`q(x)_h = \sum_r (x^\top A_{:, r, h})^2 + (W x)_h + b_h`,
    ``x [..., D]``, ``A [D, r, H]``, ``W [H, D]``, ``b [H]`` (or ``[..., H]``) → ``[..., H]``.

    Example:
        >>> A, W, b = torch.ones(2, 1, 3), torch.zeros(3, 2), torch.zeros(3)
        >>> convex_quadratic(torch.tensor([1.0, 2.0]), A, W, b)
        tensor([9., 9., 9.])
    """
    return torch.einsum("...d,drh->...rh", x, A).square().sum(-2) + x @ W.T + b


def quadratic_icnn(
    x: Tensor,
    quadratics: Sequence[tuple[Tensor, Tensor, Tensor]],
    convex: Sequence[Tensor],
    final: Tensor,
    activation: Callable[[Tensor], Tensor] = F.celu,
) -> Tensor:
    r"""The dense ICNN with quadratic input layers (Korotin et al. 2019),
    ``[..., D] -> [...]``:

    .. math:: z_0 = q_0(x), \quad z_{j+1} = g(C_j z_j + q_{j+1}(x)), \quad
        \psi(x) = w^\top z_L,

    with :math:`q_i` the :func:`convex_quadratic` layers ``quadratics[i] = (A_i, W_i, b_i)``,
    ``convex[j]`` :math:`= C_j \ge 0` ``[H_{j+1}, H_j]``, ``final`` :math:`= w \ge 0`
    ``[H_L]`` (or ``[..., H_L]``) and :math:`g` convex non-decreasing, so :math:`\psi` is convex.

    Example:
        >>> A, W, b = torch.ones(2, 1, 3), torch.zeros(3, 2), torch.zeros(3)
        >>> quadratic_icnn(torch.ones(2), [(A, W, b)] * 2, [torch.eye(3)], torch.ones(3))
        tensor(24.)
    """
    z = convex_quadratic(x, *quadratics[0])
    for layer, C in zip(quadratics[1:], convex, strict=True):
        z = activation(z @ C.T + convex_quadratic(x, *layer))
    return (z * final).sum(-1)
