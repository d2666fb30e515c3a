r"""Row-wise L-BFGS for batches of smooth convex minimisations (convex conjugates)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from otflows.linalg.newton import InverseResult

__all__ = ["lbfgs_minimize"]

# Hager and Zhang's ε: how far f may rise in an approximate Wolfe step, relative to |f| (f's
# own round-off, from the cancellation in sums like ψ(x) − ⟨x, y⟩, is far above eps·|f|).
APPROXIMATE_WOLFE = 1e-6


def lbfgs_minimize(
    value_and_grad: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    x0: Tensor,
    tolerance: Tensor,
    *,
    max_iter: int = 200,
    memory: int = 8,
    max_halvings: int = 30,
    armijo: float = 1e-4,
    precondition: Callable[[Tensor], Tensor] | None = None,
) -> InverseResult:
    r"""Minimises :math:`B` independent smooth convex functions :math:`f_b` by L-BFGS, all rows
    in one batch.

    Each row keeps its own last ``memory`` pairs :math:`(s, g' - g)`; the two-loop recursion
    with the scaling :math:`s^\top u / u^\top u` of the newest pair gives the direction
    :math:`p`, and a backtracking line search takes the largest
    :math:`t \in \{1, \frac12, \dots\}` with
    :math:`f(x + tp) < f(x) + c\, t\, \nabla f^\top p`, or, where :math:`f` no longer
    resolves that decrease, Hager and Zhang's approximate Wolfe step: :math:`f(x + tp)` within
    round-off of :math:`f(x)` (:math:`10^{-6}|f|`),
    :math:`\nabla f(x + tp)^\top p \le 0.8\, |\nabla f(x)^\top p|` and a smaller gradient, so
    that tolerances near machine precision are reachable. A row stops when
    :math:`\|\nabla f_b\| \le` ``tolerance[b]`` or when no step length decreases it (the
    floating-point floor); finished rows leave the batch. Every iteration costs a few
    gradient evaluations and :math:`O(mD)` per row, against the :math:`O(D^3)` of a Newton
    step, but converges only linearly. For the conjugate
    :math:`\varphi^*(y) = \max_x \langle x, y\rangle - \varphi(x)` the gradient is the
    residual :math:`T(x) - y` (Amos 2023 solves the conjugates of the :math:`W_2` benchmark
    this way); ``precondition`` applies a first guess :math:`H_0` of the inverse Hessian,
    scaled by :math:`s^\top u / u^\top H_0 u`.

    Arguments:
        value_and_grad: ``value_and_grad(x, rows)`` returns :math:`f(x)` ``[n]`` and
            :math:`\nabla f(x)` ``[n, D]`` for the points ``x [n, D]`` of the rows ``rows``
            (indices ``[n]`` into the batch).
        x0: The starting points ``[B, D]``.
        tolerance: The gradient norm each row has to reach ``[B]``.
        max_iter: The most iterations per row.
        memory: The number ``m`` of curvature pairs kept.
        max_halvings: The most step halvings per iteration.
        armijo: The Armijo constant :math:`c \in (0, 1)`.
        precondition: :math:`H_0`, ``[n, D] -> [n, D]`` (symmetric positive definite, shared
            by the rows); ``None`` for the identity.

    Returns:
        An :class:`InverseResult` whose residual is :math:`\|\nabla f\|`; nothing is raised.

    Example:
        >>> A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
        >>> y = torch.tensor([[1.0, 2.0], [-4.0, 0.5]], dtype=torch.float64)
        >>> def value_and_grad(x, rows):  # f(x) = ½xᵀAx − ⟨x, y⟩
        ...     Ax = x @ A
        ...     return 0.5 * (x * Ax).sum(-1) - (x * y[rows]).sum(-1), Ax - y[rows]
        >>> out = lbfgs_minimize(value_and_grad, torch.zeros_like(y), torch.full((2,), 1e-12))
        >>> torch.allclose(out.x, torch.linalg.solve(A, y.T).T), bool(out.converged.all())
        (True, True)
    """
    with torch.no_grad():
        B, D = x0.shape
        rows = torch.arange(B, device=x0.device)
        x_out = x0.clone()
        f, g = value_and_grad(x0, rows)
        residual = g.norm(dim=-1)
        iterations = torch.zeros(B, dtype=torch.long, device=x0.device)
        x, tol = x0, tolerance
        S = x0.new_zeros(memory, B, D)  # steps s
        U = x0.new_zeros(memory, B, D)  # gradient changes u = g' − g
        rho = x0.new_zeros(memory, B)  # 1 / sᵀu, 0 for an unused or non-convex pair
        scale = x0.new_ones(B)  # the initial inverse Hessian scale sᵀu / uᵀu
        for k in range(max_iter):
            active = residual[rows] > tol
            if not bool(active.all()):  # finished rows leave the batch
                rows, x, f, g, tol, scale = (v[active] for v in (rows, x, f, g, tol, scale))
                S, U, rho = S[:, active], U[:, active], rho[:, active]
            if rows.numel() == 0:
                break
            p, slope = _direction(g, S, U, rho, scale, k, memory, precondition)
            step = (x, f, g, p, slope, residual[rows])
            x_new, f_new, g_new, accepted = _line_search(
                value_and_grad, rows, *step, armijo, max_halvings
            )
            s, u = x_new - x, g_new - g
            su = (s * u).sum(-1)
            curved = su > torch.finfo(x.dtype).eps * s.norm(dim=-1) * u.norm(dim=-1)
            j = k % memory
            S[j], U[j] = s * curved[:, None], u * curved[:, None]
            rho[j] = torch.where(curved, 1.0 / su.where(curved, 1.0), 0.0)
            Hu = u if precondition is None else precondition(u)
            scale = torch.where(curved, su / (u * Hu).sum(-1).where(curved, 1.0), scale)
            x, f, g = x_new, f_new, g_new
            x_out[rows] = x
            iterations[rows] += accepted.long()
            residual[rows] = g.norm(dim=-1)
            # a row where no step length decreased f is at the floating-point floor: it stops
            tol = torch.where(accepted, tol, torch.inf)
        return InverseResult(x_out, residual, tolerance, iterations, residual <= tolerance)


def _direction(
    g: Tensor,
    S: Tensor,
    U: Tensor,
    rho: Tensor,
    scale: Tensor,
    k: int,
    memory: int,
    precondition: Callable[[Tensor], Tensor] | None,
) -> tuple[Tensor, Tensor]:
    r"""The L-BFGS direction :math:`p` ``[n, D]`` of iteration ``k`` at the gradients ``g``
    ``[n, D]``, by the two-loop recursion over the pairs ``S``, ``U`` ``[m, n, D]`` (newest
    first), and its slope :math:`g^\top p` ``[n]``; steepest descent where round-off made it
    uphill."""
    q, alpha = g.clone(), []
    newest = [(k - 1 - i) % memory for i in range(min(k, memory))]
    for j in newest:
        a = rho[j] * (S[j] * q).sum(-1)
        q -= a[:, None] * U[j]
        alpha.append(a)
    p = scale[:, None] * (q if precondition is None else precondition(q))
    for j, a in zip(reversed(newest), reversed(alpha), strict=True):
        b = rho[j] * (U[j] * p).sum(-1)
        p += (a - b)[:, None] * S[j]
    p = -p
    slope = (g * p).sum(-1)
    uphill = slope >= 0  # (only from round-off) fall back to steepest descent
    p[uphill] = -g[uphill]
    slope[uphill] = -g[uphill].square().sum(-1)
    return p, slope


def _line_search(
    value_and_grad: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    rows: Tensor,
    x: Tensor,
    f: Tensor,
    g: Tensor,
    p: Tensor,
    slope: Tensor,
    residual: Tensor,
    armijo: float,
    max_halvings: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""The backtracking line search of :func:`lbfgs_minimize` along ``p`` from ``x``: each
    row's new point, value and gradient, and whether a step length was accepted ``[n]``."""
    t = torch.ones_like(f)
    x_new, f_new, g_new = x.clone(), f.clone(), g.clone()
    accepted = torch.zeros_like(rows, dtype=torch.bool)
    for _ in range(max_halvings):
        pending = (~accepted).nonzero().squeeze(1)
        x_t = x[pending] + t[pending, None] * p[pending]
        f_t, g_t = value_and_grad(x_t, rows[pending])
        ok = (f_t <= f[pending] + armijo * t[pending] * slope[pending]) & (f_t < f[pending])
        # near the minimum f stops resolving the decrease: the approximate Wolfe test accepts
        # a step within round-off of f that has not overshot along p, if it lowers the
        # gradient (so that rows at the floor stop)
        level = f_t <= f[pending] + APPROXIMATE_WOLFE * f[pending].abs()
        level &= (g_t * p[pending]).sum(-1) <= -0.8 * slope[pending]
        ok |= level & (g_t.norm(dim=-1) < residual[pending])
        done = pending[ok]
        x_new[done], f_new[done], g_new[done] = x_t[ok], f_t[ok], g_t[ok]
        accepted[done] = True
        if bool(accepted.all()):
            break
        t[pending[~ok]] /= 2.0
    return x_new, f_new, g_new, accepted
