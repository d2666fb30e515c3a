r"""Input convex neural network (ICNN) whose gradient is the map, as in CP-Flow."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otflows.nets.base import ConvexPotentialNet, choose, require_positive
from otflows.nets.functional import gaussian_softplus, inverse_softplus

__all__ = ["ICNN", "convex_path"]

_CONVEX_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "softplus": F.softplus,
    "gaussian_softplus": gaussian_softplus,
}


def convex_path(hidden_features: int, num_layers: int) -> tuple[nn.ParameterList, nn.Parameter]:
    r"""The unconstrained parameters of an ICNN's non-negative weights: ``num_layers - 1``
    z-path matrices ``[H, H]`` with :math:`\operatorname{softplus}(\cdot) \sim U(0.1, 2)/H`
    (the layers neither die out nor blow up with depth) and the output weights ``[H]`` with
    :math:`\operatorname{softplus}(\cdot) = 1/H`.

    Example:
        >>> Wz, w = convex_path(4, 3)
        >>> len(Wz), tuple(Wz[0].shape), bool((F.softplus(w) - 0.25).abs().max() < 1e-6)
        (2, (4, 4), True)
    """
    H = hidden_features
    Wz = nn.ParameterList(
        nn.Parameter(inverse_softplus(torch.empty(H, H).uniform_(0.1, 2.0) / H))
        for _ in range(num_layers - 1)
    )
    return Wz, nn.Parameter(inverse_softplus(torch.full((H,), 1.0 / H)))


class ICNN(ConvexPotentialNet):
    r"""Input convex neural network potential; the map is its gradient.

    .. math::
        z_1 = g(A_0 x + b_0), \quad z_{i+1} = g(W_i^{(z)} z_i + A_i x + b_i), \quad
        \varphi(x) = w^\top z_L + a^\top x + \tfrac12\|Vx\|^2

    with :math:`W_i^{(z)} = \operatorname{softplus}(\cdot) \ge 0`,
    :math:`w = \operatorname{softplus}(\cdot) \ge 0` and :math:`g` convex non-decreasing, so
    :math:`\varphi` is convex. :math:`G = \nabla\varphi` by autodiff
    (:func:`torch.func.grad`) and :math:`J_G = \nabla^2\varphi`, symmetric positive
    semi-definite; it has no low-rank structure, so log-determinants are dense or stochastic.

    References:
        | Input Convex Neural Networks
        | Amos, Xu, Kolter, ICML 2017 (https://arxiv.org/abs/1609.07152)
        | Convex Potential Flows
        | Huang, Chen, Tsirigotis, Courville, ICLR 2021 (https://arxiv.org/abs/2012.05942)

    Arguments:
        features: The dimension ``D``.
        hidden_features: The width ``H`` of each hidden layer.
        num_layers: The number ``L`` of hidden layers.
        activation: ``"softplus"`` or ``"gaussian_softplus"`` (CP-Flow's
            :math:`x\Phi(x) + \phi(x)`).
        rank: The number of rows of :math:`V` (default ``D``).

    Example:
        >>> net = ICNN(3, 16, num_layers=2)
        >>> net.gradient(torch.randn(5, 3)).shape
        torch.Size([5, 3])
    """

    name = "icnn"

    def __init__(
        self,
        features: int,
        hidden_features: int = 64,
        num_layers: int = 3,
        activation: str = "softplus",
        rank: int | None = None,
    ):
        super().__init__(features, rank)
        self.g = choose(_CONVEX_ACTIVATIONS, activation, "activation")
        require_positive(num_layers, "num_layers")
        self.A = nn.ModuleList(nn.Linear(features, hidden_features) for _ in range(num_layers))
        self.Wz, self.w = convex_path(hidden_features, num_layers)

    @property
    def input_weights(self) -> list[Tensor]:
        return [cast(nn.Linear, A).weight for A in self.A]

    def potential(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        r"""The convex potential :math:`\varphi(x)`, ``[..., D] -> [...]``."""
        z = self.g(self.A[0](x))
        for A, Wz in zip(self.A[1:], self.Wz, strict=True):
            z = self.g(z @ F.softplus(Wz).T + A(x))
        return z @ F.softplus(self.w) + self.quadratic.potential(x)
