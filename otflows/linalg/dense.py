r"""Dense Jacobians by forward-mode autodiff; log-determinants and solves by Cholesky factors."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, cholesky_solve
from torch.func import jacfwd, vmap

__all__ = ["batched_jacobian", "logdet_cholesky", "solve_cholesky"]


def batched_jacobian(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    r"""The Jacobians :math:`J_f(x_b)` of a map applied row by row.

    ``f`` must map one point ``[D]`` to ``[D]``; it is vectorised with :func:`torch.func.vmap`
    and differentiated with :func:`torch.func.jacfwd` (``D`` forward passes), so the result
    stays differentiable with respect to the parameters ``f`` closes over.

    Arguments:
        f: A map ``[D] -> [D]``.
        x: Points ``[B, D]``.

    Returns:
        The Jacobians ``[B, D, D]``, ``J[b, i, j] = ∂f_i / ∂x_j`` at ``x[b]``.

    Example:
        >>> A = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
        >>> batched_jacobian(lambda x: A @ x, torch.zeros(4, 2)).shape
        torch.Size([4, 2, 2])
    """
    return vmap(jacfwd(f))(x)


def logdet_cholesky(L: Tensor) -> Tensor:
    r"""The log-determinant of :math:`J = L L^\top` from its Cholesky factor.

    .. math:: \log\det J = 2 \sum_i \log L_{ii}

    Arguments:
        L: Lower-triangular factors ``[..., D, D]`` with a positive diagonal.

    Returns:
        The log-determinants ``[...]``.

    Example:
        >>> J = torch.diag(torch.tensor([2.0, 3.0]))
        >>> logdet_cholesky(torch.linalg.cholesky(J))  # log 6
        tensor(1.7918)
    """
    return 2.0 * L.diagonal(dim1=-2, dim2=-1).log().sum(-1)


def solve_cholesky(L: Tensor, r: Tensor) -> Tensor:
    r"""Solves :math:`L L^\top x = r` for vectors.

    Arguments:
        L: Lower-triangular factors ``[B, D, D]``.
        r: Right-hand sides ``[B, D]``.

    Returns:
        The solutions ``[B, D]``.

    Example:
        >>> L = torch.linalg.cholesky(torch.diag(torch.tensor([2.0, 4.0])))[None]
        >>> solve_cholesky(L, torch.tensor([[2.0, 2.0]]))
        tensor([[1.0000, 0.5000]])
    """
    return cholesky_solve(r.unsqueeze(-1), L).squeeze(-1)
