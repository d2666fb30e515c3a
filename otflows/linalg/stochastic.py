r"""Stochastic log-determinants from Jacobian-vector products: SLQ values, surrogate gradients."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "JacobianOperator",
    "conjugate_gradient",
    "lanczos",
    "rademacher",
    "slq_logdet",
    "slq_logdet_with_surrogate",
]

MatVec = Callable[[Tensor], Tensor]


def rademacher(shape: tuple[int, ...], like: Tensor) -> Tensor:
    r"""Random signs :math:`\pm 1` of ``shape`` with ``like``'s dtype and device.

    Example:
        >>> set(rademacher((100,), torch.zeros(1)).tolist()) <= {-1.0, 1.0}
        True
    """
    return torch.randint(0, 2, shape, device=like.device).to(like.dtype) * 2 - 1


def lanczos(
    A: MatVec, v: Tensor, steps: int, *, rtol: float | None = None, max_steps: int | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Lanczos tridiagonalisation of symmetric operators, one per row, with full
    reorthogonalisation.

    With ``rtol``, the iteration goes on past ``steps`` (up to ``max_steps``) until the
    solution of :math:`A x = v` it implies, :math:`x = \|v\| Q T^{-1} e_1` (the conjugate-
    gradient iterate: CG is Lanczos), has a relative residual
    :math:`\beta_m |e_m^\top T^{-1} e_1| \le \text{rtol}` for every row, so one Krylov basis
    serves both the quadrature and the solve.

    Arguments:
        A: The operators, ``[N, D] -> [N, D]`` (row ``n`` applies :math:`A_n`).
        v: The starting vectors ``[N, D]`` (normalised here).
        steps: The number ``m`` of steps (at most ``D``).
        rtol: If given, the residual tolerance of the implied solve.
        max_steps: The most steps when ``rtol`` is given (default ``D``).

    Returns:
        The tridiagonal matrices :math:`T_m = Q^\top A Q` ``[N, m, m]``, the orthonormal bases
        :math:`Q` ``[N, m, D]`` and the norms of ``v`` ``[N]``.

    Example:
        >>> A = torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64))
        >>> T, Q, _ = lanczos(lambda v: v @ A, torch.ones(1, 5, dtype=torch.float64), 5)
        >>> torch.linalg.eigvalsh(T)[0].round(decimals=6)
        tensor([1., 2., 3., 4., 5.], dtype=torch.float64)
    """
    D = v.shape[-1]
    steps = min(steps, D)
    limit = steps if rtol is None else min(max_steps or D, D)
    norm = v.norm(dim=-1)
    Q = [v / norm[:, None]]
    alpha: list[Tensor] = []
    beta: list[Tensor] = []
    for j in range(limit):
        w = A(Q[-1])
        # rows whose Krylov space is exhausted (q = 0) get a decoupled identity block: it has
        # no weight on e₁, so neither the quadrature nor T⁻¹e₁ sees it, and T stays definite
        exhausted = Q[-1].abs().sum(-1) == 0
        alpha.append(torch.where(exhausted, 1.0, (w * Q[-1]).sum(-1)))
        basis = torch.stack(Q, dim=1)  # [N, j + 1, D]
        for _ in range(2):  # twice is enough (Kahan–Parlett)
            w = w - torch.einsum("njd,nj->nd", basis, torch.einsum("njd,nd->nj", basis, w))
        b = w.norm(dim=-1)
        if j + 1 >= steps and (rtol is None or _solved(alpha, beta, b, rtol, j)):
            break
        if j == limit - 1:
            break
        beta.append(b)
        tiny = torch.finfo(b.dtype).tiny
        Q.append(torch.where(b[:, None] > 0, w / b.clamp_min(tiny)[:, None], 0))
    return _tridiagonal(alpha, beta), torch.stack(Q, dim=1), norm


def _tridiagonal(alpha: list[Tensor], beta: list[Tensor]) -> Tensor:
    T = torch.diag_embed(torch.stack(alpha, dim=-1))
    if beta:
        off = torch.diag_embed(torch.stack(beta, dim=-1), offset=1)
        T = T + off + off.mT
    return T


def _solved(alpha: list[Tensor], beta: list[Tensor], b: Tensor, rtol: float, j: int) -> bool:
    """Whether the implied CG iterate meets ``rtol`` (checked every 5 steps)."""
    if (j + 1) % 5:
        return False
    T = _tridiagonal(alpha, beta)
    y = _first_column_of_inverse(T)
    return bool((b * y[:, -1].abs() <= rtol).all())


def _first_column_of_inverse(T: Tensor) -> Tensor:
    r""":math:`T^{-1} e_1` ``[N, m]`` for the symmetric positive definite Lanczos matrices
    ``[N, m, m]``, by Cholesky (cheaper than LU, and the only factorisation used here)."""
    e1 = torch.zeros(T.shape[:-1], dtype=T.dtype, device=T.device)
    e1[:, 0] = 1
    return torch.cholesky_solve(e1.unsqueeze(-1), torch.linalg.cholesky(T)).squeeze(-1)


