r"""The entropic potential: the convex potential whose gradient is the entropic OT map."""

from __future__ import annotations

import torch
from torch import Tensor

from otflows.nets.base import MonotoneGradientNet, check_context, require_positive

__all__ = ["EntropicPotential"]


class EntropicPotential(MonotoneGradientNet):
    r"""A log-sum-exp of affine functions, whose gradient is a softmax-weighted mean of atoms:

    .. math::
        \varphi(x) = \tau \log \sum_{j=1}^M e^{(\langle y_j, x\rangle + c_j)/\tau}
        + a^\top x + \tfrac12\|Vx\|^2, \qquad
        G(x) = \sum_j p_j(x)\, y_j + a + V^\top V x, \quad
        p(x) = \operatorname{softmax}\big((Yx + c)/\tau\big),

    with atoms ``Y [M, D]``, offsets ``c [M]`` and temperature :math:`\tau > 0`. Its Jacobian

    .. math:: J_G(x) = \tfrac1\tau \textstyle\sum_j p_j (y_j - \bar y)(y_j - \bar y)^\top
        + V^\top V, \quad \bar y = G(x) - a - V^\top V x,

    is a covariance of the atoms under :math:`p(x)`, symmetric positive semi-definite: the
    potential is convex. With the atoms the target rows :math:`y_j`, :math:`\tau =
    \varepsilon/2` and :math:`c_j = (g_j - \|y_j\|^2)/2` from the target potential :math:`g` of
    entropic OT for the cost :math:`\|x - y\|^2`, :math:`G` is the entropic OT map
    (:meth:`otflows.EntropicMap.as_transform` sets them): the entropic map is the gradient of a
    convex function, and ``BrenierTransform(EntropicPotential(...), gamma)`` makes it an
    invertible flow step with an exact log-determinant.

    The atoms, offsets and temperature are data (buffers, saved with the state), not trained;
    the quadratic term is a network's usual :class:`otflows.nets.QuadraticPotential`.

    Arguments:
        features: The dimension ``D``.
        atoms: The number of atoms ``M``.

    Example:
        >>> net = EntropicPotential(2, atoms=3)
        >>> net.Y.copy_(torch.eye(3, 2)); net.tau.fill_(0.5)  # doctest: +ELLIPSIS
        tensor(...)
        >>> net.gradient(torch.randn(4, 2)).shape
        torch.Size([4, 2])
    """

    name = "entropic"

    def __init__(self, features: int, atoms: int):
        super().__init__(features, None)
        require_positive(atoms, "atoms")
        self.Y: Tensor
        self.c: Tensor
        self.tau: Tensor
        self.register_buffer("Y", torch.zeros(atoms, features))
        self.register_buffer("c", torch.zeros(atoms))
        self.register_buffer("tau", torch.ones(()))

    def _logits(self, x: Tensor, context: Tensor | None) -> Tensor:
        r"""``[..., D] -> [..., M]``: :math:`(Yx + c)/\tau`."""
        check_context(self, context)
        return (x @ self.Y.T + self.c) / self.tau

    @property
    def input_weights(self) -> list[Tensor]:
        return [self.Y]

    def gradient(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        p = torch.softmax(self._logits(x, context), dim=-1)
        return p @ self.Y + self.quadratic.gradient(x)

    def potential(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        r"""The closed-form potential :math:`\varphi(x)`, ``[..., D] -> [...]``."""
        lse = torch.logsumexp(self._logits(x, context), dim=-1)
        return self.tau * lse + self.quadratic.potential(x)
