r"""The interface every monotone gradient network shares, and the quadratic term they all carry."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TypeVar

import torch
from torch import Tensor, nn
from torch.func import grad, grad_and_value

from otflows.linalg.quadrature import gauss_legendre
from otflows.linalg.structured import RidgeFactors
from otflows.validation.arguments import RecordsArguments

__all__ = [
    "ConvexPotentialNet",
    "MonotoneGradientNet",
    "QuadraticPotential",
    "check_context",
    "choose",
    "require_positive",
]

T = TypeVar("T")


def choose(options: dict[str, T], value: str, name: str) -> T:
    r"""``options[value]``, or a :class:`ValueError` naming ``name`` and the valid choices.

    Example:
        >>> choose({"tanh": 1}, "tanh", "activation")
        1
    """
    if value not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}; got {value!r}")
    return options[value]


def check_context(net: MonotoneGradientNet, context: Tensor | None) -> Tensor:
    r"""``context`` ``[..., C]`` as a conditional network ``net`` sees it, standardised
    (:meth:`MonotoneGradientNet.initialize_context`); for an unconditional one, ``context``
    must be ``None`` (returned as is). Otherwise a :class:`ValueError` naming ``context`` and
    what was expected.

    Example:
        >>> from otflows import MMGN
        >>> check_context(MMGN(2), None) is None
        True
    """
    C = net.context_features
    if C is None:
        if context is not None:
            raise ValueError(f"context must be None: {type(net).__name__} is unconditional")
        return context  # type: ignore[return-value]
    if context is None or context.shape[-1:] != (C,):
        got = None if context is None else tuple(context.shape)
        raise ValueError(f"context must have shape [..., {C}]; got {got}")
    return (context - net.context_shift) / net.context_scale


SOFTPLUS_OF_ONE = math.log(math.e - 1.0)  # softplus⁻¹(1): a positive gate that starts at 1


def context_network(context_features: int, context_hidden: int, out_features: int) -> nn.Module:
    r"""The context network of a conditional monotone gradient network: ``c [..., C]`` →
    ``[..., out_features]`` through one tanh layer of ``context_hidden`` units. Its last layer
    starts at zero, so every context starts at the same map.

    Example:
        >>> net = context_network(2, 8, 5)
        >>> net(torch.randn(3, 2)).abs().max().item()
        0.0
    """
    require_positive(context_features, "context_features")
    out = nn.Linear(context_hidden, out_features)
    nn.init.zeros_(out.weight)
    nn.init.zeros_(out.bias)
    return nn.Sequential(nn.Linear(context_features, context_hidden), nn.Tanh(), out)


def require_positive(value: int, name: str) -> None:
    r"""Raises a :class:`ValueError` naming ``name`` unless ``value >= 1``."""
    if value < 1:
        raise ValueError(f"{name} must be >= 1; got {value}")


class QuadraticPotential(nn.Module):
    r"""The convex quadratic :math:`q(x) = a^\top x + \frac12 \|V x\|^2`.

    Its gradient :math:`a + V^\top V x` has the constant Jacobian :math:`V^\top V`, symmetric
    positive semi-definite. It is the ``a + VᵀVx`` term of the MGN papers, shared here by every
    network so that any of them can start from an affine (e.g. Gaussian) map.

    Arguments:
        features: The dimension ``D``.
        rank: The number of rows ``r`` of ``V`` (default ``D``).

    Example:
        >>> q = QuadraticPotential(3)
        >>> q.gradient(torch.zeros(5, 3)).shape
        torch.Size([5, 3])
    """

    def __init__(self, features: int, rank: int | None = None):
        super().__init__()
        rank = features if rank is None else rank
        self.a = nn.Parameter(torch.zeros(features))
        self.V = nn.Parameter(torch.randn(rank, features) / math.sqrt(features))

    def gradient(self, x: Tensor) -> Tensor:
        r"""``[..., D] -> [..., D]``: :math:`a + V^\top V x`."""
        return self.a + (x @ self.V.T) @ self.V

    def potential(self, x: Tensor) -> Tensor:
        r"""``[..., D] -> [...]``: :math:`a^\top x + \frac12\|Vx\|^2`."""
        return x @ self.a + 0.5 * (x @ self.V.T).square().sum(-1)


class ContextQuadratic(nn.Module):
    r"""The convex quadratic :math:`\tfrac12\|L(c)^\top x\|^2` of a conditional network.

    :math:`L(c) = L_0 + \Delta L(c)` ``[D, R]``: its Hessian :math:`L(c) L(c)^\top` is a
    positive semi-definite matrix per context, so the map's linear part can turn and stretch
    with ``c`` (as between Gaussians whose covariance changes with ``c``), which per-context
    biases and weights of fixed ridges reach only roughly. :math:`\Delta L` comes from a
    context network (:func:`context_network`, zero at the start); :math:`L_0` is small
    (entries of standard deviation :math:`0.1/\sqrt D`) and not zero, since the gradient in
    :math:`L` at :math:`L = 0` is. In the Jacobian's factors the columns of :math:`L(c)` join
    the per-sample low-rank columns.

    Arguments:
        features: The dimension ``D``.
        context_features: The context's dimension ``C``.
        context_hidden: The width of the context network.
        rank: The number of columns ``R`` of :math:`L` (default ``D``).

    Example:
        >>> q = ContextQuadratic(3, 2)
        >>> L = q.columns(torch.randn(5, 2))
        >>> L.shape, q.gradient(torch.randn(5, 3), L).shape
        (torch.Size([5, 3, 3]), torch.Size([5, 3]))
    """

    def __init__(
        self,
        features: int,
        context_features: int,
        context_hidden: int = 64,
        rank: int | None = None,
    ):
        super().__init__()
        rank = features if rank is None else rank
        self.L0 = nn.Parameter(0.1 * torch.randn(features, rank) / math.sqrt(features))
        self.net = context_network(context_features, context_hidden, features * rank)

    def columns(self, context: Tensor) -> Tensor:
        r""":math:`L(c)`: ``[..., C] -> [..., D, R]``."""
        return self.L0 + self.net(context).unflatten(-1, self.L0.shape)

    @staticmethod
    def potential(x: Tensor, L: Tensor) -> Tensor:
        r"""``x [..., D]``, ``L [..., D, R]`` -> ``[...]``: :math:`\tfrac12\|L^\top x\|^2`."""
        return 0.5 * torch.einsum("...dr,...d->...r", L, x).square().sum(-1)

    @staticmethod
    def gradient(x: Tensor, L: Tensor) -> Tensor:
        r"""``x [..., D]``, ``L [..., D, R]`` -> ``[..., D]``: :math:`L L^\top x`."""
        return torch.einsum("...dr,...r->...d", L, torch.einsum("...dr,...d->...r", L, x))


class MonotoneGradientNet(RecordsArguments, nn.Module, ABC):
    r"""A monotone gradient field :math:`G = \nabla\varphi` of a convex potential :math:`\varphi`.

    Subclasses implement :meth:`gradient` for inputs of shape ``[..., D]`` (one point ``[D]``
    or a batch ``[B, D]``), so that :func:`torch.func.jacfwd` and :func:`torch.func.vmap` apply.
    Their Jacobian :math:`J_G(x)` is symmetric positive semi-definite for every ``x`` and every
    parameter value; each subclass states its form.

    A *conditional* network (:attr:`context_features` set) is a family :math:`G(\cdot\,; c) =
    \nabla_x\varphi(\cdot\,; c)`, convex in ``x`` for every context ``c``: each method then
    takes ``context`` ``[..., C]``, broadcast against ``x``'s leading dimensions. An
    unconditional network takes ``context=None`` (:class:`otflows.BrenierTransform` checks).
    Its networks see the context standardised, :math:`(c - m)/s` per feature, with :math:`m`,
    :math:`s` set from data by :meth:`initialize_context` (as a transform's first training
    batch does), so contexts of any location and scale (a dose in mg, a year) meet
    pre-activations of order one.

    Attributes:
        features: The dimension ``D``.
        context_features: The context's dimension ``C`` of a conditional network, else ``None``.
        arguments: The constructor's arguments, which rebuild the network (JSON-serialisable;
            :class:`otflows.validation.arguments.RecordsArguments`).
        quadratic: The :class:`QuadraticPotential` term :math:`a + V^\top V x`.
    """

    name: str = ""
    potential_nodes: int = 64
    quadratic: QuadraticPotential
    context_features: int | None = None
    context_shift: Tensor  # [C], buffers of a conditional network
    context_scale: Tensor

    def __init__(self, features: int, rank: int | None):
        super().__init__()
        if not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be a positive integer; got {features!r}")
        self.features = features
        self.quadratic = QuadraticPotential(features, rank)

    def _take_context(self, context_features: int) -> None:
        r"""Makes the network conditional on contexts ``[..., C]`` (``C = context_features``),
        with the standardisation's buffers at the identity."""
        require_positive(context_features, "context_features")
        self.context_features = context_features
        self.register_buffer("context_shift", torch.zeros(context_features))
        self.register_buffer("context_scale", torch.ones(context_features))

    @torch.no_grad()
    def initialize_context(self, context: Tensor) -> None:
        r"""Sets the contexts' standardisation from ``context`` ``[B, C]``: each feature's mean
        and standard deviation (1 where it is constant)."""
        self.context_shift.copy_(context.mean(0))
        scale = context.std(0, unbiased=False)
        self.context_scale.copy_(torch.where(scale > 0, scale, torch.ones_like(scale)))

    @abstractmethod
    def gradient(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        r"""The field :math:`G(x)` (:math:`G(x; c)`), ``[..., D] -> [..., D]``."""

    @property
    @abstractmethod
    def input_weights(self) -> list[Tensor]:
        r"""The weights through which the input reaches the non-quadratic terms of :math:`G`:
        scaled by :math:`\epsilon`, they make those terms a constant plus
        :math:`O(\epsilon^2)` (:meth:`shrink_`)."""

    @torch.no_grad()
    def shrink_(self, factor: float) -> None:
        r"""Scales :attr:`input_weights` by ``factor``, so :math:`G` becomes its affine quadratic
        term :math:`a + V^\top V x` plus a constant and :math:`O(\text{factor}^2)` terms, on
        every input: the network starts at an affine map while every parameter's gradient stays
        alive (the weights' directions are kept; a zero would freeze a squared term)."""
        for weight in self.input_weights:
            weight.mul_(factor)

    @property
    def ridge_rank(self) -> int | None:
        r"""The rank :math:`m` of :math:`J_G - V^\top V` when :meth:`gradient_and_factors`
        gives it in factored form, else ``None`` (the Jacobian has no known structure)."""
        return None

    def gradient_and_factors(
        self, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, RidgeFactors]:
        r""":math:`G(x)` ``[B, D]`` and the factors of
        :math:`J_G(x) = V^\top V + U^\top \operatorname{diag}(d(x))\, U + E(x) E(x)^\top`
        (:class:`otflows.linalg.RidgeFactors`), for networks whose :attr:`ridge_rank` is set."""
        raise NotImplementedError(f"{type(self).__name__} has no factored Jacobian")

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        r"""Same as :meth:`gradient`."""
        return self.gradient(x, context)

    def potential_and_gradient(
        self, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        r""":math:`\varphi(x)` ``[...]`` and :math:`G(x)` ``[..., D]`` together (one pass where
        the network allows it)."""
        return self.potential(x, context), self.gradient(x, context)

    def potential(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        r"""The potential :math:`\varphi(x) - \varphi(0)`, ``[..., D] -> [...]``.

        Without a closed form it is the line integral
        :math:`\int_0^1 \langle G(s x), x\rangle\, ds` by Gauss–Legendre quadrature with
        :attr:`potential_nodes` nodes, whose error falls like :math:`\rho^{-2n}` for a field
        analytic in the Bernstein ellipse :math:`E_\rho` around the segment
        (:func:`otflows.linalg.gauss_legendre`); the tests check it against closed forms.
        """
        s, w = gauss_legendre(self.potential_nodes, dtype=x.dtype, device=x.device)
        points = s.view(-1, *([1] * x.dim())) * x  # [n, ..., D]
        G = self.gradient(points, context)  # a context [..., C] broadcasts over the nodes
        return torch.einsum("n,n...->...", w, (G * x).sum(-1))


class ConvexPotentialNet(MonotoneGradientNet):
    r"""A network that defines the convex potential :math:`\varphi` itself (an ICNN); the
    field :math:`G = \nabla\varphi` is its autodiff gradient (:func:`torch.func.grad`)."""

    @abstractmethod
    def potential(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        r"""The convex potential :math:`\varphi(x)`, ``[..., D] -> [...]``."""

    def gradient(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return grad(lambda x: self.potential(x, context).sum())(x)

    def potential_and_gradient(
        self, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        def total(x: Tensor) -> tuple[Tensor, Tensor]:
            value = self.potential(x, context)
            return value.sum(), value

        G, (_, value) = grad_and_value(total, has_aux=True)(x)
        return value, G
