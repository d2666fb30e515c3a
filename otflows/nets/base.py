r"""The interface every monotone gradient network shares, and the quadratic term they all carry."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TypeVar

import torch
from torch import Tensor, nn
from torch.func import grad, grad_and_value

from otflows.arguments import RecordsArguments
from otflows.linalg.quadrature import gauss_legendre
from otflows.linalg.structured import RidgeFactors

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
    r"""``context`` ``[..., C]`` as a conditional network ``net`` needs it; for an
    unconditional one, ``context`` must be ``None`` (returned as is). Otherwise a
    :class:`ValueError` naming ``context`` and what was expected.

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
    return context


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

    Attributes:
        features: The dimension ``D``.
        context_features: The context's dimension ``C`` of a conditional network, else ``None``.
        arguments: The constructor's arguments, which rebuild the network (JSON-serialisable;
            :class:`otflows.arguments.RecordsArguments`).
        quadratic: The :class:`QuadraticPotential` term :math:`a + V^\top V x`.
    """

    name: str = ""
    potential_nodes: int = 64
    quadratic: QuadraticPotential
    context_features: int | None = None

    def __init__(self, features: int, rank: int | None):
        super().__init__()
        if not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be a positive integer; got {features!r}")
        self.features = features
        self.quadratic = QuadraticPotential(features, rank)

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