def slq_logdet(A: MatVec, probes: Tensor, steps: int) -> Tensor:
    r"""Stochastic Lanczos quadrature of :math:`\log\det A = \operatorname{tr}\log A`.

    .. math:: \log\det A \approx \frac1P \sum_{p=1}^P \|v_p\|^2 \sum_j \tau_{pj}^2 \log\theta_{pj}

    where :math:`\theta_{pj}, \tau_{pj}` are the eigenvalues and first eigenvector components
    of the Lanczos matrix :math:`T_m` from :math:`v_p`. With Rademacher probes the estimate's
    standard deviation is :math:`\sqrt{2\sum_{i\ne j}(\log A)_{ij}^2 / P}`, and the
    quadrature error of each probe falls like :math:`\rho^{-2m}`,
    :math:`\rho = (\sqrt\kappa + 1)/(\sqrt\kappa - 1)` for condition number :math:`\kappa`
    (Ubaru, Chen, Saad, SIAM J. Matrix Anal. Appl. 2017): 30 steps suit :math:`\kappa` up to
    about :math:`10^3`, where 10 are biased.

    Arguments:
        A: Symmetric positive definite operators ``[N, D] -> [N, D]``; ``N = B·P`` rows.
        probes: The probes ``[P, B, D]``.
        steps: Lanczos steps ``m``.

    Returns:
        The estimates ``[B]`` (no gradient).

    Example:
        >>> A = torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64))
        >>> v = rademacher((1, 1, 3), A)
        >>> round(float(slq_logdet(lambda u: u @ A, v, 3)), 12)  # log 8: exact for m = D here
        2.07944154168
    """
    P, B, D = probes.shape
    with torch.no_grad():
        T, _, norm = lanczos(A, probes.reshape(P * B, D), steps)
        return _quadrature(T, norm).reshape(P, B).mean(0)


def _quadrature(T: Tensor, norm: Tensor) -> Tensor:
    r""":math:`\|v\|^2 e_1^\top \log(T) e_1` per row."""
    theta, S = torch.linalg.eigh(T)
    theta = theta.clamp_min(torch.finfo(theta.dtype).tiny)
    return (S[:, 0, :].square() * theta.log()).sum(-1) * norm.square()


def conjugate_gradient(
    A: MatVec, b: Tensor, rtol: float, max_iter: int, precondition: MatVec | None = None
) -> tuple[Tensor, Tensor]:
    r"""Solves :math:`A_n x_n = b_n` for symmetric positive definite operators, row by row.

    Each row stops when :math:`\|b_n - A_n x_n\| \le \text{rtol}\,\|b_n\|`. With
    ``precondition`` :math:`M \approx A^{-1}` (symmetric positive definite), the iteration is
    preconditioned CG: it converges in as many steps as :math:`MA`'s spread of eigenvalues
    needs, not :math:`A`'s.

    Arguments:
        A: The operators ``[N, D] -> [N, D]``.
        b: The right-hand sides ``[N, D]``.
        rtol: The relative residual tolerance.
        max_iter: The most iterations.
        precondition: :math:`M`, ``[N, D] -> [N, D]`` (``None``: the identity).

    Returns:
        The solutions ``[N, D]`` and the relative residuals ``[N]``.

    Example:
        >>> A = torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64))
        >>> x, residual = conjugate_gradient(lambda v: v @ A, torch.ones(1, 3).double(), 1e-12, 10)
        >>> x
        tensor([[1.0000, 0.5000, 0.2500]], dtype=torch.float64)
    """
    M = precondition if precondition is not None else (lambda v: v)
    with torch.no_grad():
        x = torch.zeros_like(b)
        r = b.clone()
        z = M(r)
        p = z.clone()
        rz = (r * z).sum(-1)
        tiny = torch.finfo(b.dtype).tiny
        b_norm = b.norm(dim=-1).clamp_min(tiny)
        residual = b.norm(dim=-1)
        for _ in range(max_iter):
            active = residual > rtol * b_norm
            if not bool(active.any()):
                break
            Ap = A(p)
            step = torch.where(active, rz / (p * Ap).sum(-1).clamp_min(tiny), 0)
            x = x + step[:, None] * p
            r = r - step[:, None] * Ap
            z = M(r)
            rz_new = (r * z).sum(-1)
            p = torch.where(active[:, None], z + (rz_new / rz.clamp_min(tiny))[:, None] * p, p)
            rz = torch.where(active, rz_new, rz)
            residual = torch.where(active, r.norm(dim=-1), residual)
        return x, residual / b_norm


