r"""Dense input convex neural network with convex quadratic input layers (Korotin et al.)."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otflows.linalg.structured import RidgeFactors
from otflows.nets.base import (
    SOFTPLUS_OF_ONE,
    ContextQuadratic,
    ConvexPotentialNet,
    check_context,
    context_network,
    require_positive,
)
from otflows.nets.functional import quadratic_icnn
from otflows.nets.icnn import convex_path

__all__ = ["QuadraticICNN"]


class QuadraticICNN(ConvexPotentialNet):
    r"""ICNN potential whose every layer sees a convex quadratic of the input; the map is its
    gradient.

    .. math::
        z_0 = q_0(x), \quad z_{j+1} = \operatorname{celu}(C_j z_j + q_{j+1}(x)), \quad
        \varphi(x) = w^\top z_{L-1} + a^\top x + \tfrac12\|Vx\|^2,

    with :math:`q_i(x)_h = \sum_{r<R} (x^\top A_{i,:,r,h})^2 + (W_i x + b_i)_h` (rank-:math:`R`
    convex quadratics, :func:`otflows.nets.functional.convex_quadratic`),
    :math:`C_j = \operatorname{softplus}(\cdot) \ge 0` and
    :math:`w = \operatorname{softplus}(\cdot) \ge 0`; CELU is convex and non-decreasing, so
    :math:`\varphi` is convex: the DenseICNN of the W2GN solvers and of the :math:`W_2`
    benchmark's potentials, whose units are pieces of quadratics. :math:`G = \nabla\varphi`
    comes from a hand-written backward pass, which autograd differentiates.

    Its Hessian comes in closed form from one forward and one backward pass
    (:meth:`gradient_and_factors`): with :math:`u_j` the pre-activations,
    :math:`\delta_j = \partial\varphi/\partial u_j \ge 0` and
    :math:`c_j = \partial\varphi/\partial z_j \odot \operatorname{celu}''(u_j) \ge 0`,

    .. math:: J_G = V^\top V + \sum_{i,r,h} 2\delta_{i,h}\, A_{i,:,r,h} A_{i,:,r,h}^\top
        + \sum_{j \ge 1, h} c_{j,h}\, \nabla u_{j,h} \nabla u_{j,h}^\top
        = V^\top V + U^\top \operatorname{diag}(d)\, U + E E^\top,

    so the structured path (:mod:`otflows.linalg.structured`) gives exact log-determinants
    and Newton steps for :math:`O(D^2 K)` per sample, :math:`K = (LR + L - 1) H`.

    **Conditional** (``context_features=C``): a small network of the context ``c`` ``[..., C]``
    (one tanh layer of ``context_hidden`` units) shifts each layer's bias,
    :math:`b_i + \beta_i(c)`, scales the output weights, :math:`w \odot \alpha(c)` with
    :math:`\alpha(c) = \operatorname{softplus}(\cdot) > 0`, and adds :math:`a(c)^\top x +
    \tfrac12\|L(c)^\top x\|^2` (:class:`otflows.nets.ContextQuadratic`) to the potential.
    For every ``c`` it is convex in ``x`` with Hessian factors of the same form, and every
    context starts at the same map (the context networks' last layers start at zero).

    References:
        | Wasserstein-2 Generative Networks
        | Korotin, Egiazarian, Asadulaev, Safin, Burnaev, ICLR 2021
          (https://arxiv.org/abs/1909.13082)
        | Do Neural Optimal Transport Solvers Work? A Continuous Wasserstein-2 Benchmark
        | Korotin, Li, Genevay, Solomon, Filippov, Burnaev, NeurIPS 2021
          (https://arxiv.org/abs/2106.01954)

    Arguments:
        features: The dimension ``D``.
        hidden_features: The width ``H`` of each layer.
        num_layers: The number ``L`` of quadratic layers (``L - 1`` convex ones).
        quadratic_rank: The rank ``R`` of each quadratic layer.
        rank: The number of rows of :math:`V` (default ``D``).
        context_features: The context's dimension ``C`` of a conditional network.
        context_hidden: The width of the context network.

    Example:
        >>> net = QuadraticICNN(3, 16)
        >>> net.gradient(torch.randn(5, 3)).shape
        torch.Size([5, 3])
        >>> conditional = QuadraticICNN(3, 16, context_features=2)
        >>> conditional.potential(torch.randn(5, 3), torch.randn(5, 2)).shape
        torch.Size([5])
    """

    name = "qicnn"

    def __init__(
        self,
        features: int,
        hidden_features: int = 64,
        num_layers: int = 3,
        quadratic_rank: int = 1,
        rank: int | None = None,
        context_features: int | None = None,
        context_hidden: int = 64,
    ):
        super().__init__(features, rank)
        require_positive(num_layers, "num_layers")
        require_positive(quadratic_rank, "quadratic_rank")
        D, H = features, hidden_features
        # x·A ~ N(0, ‖x‖²/D²): the squares start small beside the linear part
        self.A = nn.ParameterList(
            nn.Parameter(torch.randn(D, quadratic_rank, H) / D) for _ in range(num_layers)
        )
        self.W = nn.ModuleList(nn.Linear(D, H) for _ in range(num_layers))
        self.C, self.w = convex_path(H, num_layers)
        self.context_net = None
        if context_features is not None:  # β_i(c) [L H], α(c) [H] and a(c) [D]
            self.context_net = context_network(
                context_features, context_hidden, (num_layers + 1) * H + D
            )
            self.context_quadratic = ContextQuadratic(D, context_features, context_hidden)
            self._take_context(context_features)

    def _context_terms(
        self, context: Tensor | None
    ) -> tuple[list[Tensor], Tensor, tuple[Tensor, Tensor] | None]:
        r"""The layers' biases (``[H]``, or ``[..., H]`` given a context), the output weights
        :math:`w \ge 0` (likewise) and, given a context, the linear term :math:`a(c)`
        ``[..., D]`` with the context quadratic's :math:`L(c)` ``[..., D, D]``."""
        w = F.softplus(self.w)
        if self.context_net is None:
            check_context(self, context)
            return [W.bias for W in self._linears], w, None
        L, H = len(self.A), self.w.shape[0]
        context = check_context(self, context)
        beta, alpha, shift = self.context_net(context).split([L * H, H, self.features], dim=-1)
        biases = [
            W.bias + b
            for W, b in zip(self._linears, beta.unflatten(-1, (L, H)).unbind(-2), strict=True)
        ]
        quadratic = (shift, self.context_quadratic.columns(context))
        return biases, w * F.softplus(alpha + SOFTPLUS_OF_ONE), quadratic

    def potential(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        r"""The convex potential :math:`\varphi(x; c)`, ``x [..., D]`` (and ``context``
        ``[..., C]``) -> ``[...]``."""
        biases, w, conditional = self._context_terms(context)
        quadratics = [
            (A, W.weight, b) for A, W, b in zip(self.A, self._linears, biases, strict=True)
        ]
        convex = [F.softplus(C) for C in self.C]
        phi = quadratic_icnn(x, quadratics, convex, w, F.celu) + self.quadratic.potential(x)
        if conditional is None:
            return phi
        shift, L = conditional
        return phi + (shift * x).sum(-1) + ContextQuadratic.potential(x, L)

    @property
    def input_weights(self) -> list[Tensor]:
        return [*self.A, *(W.weight for W in self._linears)]

    @property
    def ridge_rank(self) -> int:
        L, R, H = len(self.A), self.A[0].shape[1], self.A[0].shape[2]
        return (L * R + L - 1) * H

    @property
    def _linears(self) -> list[nn.Linear]:
        r"""The layers' affine maps :math:`W_i x + b_i`."""
        return cast(list[nn.Linear], list(self.W))

    def gradient(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self._pass(x, context, factors=False)[1]

    def potential_and_gradient(
        self, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        phi, G, _ = self._pass(x, context, factors=False)
        return phi, G

    def gradient_and_factors(
        self, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, RidgeFactors]:
        _, G, factors = self._pass(x, context, factors=True)
        assert factors is not None
        return G, factors

    def _pass(
        self, x: Tensor, context: Tensor | None, factors: bool
    ) -> tuple[Tensor, Tensor, RidgeFactors | None]:
        r""":math:`\varphi(x; c)` ``[...]``, :math:`\nabla_x\varphi(x; c)` ``[..., D]`` by one
        hand-written forward and backward pass (differentiable in the parameters, and about
        twice as fast as :func:`torch.func.grad` at small batches), and, with ``factors``, the
        factors of the Hessian (``x`` ``[B, D]``)."""
        biases, w, conditional = self._context_terms(context)
        # forward: s_i = x·A_i [B, R, H], the pre-activations u_j [B, H] and, with factors,
        # their total Jacobians ∇u_j [B, D, H] (fused multiply-adds: these passes are the cost)
        s = [torch.einsum("...d,drh->...rh", x, A) for A in self.A]
        C = [F.softplus(C) for C in self.C]
        u: list[Tensor] = []
        du: list[Tensor] = []
        for i, (A, W, b) in enumerate(zip(self.A, self._linears, biases, strict=True)):
            u_i = s[i].square().sum(-2) + x @ W.weight.T + b
            if factors:
                du_i = W.weight.T.expand(x.shape[0], -1, -1)  # ∇q_i = 2 A_i diag(s_i) + W_iᵀ
                for r in range(A.shape[1]):
                    du_i = torch.addcmul(du_i, 2 * A[:, r], s[i][:, r, None, :])
            if i > 0:  # z_0 = u_0 carries no activation
                z = u[-1] if i == 1 else F.celu(u[-1])
                u_i = u_i + z @ C[i - 1].T
                if factors:
                    dz = du[-1] if i == 1 else du[-1] * _dcelu(u[-1])[:, None, :]
                    # one [B·D, H] × [H, H] product: far faster than B small ones
                    H = dz.shape[-1]
                    du_i = torch.addmm(du_i.reshape(-1, H), dz.reshape(-1, H), C[i - 1].T)
                    du_i = du_i.view(x.shape[0], -1, H)
            u.append(u_i)
            if factors:
                du.append(du_i)
        z_out = u[-1] if len(u) == 1 else F.celu(u[-1])
        phi = (z_out * w).sum(-1) + self.quadratic.potential(x)
        # backward: δ_j = ∂φ/∂u_j and, with factors, the curvature c_j = ∂φ/∂z_j · celu''(u_j)
        # of each activation, as √c_j ∇u_j [B, D, H]
        dz_out = w.expand_as(u[-1])
        delta, columns = [dz_out] * len(u), []
        for j in range(len(u) - 1, 0, -1):
            delta[j] = dz_out * _dcelu(u[j])
            if factors:
                # √c_j, written so that its derivative is finite where celu'' vanishes (u ≥ 0)
                root = dz_out.sqrt() * torch.where(
                    u[j] < 0, torch.exp(0.5 * u[j].clamp_max(0.0)), 0.0
                )
                columns.append(root[:, None, :] * du[j])
            dz_out = delta[j] @ C[j - 1]
        delta[0] = dz_out
        # G = Σ_i ∇q_i δ_i = Σ_i 2 A_i (s_i ⊙ δ_i) + W_iᵀ δ_i, without the [B, D, H] ∇q_i
        G = self.quadratic.gradient(x)
        if conditional is not None:
            shift, L = conditional
            phi = phi + (shift * x).sum(-1) + ContextQuadratic.potential(x, L)
            G = G + shift + ContextQuadratic.gradient(x, L)
            if factors:
                columns.append(L)
        for s_i, d_i, A, W in zip(s, delta, self.A, self._linears, strict=True):
            G = (
                G
                + torch.einsum("...rh,drh->...d", 2 * s_i * d_i[..., None, :], A)
                + d_i @ W.weight
            )
        return phi, G, self._hessian_factors(delta, columns) if factors else None

    def _hessian_factors(self, delta: list[Tensor], columns: list[Tensor]) -> RidgeFactors:
        r"""The Hessian's factors from the backward pass's ``delta`` (``[B, H]`` per layer) and
        per-sample ``columns`` (``[B, D, ·]``): the quadratics' Hessians
        :math:`2 A_{i,:,r,h} A_{i,:,r,h}^\top` are shared ridges ``U`` (rows ordered i, r, h)
        with curvatures :math:`2\delta_{i,h}`; the activations' are the columns ``E``."""
        R = self.A[0].shape[1]
        U = torch.cat([A.permute(1, 2, 0).flatten(0, 1) for A in self.A])  # [L R H, D]
        d = torch.cat([(2 * d_i).repeat(1, R) for d_i in delta], dim=1)  # [B, L R H]
        return RidgeFactors(U, d, torch.cat(columns, dim=-1) if columns else None)


def _dcelu(u: Tensor) -> Tensor:
    r"""CELU's derivative :math:`\min(1, e^u)`."""
    return torch.exp(u.clamp_max(0.0))
