r"""Cascaded monotone gradient network (C-MGN)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otflows.linalg.quadrature import gauss_legendre
from otflows.linalg.structured import RidgeFactors
from otflows.nets.base import MonotoneGradientNet, choose, require_positive
from otflows.nets.functional import MONOTONE_ACTIVATIONS, inverse_softplus

__all__ = ["CMGN"]


class CMGN(MonotoneGradientNet):
    r"""Cascaded monotone gradient network: one shared :math:`W`, monotone activations.

    .. math::
        z_0 = \alpha_0 \odot Wx + b_0, \quad
        z_\ell = \alpha_\ell \odot Wx + \beta_\ell \odot \sigma(z_{\ell-1}) + b_\ell, \quad
        G(x) = W^\top (\omega \odot \sigma(z_{L-1})) + V^\top V x + a

    Every layer acts coordinate-wise on :math:`u = Wx`, so :math:`G` is a sum of ridge functions
    :math:`W^\top f(Wx)` with :math:`f` monotone increasing, and its Jacobian is

    .. math:: J_G(x) = W^\top \operatorname{diag}(\omega \odot \sigma'(z_{L-1}) \odot c) W
        + V^\top V, \quad c_0 = \alpha_0,\ c_\ell = \alpha_\ell + \beta_\ell \odot
        \sigma'(z_{\ell-1}) \odot c_{\ell-1},

    symmetric positive semi-definite. The non-negative diagonal scalings
    :math:`\alpha, \beta, \omega = \operatorname{softplus}(\cdot)` are learnable when
    ``scaled=True`` and fixed to 1 otherwise (the paper's eqs. 4–6). The potential is a sum of
    :math:`H` one-dimensional integrals of the ridge profiles (:meth:`potential`).

    References:
        | Learning Gradients of Convex Functions with Monotone Gradient Networks
        | Chaudhari, Pranav, Moura, ICASSP 2023 (https://arxiv.org/abs/2301.10862)

    Arguments:
        features: The dimension ``D``.
        hidden_features: The number of rows ``H`` of :math:`W`.
        num_layers: The number ``L`` of activations in the cascade.
        activation: ``"tanh"``, ``"sigmoid"`` or ``"softplus"`` (monotone increasing).
        scaled: Whether the diagonal scalings are learnable.
        rank: The number of rows of :math:`V` (default ``D``).

    Example:
        >>> net = CMGN(3, 16, num_layers=2)
        >>> net.gradient(torch.randn(5, 3)).shape
        torch.Size([5, 3])
    """

    alpha: Tensor  # the scalings, before softplus: parameters, or buffers if not scaled
    beta: Tensor
    omega: Tensor

    name = "cmgn"

    def __init__(
        self,
        features: int,
        hidden_features: int = 64,
        num_layers: int = 2,
        activation: str = "tanh",
        scaled: bool = True,
        rank: int | None = None,
    ):
        super().__init__(features, rank)
        self.sigma, self.dsigma = choose(MONOTONE_ACTIVATIONS, activation, "activation")
        require_positive(num_layers, "num_layers")
        self.W = nn.Parameter(torch.randn(hidden_features, features) / math.sqrt(features))
        self.b = nn.Parameter(torch.empty(num_layers, hidden_features).uniform_(-1.0, 1.0))
        one = inverse_softplus(torch.tensor(1.0))
        scalings = {
            "alpha": one.repeat(num_layers, hidden_features),
            "beta": one.repeat(num_layers - 1, hidden_features),
            "omega": one.repeat(hidden_features),
        }
        for key, value in scalings.items():
            if scaled:
                setattr(self, key, nn.Parameter(value))
            else:
                self.register_buffer(key, value)

    @property
    def input_weights(self) -> list[Tensor]:
        return [self.W]

    @property
    def ridge_rank(self) -> int:
        return self.W.shape[0]

    def _cascade(self, u: Tensor, curvature: bool) -> tuple[Tensor, Tensor | None]:
        r"""``u = Wx [..., H]`` to :math:`\omega \odot \sigma(z_{L-1})` and, if asked, the
        curvature :math:`\omega \odot \sigma'(z_{L-1}) \odot c` of each ridge."""
        alpha, beta, omega = F.softplus(self.alpha), F.softplus(self.beta), F.softplus(self.omega)
        z = alpha[0] * u + self.b[0]
        c = alpha[0]  # ∂z/∂u, carried only if asked
        for layer in range(1, alpha.shape[0]):
            if curvature:
                c = alpha[layer] + beta[layer - 1] * self.dsigma(z) * c
            z = alpha[layer] * u + beta[layer - 1] * self.sigma(z) + self.b[layer]
        d = omega * self.dsigma(z) * c if curvature else None
        return omega * self.sigma(z), d

    def gradient(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        f, _ = self._cascade(x @ self.W.T, curvature=False)
        return f @ self.W + self.quadratic.gradient(x)

    def gradient_and_factors(
        self, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, RidgeFactors]:
        f, d = self._cascade(x @ self.W.T, curvature=True)
        assert d is not None
        return f @ self.W + self.quadratic.gradient(x), RidgeFactors(self.W, d)

    def potential(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        r"""The potential :math:`\varphi(x) - \varphi(0) = a^\top x + \frac12\|Vx\|^2 +
        \sum_h \int_0^{u_h} f_h(t)\,dt`, :math:`u = Wx`, ``[..., D] -> [...]``.

        :math:`f_h(t)` is the cascade's output :math:`\omega_h\sigma(z_{L-1,h})` along ridge
        :math:`h`; the :math:`H` one-dimensional integrals
        :math:`u_h\int_0^1 f_h(s u_h)\,ds` share the Gauss–Legendre nodes of
        :meth:`MonotoneGradientNet.potential` (same error bound) but need no :math:`D`-dimensional
        products at the nodes.
        """
        u = x @ self.W.T  # [..., H]
        s, w = gauss_legendre(self.potential_nodes, dtype=x.dtype, device=x.device)
        f, _ = self._cascade(s.view(-1, *([1] * u.dim())) * u, curvature=False)  # [n, ..., H]
        return torch.einsum("n,n...->...", w, (f * u).sum(-1)) + self.quadratic.potential(x)
