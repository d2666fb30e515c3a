r"""Modular monotone gradient network (M-MGN)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otflows.linalg.structured import RidgeFactors
from otflows.nets.base import (
    SOFTPLUS_OF_ONE,
    ContextQuadratic,
    MonotoneGradientNet,
    check_context,
    choose,
    context_network,
    require_positive,
)
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

    **Conditional** (``context_features=C``): a small network of the context ``c`` ``[..., C]``
    (one tanh layer of ``context_hidden`` units) gives each module a bias shift
    :math:`\beta_k(c)` and a weight :math:`\alpha_k(c) = \operatorname{softplus}(\cdot) > 0`,
    and the linear term a shift :math:`a(c)`:

    .. math::
        G(x; c) = a + a(c) + V^\top V x + \sum_k \alpha_k(c)\, s_k(z_k)\, W_k^\top\sigma(z_k),
        \quad z_k = W_k x + b_k + \beta_k(c),

    plus :math:`L(c) L(c)^\top x` (:class:`otflows.nets.ContextQuadratic`): the gradient in
    ``x`` of :math:`(a + a(c))^\top x + \frac12\|Vx\|^2 + \frac12\|L(c)^\top x\|^2 +
    \sum_k \frac12\alpha_k(c) s_k(z_k)^2`, convex in ``x`` for every ``c``. The ridge
    directions :math:`W_k` do not depend on ``c``, so the Jacobian keeps its factored form
    (curvatures :math:`\alpha_k s_k \sigma'(z_k)`, low-rank columns
    :math:`\sqrt{\alpha_k}\,W_k^\top \sigma(z_k)` and those of :math:`L(c)`): structured
    log-determinants and Newton inverses apply unchanged. The context networks' last layers
    start at zero, so every context starts at the same map.

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
        context_features: The context's dimension ``C`` of a conditional network.
        context_hidden: The width of the context network.

    Example:
        >>> net = MMGN(3, 8, num_modules=2)
        >>> net.potential(torch.randn(5, 3)).shape
        torch.Size([5])
        >>> conditional = MMGN(3, 8, num_modules=2, context_features=2)
        >>> conditional.gradient(torch.randn(5, 3), torch.randn(5, 2)).shape
        torch.Size([5, 3])
    """

    name = "mmgn"

    def __init__(
        self,
        features: int,
        hidden_features: int = 32,
        num_modules: int = 4,
        activation: str = "logcosh",
        rank: int | None = None,
        context_features: int | None = None,
        context_hidden: int = 64,
    ):
        super().__init__(features, rank)
        self.s, self.sigma, self.dsigma = choose(_MODULE_FUNCTIONS, activation, "activation")
        require_positive(num_modules, "num_modules")
        scale = 1.0 / math.sqrt(features * hidden_features)
        self.W = nn.Parameter(scale * torch.randn(num_modules, hidden_features, features))
        self.b = nn.Parameter(torch.empty(num_modules, hidden_features).uniform_(-1.0, 1.0))
        self.context_net = None
        if context_features is not None:
            self.context_net = context_network(
                context_features, context_hidden, num_modules * (hidden_features + 1) + features
            )
            self.context_quadratic = ContextQuadratic(features, context_features, context_hidden)
            self._take_context(context_features)

    def _terms(
        self, x: Tensor, context: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
        r"""The pre-activations :math:`z_k` ``[..., K, H]`` and, given a context, the modules'
        weights :math:`\alpha_k(c)` ``[..., K, 1]``, the linear term's shift :math:`a(c)`
        ``[..., D]`` and the context quadratic's :math:`L(c)` ``[..., D, D]``."""
        z = torch.einsum("khd,...d->...kh", self.W, x) + self.b
        if self.context_net is None:
            check_context(self, context)
            return z, None, None, None
        K, H = self.b.shape
        context = check_context(self, context)
        beta, alpha, shift = self.context_net(context).split([K * H, K, self.features], dim=-1)
        alpha = F.softplus(alpha + SOFTPLUS_OF_ONE).unsqueeze(-1)
        L = self.context_quadratic.columns(context)
        return z + beta.unflatten(-1, (K, H)), alpha, shift, L

    @property
    def input_weights(self) -> list[Tensor]:
        return [self.W]

    @property
    def ridge_rank(self) -> int:
        return self.W.shape[0] * (self.W.shape[1] + 1)

    def gradient(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        z, alpha, shift, L = self._terms(x, context)
        s = self.s(z).sum(-1, keepdim=True)  # [..., K, 1]
        if alpha is not None:
            s = alpha * s
        G = torch.einsum("...kh,khd->...d", s * self.sigma(z), self.W) + self.quadratic.gradient(x)
        if shift is None or L is None:
            return G
        return G + shift + ContextQuadratic.gradient(x, L)

    def gradient_and_factors(
        self, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, RidgeFactors]:
        z, alpha, shift, L = self._terms(x, context)  # [B, K, H]
        s = self.s(z).sum(-1, keepdim=True)  # [B, K, 1]
        if alpha is not None:
            s = alpha * s  # αₖ sₖ
        E = torch.einsum("bkh,khd->bdk", self.sigma(z), self.W)  # Wₖᵀσ(zₖ) [B, D, K]
        G = torch.einsum("bdk,bk->bd", E, s.squeeze(-1)) + self.quadratic.gradient(x)
        if alpha is not None and shift is not None and L is not None:
            G = G + shift + ContextQuadratic.gradient(x, L)
            E = torch.cat([E * alpha.squeeze(-1).sqrt().unsqueeze(1), L], dim=-1)  # √αₖ Wₖᵀσ(zₖ)
        U = self.W.reshape(-1, self.features)  # [K·H, D]
        return G, RidgeFactors(U, (s * self.dsigma(z)).flatten(1), E)

    def potential(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        r"""The closed-form potential :math:`\varphi(x)`, ``[..., D] -> [...]``."""
        z, alpha, shift, L = self._terms(x, context)
        s = self.s(z).sum(-1)  # [..., K]
        phi = 0.5 * s.square()
        if alpha is not None:
            phi = alpha.squeeze(-1) * phi
        phi = phi.sum(-1) + self.quadratic.potential(x)
        if shift is None or L is None:
            return phi
        return phi + (shift * x).sum(-1) + ContextQuadratic.potential(x, L)
