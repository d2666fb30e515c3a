r"""Dense Jacobians by forward-mode autodiff, and their Cholesky factorisation."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import jacfwd, vmap

__all__ = ["DenseCholesky", "batched_jacobian", "logdet_cholesky", "logdet_spd"]


def batched_jacobian(f: Callable[..., Tensor], x: Tensor, *rows: Tensor) -> tuple[Tensor, Tensor]:
    r"""The Jacobians :math:`J_f(x_b)` of a map applied row by row, and the values :math:`f(x_b)`.

    ``f`` must map one point ``[D]`` to ``[D]``; it is vectorised with :func:`torch.func.vmap`
    and differentiated with :func:`torch.func.jacfwd` (``D`` forward passes), so the result
    stays differentiable with respect to the parameters ``f`` closes over. Points are taken
    in chunks of at most :math:`2^{20}/D^2` (all of them at small ``D``, one at a time at
    ``D = 1024``), which bounds the memory of the ``D`` simultaneous forward passes.

    Arguments:
        f: A map ``[D] -> [D]``; ``f(x, *rows)`` with the rows' other arguments.
        x: Points ``[B, D]``.
        rows: Other per-row arguments of ``f`` (e.g. contexts ``[B, C]``), not differentiated.

    Returns:
        The Jacobians ``[B, D, D]``, ``J[b, i, j] = ∂f_i / ∂x_j`` at ``x[b]``, and ``f(x)``
        ``[B, D]``.

    Example:
        >>> A = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
        >>> J, fx = batched_jacobian(lambda x: A @ x, torch.ones(4, 2))
        >>> J.shape, fx[0]
        (torch.Size([4, 2, 2]), tensor([3., 3.]))
    """

    def value_twice(x: Tensor, *rows: Tensor) -> tuple[Tensor, Tensor]:  # and kept as aux
        y = f(x, *rows)
        return y, y

    chunk = max(1, 2**20 // x.shape[-1] ** 2)
    return vmap(jacfwd(value_twice, has_aux=True), chunk_size=chunk)(x, *rows)


def logdet_cholesky(L: Tensor) -> Tensor:
    r"""The log-determinant of :math:`L L^\top` from its Cholesky factor,
    :math:`2 \sum_i \log L_{ii}`, ``[..., D, D] -> [...]``.

    Example:
        >>> logdet_cholesky(torch.linalg.cholesky(torch.diag(torch.tensor([2.0, 3.0]))))
        tensor(1.7918)
    """
    return 2.0 * L.diagonal(dim1=-2, dim2=-1).log().sum(-1)


class _LogdetSPD(torch.autograd.Function):
    r""":math:`\log\det M` from a given Cholesky factor, with the gradient :math:`M^{-1}` by
    ``cholesky_inverse``: one :math:`O(D^3)` step instead of the backward of the
    factorisation."""

    @staticmethod
    def forward(ctx, M: Tensor, L: Tensor) -> Tensor:
        ctx.save_for_backward(L)
        return logdet_cholesky(L)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (L,) = ctx.saved_tensors
        return grad[..., None, None] * torch.cholesky_inverse(L), None


def logdet_spd(M: Tensor, L: Tensor) -> Tensor:
    r""":math:`\log\det M` ``[...]`` of symmetric positive definite ``M`` ``[..., D, D]`` from
    its Cholesky factor ``L``; gradients flow to ``M`` (as :math:`M^{-1}`), not to ``L``.

    Example:
        >>> M = torch.diag(torch.tensor([2.0, 3.0])).requires_grad_()
        >>> logdet_spd(M, torch.linalg.cholesky(M)).backward()
        >>> M.grad.diagonal()
        tensor([0.5000, 0.3333])
    """
    return _LogdetSPD.apply(M, L.detach())


class DenseCholesky:
    r"""Symmetric positive definite matrices :math:`J = L L^\top`, factorised once.

    Costs :math:`O(D^3)` per matrix; :meth:`logdet` and :meth:`solve` reuse the factor.

    Arguments:
        J: The matrices ``[B, D, D]``.

    Example:
        >>> factor = DenseCholesky(torch.diag(torch.tensor([2.0, 4.0]))[None])
        >>> factor.solve(torch.tensor([[2.0, 2.0]])), factor.logdet()
        (tensor([[1.0000, 0.5000]]), tensor([2.0794]))
    """

    def __init__(self, J: Tensor):
        self.J = J
        self.L = torch.linalg.cholesky(J)

    def logdet(self) -> Tensor:
        r""":math:`\log\det J`, ``[B]``."""
        return logdet_spd(self.J, self.L)

    def solve(self, r: Tensor) -> Tensor:
        r""":math:`J^{-1} r`, ``[B, D] -> [B, D]``."""
        return torch.cholesky_solve(r.unsqueeze(-1), self.L).squeeze(-1)
