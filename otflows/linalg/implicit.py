r"""The solution of :math:`T(x; \theta) = y` in the autograd graph, differentiated implicitly."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["JacobianSlot", "implicit_solution"]


class Factor(Protocol):
    def solve(self, r: Tensor) -> Tensor: ...


class JacobianSlot:
    r"""Where the factorised Jacobian :math:`J_T(x^*)` is put once it exists, for the backward
    of :func:`implicit_solution` (the factor is made from the solution it differentiates).

    Attributes:
        factor: The factor (anything with ``solve(r)``: :math:`J^{-1} r`, ``[B, D] -> [B, D]``),
            ``None`` until set.
    """

    factor: Factor | None = None


class _ImplicitSolution(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, Tx: Tensor, y: Tensor, slot: JacobianSlot) -> Tensor:
        ctx.slot = slot
        return x.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, v: Tensor) -> tuple[None, Tensor, Tensor, None]:
        if ctx.slot.factor is None:
            raise RuntimeError(
                "implicit_solution: the Jacobian at the solution was never put in its slot"
            )
        w = ctx.slot.factor.solve(v)  # J⁻ᵀ v = J⁻¹ v, J symmetric
        return None, -w, w, None


def implicit_solution(x: Tensor, Tx: Tensor, y: Tensor) -> tuple[Tensor, JacobianSlot]:
    r"""The solution :math:`x^*` of :math:`T(x; \theta) = y` as a node of the graph whose
    derivatives are the implicit function theorem's,

    .. math:: \frac{\partial x^*}{\partial y} = J^{-1}, \qquad
        \frac{\partial x^*}{\partial \theta} = -J^{-1} \frac{\partial T}{\partial \theta},
        \qquad J = J_T(x^*) \text{ symmetric},

    so the backward turns the gradient :math:`v` reaching :math:`x^*` into :math:`w = J^{-1}v`
    for ``y`` and :math:`-w` for ``Tx``, from which autograd carries it to :math:`\theta` (and
    to a context). Everything computed from the returned tensor (a log-det at
    :math:`x^*`, say) sends its gradient in :math:`x` through :math:`x^*(\theta, y)`, so one
    factorisation of :math:`J` at :math:`x^*` serves both that computation and the backward:
    put it in the returned slot. Differentiable once.

    Arguments:
        x: The solution, without a graph ``[B, D]``.
        Tx: :math:`T(x; \theta)` ``[B, D]`` evaluated with the graph to :math:`\theta`.
        y: The right-hand side ``[B, D]``.

    Returns:
        :math:`x^*` ``[B, D]`` (the value of ``x``) in the graph, and the slot for the factor
        of :math:`J_T(x^*)`.

    Example:
        >>> from otflows.linalg import DenseCholesky
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], requires_grad=True)  # T(x) = A x
        >>> y = torch.tensor([[1.0, 2.0]], requires_grad=True)
        >>> x = torch.linalg.solve(A, y[0]).detach().unsqueeze(0)
        >>> x_star, slot = implicit_solution(x, x @ A.T, y)
        >>> slot.factor = DenseCholesky(A.detach().unsqueeze(0))
        >>> x_star.sum().backward()  # d/dy Σx = A⁻ᵀ1, d/dA Σx = -(A⁻ᵀ1) xᵀ
        >>> w = torch.linalg.solve(A.detach(), torch.ones(2))
        >>> bool(torch.allclose(y.grad[0], w)), bool(torch.allclose(A.grad, -w.outer(x[0])))
        (True, True)
    """
    slot = JacobianSlot()
    return _ImplicitSolution.apply(x.detach(), Tx, y, slot), slot
