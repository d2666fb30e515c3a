r"""Modular monotone gradient network (M-MGN)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otflows.linalg.structured import RidgeFactors
from otflows.nets.base import MonotoneGradientNet, choose, require_positive
from otflows.nets.functional import dsigmoid, dtanh, logcosh

__all__ = ["MMGN"]

# s (convex, non-negative, summed over a module's units), σ = s' and σ'.
_MODULE_FUNCTIONS: dict[str, tuple[Callable[[Tensor], Tensor], ...]] = {
    "logcosh": (logcosh, torch.tanh, dtanh),
    "softplus": (F.softplus, torch.sigmoid, dsigmoid),
}


class MMGN(MonotoneGradientNet):
    r"""Modular monotone gradient network: a sum of gradients of squared convex functions.

    .. math::
        G(x) = a + V^\top V x + \sum_{k=1}^K s_k(z_k)\, W_k^\top \sigma(z_k), \quad
        z_k = W_k x + b_k, \quad s_k(z) = \textstyle\sum_j s(z_j), \quad \sigma = s'

    Each module is the gradient of :math:`\frac12 s_k(z_k)^2`, so the potential is closed-form,
    :math:`\varphi(x) = a^\top x + \frac12\|Vx\|^2 + \sum_k \frac12 s_k(z_k)^2`, and

    .. math:: J_G(x) = V^\top V + \sum_k \left[s_k(z_k)\, W_k^\top \operatorname{diag}
        \sigma'(z_k) W_k + (W_k^\top\sigma(z_k))(W_k^\top\sigma(z_k))^\top\right],

    symmetric positive semi-definite because :math:`s_k \ge 0` and :math:`\sigma' \ge 0`.

    References:
        | Learning Gradients of Convex Functions with Monotone Gradient Networks
        | Chaudhari, Pranav, Moura, ICASSP 2023 (https://arxiv.org/abs/2301.10862), eq. 9

    Arguments:
        features: The dimension ``D``.
        hidden_features: The number of rows ``H`` of each :math:`W_k`.
        num_modules: The number ``K`` of modules.
        activation: ``"logcosh"`` (:math:`s = \log\cosh`, :math:`\sigma = \tanh`, the paper's)
            or ``"softplus"`` (:math:`s = \operatorname{softplus}`, :math:`\sigma` = sigmoid).
        rank: The number of rows of :math:`V` (default ``D``).

    Example:
        >>> net = MMGN(3, 8, num_modules=2)
        >>> net.potential(torch.randn(5, 3)).shape
        torch.Size([5])
    """

    name = "mmgn"

    def __init__(
        self,
        features: int,
        hidden_features: int = 32,
        num_modules: int = 4,
        activation: str = "logcosh",
        rank: int | None = None,
    ):
        super().__init__(features, rank)
        self.s, self.sigma, self.dsigma = choose(_MODULE_FUNCTIONS, activation, "activation")
        require_positive(num_modules, "num_modules")
        scale = 1.0 / math.sqrt(features * hidden_features)
        self.W = nn.Parameter(scale * torch.randn(num_modules, hidden_features, features))
        self.b = nn.Parameter(torch.empty(num_modules, hidden_features).uniform_(-1.0, 1.0))

    def _preactivations(self, x: Tensor) -> Tensor:
        r"""The pre-activations :math:`z_k`, ``[..., D] -> [..., K, H]``."""
        return torch.einsum("khd,...d->...kh", self.W, x) + self.b

    @property
    def input_weights(self) -> list[Tensor]:
        return [self.W]

    @property
    def ridge_rank(self) -> int:
        return self.W.shape[0] * (self.W.shape[1] + 1)

    def gradient(self, x: Tensor) -> Tensor:
        z = self._preactivations(x)
        s = self.s(z).sum(-1, keepdim=True)  # [..., K, 1]
        return torch.einsum("...kh,khd->...d", s * self.sigma(z), self.W) + (
            self.quadratic.gradient(x)
        )

    def gradient_and_factors(self, x: Tensor) -> tuple[Tensor, RidgeFactors]:
        z = self._preactivations(x)  # [B, K, H]
        s = self.s(z).sum(-1, keepdim=True)
        E = torch.einsum("bkh,khd->bdk", self.sigma(z), self.W)  # Wₖᵀσ(zₖ) [B, D, K]
        G = torch.einsum("bdk,bk->bd", E, s.squeeze(-1)) + self.quadratic.gradient(x)
        U = self.W.reshape(-1, self.features)  # [K·H, D]
        return G, RidgeFactors(U, (s * self.dsigma(z)).flatten(1), E)

    def potential(self, x: Tensor) -> Tensor:
        r"""The closed-form potential :math:`\varphi(x)`, ``[..., D] -> [...]``."""
        s = self.s(self._preactivations(x)).sum(-1)  # [..., K]
        return 0.5 * s.square().sum(-1) + self.quadratic.potential(x)
