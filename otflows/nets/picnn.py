r"""Partially input convex neural network (PICNN): a potential convex in ``x``, any function of
a context ``c``; the conditional map is its gradient in ``x``."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otflows.nets.base import (
    ContextQuadratic,
    ConvexPotentialNet,
    check_context,
    choose,
    require_positive,
)
from otflows.nets.icnn import _CONVEX_ACTIVATIONS, convex_path

__all__ = ["PICNN"]


class PICNN(ConvexPotentialNet):
    r"""Partially input convex neural network potential :math:`\varphi(x; c)`, convex in ``x``
    for every context ``c``; the map is :math:`G(x; c) = \nabla_x\varphi(x; c)`.

    A context path :math:`u_0 = c`, :math:`u_{i+1} = \tanh(\tilde W_i u_i + \tilde b_i)` gates
    the convex path:

    .. math::
        z_{i+1} = g\Big(W^{(z)}_i\big(z_i \odot [W^{(zu)}_i u_i + b^{(z)}_i]_+\big)
            + A_i\big(x \odot (W^{(xu)}_i u_i + b^{(x)}_i)\big) + W^{(u)}_i u_i + b_i\Big),

    .. math::
        \varphi(x; c) = w^\top z_L + (a + a(u_{L-1}))^\top x + \tfrac12\|Vx\|^2
            + \tfrac12\|L(c)^\top x\|^2,

    with :math:`W^{(z)}_i = \operatorname{softplus}(\cdot) \ge 0`, :math:`w \ge 0`, the gates
    :math:`[\cdot]_+ \ge 0`, :math:`L(c)` from :class:`otflows.nets.ContextQuadratic` and
    :math:`g` convex non-decreasing: each pre-activation is affine in
    ``x`` plus a non-negative combination of convex functions of ``x``, so :math:`\varphi` is
    convex in ``x`` whatever the context (the first layer has no :math:`z` term). The gates
    start at one and :math:`a(\cdot)` at zero, so every context starts from an ICNN.
    :math:`G` is the autodiff gradient and :math:`J_G = \nabla_x^2\varphi` has no low-rank
    structure (dense or stochastic log-determinants).

    References:
        | Input Convex Neural Networks
        | Amos, Xu, Kolter, ICML 2017 (https://arxiv.org/abs/1609.07152), eq. 3
        | Supervised Training of Conditional Monge Maps
        | Bunne, Krause, Cuturi, NeurIPS 2022 (https://arxiv.org/abs/2206.14262)

    Arguments:
        features: The dimension ``D``.
        context_features: The context's dimension ``C``.
        hidden_features: The width ``H`` of each convex layer.
        num_layers: The number ``L`` of convex layers.
        context_hidden: The width of the context path.
        activation: ``"softplus"`` or ``"gaussian_softplus"``.
        rank: The number of rows of :math:`V` (default ``D``).

    Example:
        >>> net = PICNN(3, context_features=2, hidden_features=16, num_layers=2)
        >>> net.gradient(torch.randn(5, 3), torch.randn(5, 2)).shape
        torch.Size([5, 3])
    """

    name = "picnn"

    def __init__(
        self,
        features: int,
        context_features: int,
        hidden_features: int = 64,
        num_layers: int = 3,
        context_hidden: int = 64,
        activation: str = "softplus",
        rank: int | None = None,
    ):
        super().__init__(features, rank)
        self._take_context(context_features)
        require_positive(num_layers, "num_layers")
        self.g = choose(_CONVEX_ACTIVATIONS, activation, "activation")
        D, H, L = features, hidden_features, num_layers
        widths = [context_features] + [context_hidden] * (L - 1)  # of u_0 … u_{L-1}
        self.context_path = nn.ModuleList(
            nn.Linear(widths[i], context_hidden) for i in range(L - 1)
        )
        self.A = nn.ModuleList(nn.Linear(D, H, bias=False) for _ in range(L))
        self.x_gates = nn.ModuleList(_gate(widths[i], D) for i in range(L))
        self.z_gates = nn.ModuleList(_gate(widths[i], H) for i in range(1, L))
        self.context_terms = nn.ModuleList(nn.Linear(widths[i], H) for i in range(L))
        self.Wz, self.w = convex_path(H, L)
        self.context_quadratic = ContextQuadratic(D, context_features, context_hidden)
        self.shift = nn.Linear(widths[-1], D)  # a(u_{L-1}), from zero
        nn.init.zeros_(self.shift.weight)
        nn.init.zeros_(self.shift.bias)

    @property
    def input_weights(self) -> list[Tensor]:
        return [cast(nn.Linear, A).weight for A in self.A]

    def potential(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        r"""The potential :math:`\varphi(x; c)`, convex in ``x``: ``x`` ``[..., D]`` and
        ``context`` ``[..., C]`` -> ``[...]``."""
        u = check_context(self, context)
        quadratic = ContextQuadratic.potential(x, self.context_quadratic.columns(u))
        z = x.new_zeros(())
        for i, (A, x_gate, term) in enumerate(
            zip(self.A, self.x_gates, self.context_terms, strict=True)
        ):
            pre = A(x * x_gate(u)) + term(u)
            if i > 0:
                gate = F.relu(self.z_gates[i - 1](u))
                pre = pre + (z * gate) @ F.softplus(self.Wz[i - 1]).T
            z = self.g(pre)
            if i < len(self.context_path):
                u = torch.tanh(self.context_path[i](u))
        linear = (self.shift(u) * x).sum(-1)
        return z @ F.softplus(self.w) + linear + quadratic + self.quadratic.potential(x)


def _gate(in_features: int, out_features: int) -> nn.Linear:
    r"""A gate :math:`W u + b` that starts at one (zero weights, unit bias)."""
    gate = nn.Linear(in_features, out_features)
    nn.init.zeros_(gate.weight)
    nn.init.ones_(gate.bias)
    return gate