def slq_logdet_with_surrogate(
    A: MatVec, A_graph: MatVec, probes: Tensor, steps: int, rtol: float, max_steps: int
) -> Tensor:
    r"""The SLQ estimate of :math:`\log\det A` carrying the gradient of CP-Flow's surrogate.

    .. math:: s = \frac1P\sum_p \operatorname{sg}(A^{-1} v_p)^\top A\, v_p, \quad
        \nabla s = \frac1P\sum_p v_p^\top A^{-1} (\nabla A) v_p,
        \quad \mathbb E[\nabla s] = \operatorname{tr}(A^{-1}\nabla A) = \nabla\log\det A

    (Huang et al., Convex Potential Flows, 2021). One Lanczos run per probe gives both
    :math:`T_m` for the quadrature and :math:`A^{-1}v_p = \|v_p\| Q T_m^{-1} e_1` (the CG
    iterate), run until that solve reaches ``rtol``; the value is returned as
    ``slq + s - s.detach()``, so it reads as the estimate and differentiates as the surrogate.

    Arguments:
        A: The operators without gradient tracking, ``[N, D] -> [N, D]``, ``N = B·P``.
        A_graph: The same operators, on the autograd graph.
        probes: ``[P, B, D]``.
        steps: The least number of Lanczos steps (for the quadrature).
        rtol: The relative residual tolerance of the solve.
        max_steps: The most Lanczos steps.

    Returns:
        ``[B]``.
    """
    P, B, D = probes.shape
    v = probes.reshape(P * B, D)
    with torch.no_grad():
        T, Q, norm = lanczos(A, v, steps, rtol=rtol, max_steps=max_steps)
        value = _quadrature(T, norm)
        w = norm[:, None] * torch.einsum("nmd,nm->nd", Q, _first_column_of_inverse(T))
    surrogate = (w * A_graph(v)).sum(-1)
    return (value + surrogate - surrogate.detach()).reshape(P, B).mean(0)


class _CGSolve(torch.autograd.Function):
    r""":math:`x = A^{-1} r` by CG, differentiable in ``r`` (:math:`\partial x/\partial r =
    A^{-1}`, symmetric), as the dense and structured factors' solves are."""

    @staticmethod
    def forward(ctx, r: Tensor, operator: JacobianOperator) -> Tensor:
        ctx.operator = operator
        return conjugate_gradient(operator.matvec, r, operator.cg_rtol, operator.cg_max_iter)[0]

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        operator = ctx.operator
        return conjugate_gradient(operator.matvec, grad, operator.cg_rtol, operator.cg_max_iter)[
            0
        ], None


class JacobianOperator:
    r"""The Jacobians :math:`J_f(x_b)` of a row-wise map as a matrix-free operator.

    Products :math:`J v` come from forward-mode autodiff (:func:`torch.func.jvp`), so
    :math:`J` is never formed: :meth:`solve` runs conjugate gradients and :meth:`logdet` returns
    the SLQ estimate carrying, when gradients are recorded, the gradient of the CG surrogate
    (:func:`slq_logdet_with_surrogate`): an unbiased estimate of :math:`\nabla\log\det J`.

    Arguments:
        f: A map applied row by row, ``[N, D] -> [N, D]``, with symmetric positive definite
            Jacobians.
        x: The points ``[B, D]``.
        probes: Rademacher probes per point ``P``.
        lanczos_steps: Lanczos steps ``m`` of the SLQ estimate.
        cg_rtol: The relative residual tolerance of the solves (CG, and the Lanczos solve of
            the surrogate).
        cg_max_iter: The most CG iterations (and Lanczos steps).

    Example:
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> J = JacobianOperator(lambda x: x @ A, torch.zeros(1, 2, dtype=torch.float64))
        >>> J.solve(torch.tensor([[1.0, 0.0]], dtype=torch.float64))
        tensor([[ 0.6000, -0.2000]], dtype=torch.float64)
    """

    def __init__(
        self,
        f: Callable[[Tensor], Tensor],
        x: Tensor,
        *,
        probes: int = 1,
        lanczos_steps: int = 30,
        cg_rtol: float = 1e-3,
        cg_max_iter: int = 200,
    ):
        self.f, self.x = f, x
        self.probes, self.lanczos_steps = probes, lanczos_steps
        self.cg_rtol, self.cg_max_iter = cg_rtol, cg_max_iter

    def matvec(self, v: Tensor) -> Tensor:
        r""":math:`J v` without gradient tracking, ``[k·B, D] -> [k·B, D]`` (rows cycle over
        the points)."""
        with torch.no_grad():
            return self._jvp(self.x.detach(), v)

    def _jvp(self, x: Tensor, v: Tensor) -> Tensor:
        x = x.repeat(v.shape[0] // x.shape[0], 1)
        return torch.func.jvp(self.f, (x,), (v,))[1]

    def solve(self, r: Tensor) -> Tensor:
        r""":math:`J^{-1} r` by CG, ``[B, D] -> [B, D]``, differentiable in ``r``."""
        return _CGSolve.apply(r, self)

    def logdet(self) -> Tensor:
        r"""The SLQ estimate of :math:`\log\det J` ``[B]``, with the surrogate's gradient."""
        probes = rademacher((self.probes, *self.x.shape), self.x)
        if not torch.is_grad_enabled():
            return slq_logdet(self.matvec, probes, self.lanczos_steps)
        return slq_logdet_with_surrogate(
            self.matvec,
            lambda v: self._jvp(self.x, v),
            probes,
            self.lanczos_steps,
            self.cg_rtol,
            self.cg_max_iter,
        )
