r"""Input convex gradient network (ICGN) with one hidden layer."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otflows.linalg.quadrature import gauss_legendre
from otflows.linalg.structured import RidgeFactors
from otflows.nets.base import MonotoneGradientNet, choose
from otflows.nets.functional import MONOTONE_ACTIVATIONS, logcosh

__all__ = ["ICGN"]


def _tanh_A(u: Tensor) -> Tensor:  # ∫ sech⁴
    t = torch.tanh(u)
    return t - t**3 / 3.0


def _tanh_B(u: Tensor) -> Tensor:  # ∫ A
    return 2.0 / 3.0 * logcosh(u) + torch.tanh(u).square() / 6.0


def _sigmoid_A(u: Tensor) -> Tensor:  # ∫ σ²(1 - σ)²
    p = torch.sigmoid(u)
    return p.square() / 2.0 - p**3 / 3.0


def _sigmoid_B(u: Tensor) -> Tensor:  # ∫ A
    p = torch.sigmoid(u)
    return (F.softplus(u) - p + p.square()) / 6.0


def _softplus_A(u: Tensor) -> Tensor:  # ∫ sigmoid²
    return F.softplus(u) - torch.sigmoid(u)


# activation: (A = ∫σ'², B = ∫A or None when not elementary); σ' from MONOTONE_ACTIVATIONS.
_ANTIDERIVATIVES: dict[str, tuple[Callable, Callable | None]] = {
    "tanh": (_tanh_A, _tanh_B),
    "sigmoid": (_sigmoid_A, _sigmoid_B),
    "softplus": (_softplus_A, None),
}


class ICGN(MonotoneGradientNet):
    r"""Input convex gradient network with one hidden layer :math:`M(x) = \sigma(Wx + b)`.

    .. math:: G(x) = \int_0^1 J_M(sx)^\top J_M(sx)\, x\, ds + V^\top V x + a
        = W^\top \left[A(Wx + b) - A(b)\right] + V^\top V x + a, \quad A' = \sigma'^2

    With one hidden layer the integral is a true gradient (a sum of convex ridge functions) and

    .. math:: J_G(x) = W^\top \operatorname{diag}\sigma'(Wx + b)^2\, W + V^\top V,

    symmetric positive semi-definite. The integral over :math:`s` is exact by default: the
    antiderivative :math:`A` is elementary for tanh (:math:`\tanh - \tanh^3/3`), sigmoid
    (:math:`\sigma^2/2 - \sigma^3/3`) and softplus (:math:`\operatorname{softplus} -
    \operatorname{sigmoid}`). With ``quadrature_nodes=n`` it is the paper's quadrature in
    :math:`s` instead, by the ``n``-point Gauss–Legendre rule. Its error per unit is at most
    :math:`\frac{64}{15} M\rho^{-2n}/(\rho^2 - 1)` with, for tanh, whose :math:`\sigma'^2` has
    poles :math:`\pi/2` off the real axis, :math:`\rho = \delta + \sqrt{1 + \delta^2}`,
    :math:`\delta = \pi / |w_i^\top x|`: it grows with :math:`|w_i^\top x|`, and 32 nodes
    keep it below :math:`10^{-8}` for :math:`|w_i^\top x| \le 10` (tested). With quadrature,
    :math:`J_G` stays symmetric but is positive semi-definite only up to that error.

    The potential is closed-form for tanh and sigmoid,
    :math:`\varphi(x) = \sum_i [B(u_i + b_i) - B(b_i) - A(b_i) u_i] + \frac12\|Vx\|^2 + a^\top x`
    with :math:`u = Wx`, :math:`B' = A`; otherwise it is integrated along the segment.

    References:
        | Input Convex Gradient Networks
        | Richter-Powell, Lorraine, Amos, 2021 (https://arxiv.org/abs/2111.12187)

    Arguments:
        features: The dimension ``D``.
        hidden_features: The hidden width ``H``.
        activation: ``"tanh"``, ``"sigmoid"`` or ``"softplus"``.
        quadrature_nodes: ``None`` for the exact integral, or the number of Gauss–Legendre nodes.
        rank: The number of rows of :math:`V` (default ``D``).

    Example:
        >>> net = ICGN(3, 16)
        >>> net.gradient(torch.randn(5, 3)).shape
        torch.Size([5, 3])
    """

    name = "icgn"

    def __init__(
        self,
        features: int,
        hidden_features: int = 64,
        activation: str = "tanh",
        quadrature_nodes: int | None = None,
        rank: int | None = None,
    ):
        super().__init__(features, rank)
        self.A, self.B = choose(_ANTIDERIVATIVES, activation, "activation")
        self.dsigma = MONOTONE_ACTIVATIONS[activation][1]
        self.quadrature_nodes = quadrature_nodes
        self.W = nn.Parameter(torch.randn(hidden_features, features) / math.sqrt(features))
        self.b = nn.Parameter(torch.empty(hidden_features).uniform_(-1.0, 1.0))

    def _ridge(self, u: Tensor) -> Tensor:
        r""":math:`\int_0^{u_i} \sigma'(t + b_i)^2 dt` per unit, ``[..., H] -> [..., H]``."""
        if self.quadrature_nodes is None:
            return self.A(u + self.b) - self.A(self.b)
        s, w = gauss_legendre(self.quadrature_nodes, dtype=u.dtype, device=u.device)
        integrand = self.dsigma(u[..., None] * s + self.b[..., None]).square()  # [..., H, n]
        return u * (integrand @ w)

    @property
    def input_weights(self) -> list[Tensor]:
        return [self.W]

    @property
    def ridge_rank(self) -> int | None:
        # With quadrature the ridge curvatures are not guaranteed non-negative: no structure.
        return self.W.shape[0] if self.quadrature_nodes is None else None

    def gradient(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self._ridge(x @ self.W.T) @ self.W + self.quadratic.gradient(x)

    def gradient_and_factors(
        self, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, RidgeFactors]:
        if self.quadrature_nodes is not None:
            return super().gradient_and_factors(x)
        u = x @ self.W.T
        d = self.dsigma(u + self.b).square()
        return self._ridge(u) @ self.W + self.quadratic.gradient(x), RidgeFactors(self.W, d)

    def potential(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.B is None or self.quadrature_nodes is not None:
            return super().potential(x)
        u = x @ self.W.T
        phi = self.B(u + self.b) - self.B(self.b) - self.A(self.b) * u
        return phi.sum(-1) + self.quadratic.potential(x)
