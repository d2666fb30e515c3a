r"""The inverse of a Brenier transform: :math:`T(x) = y` solved row by row by damped Newton
(on the factored Jacobian, or matrix-free by conjugate gradients) or by L-BFGS on the
conjugate's convex objective."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from otflows.linalg import (
    DenseCholesky,
    InverseResult,
    conjugate_gradient,
    lbfgs_minimize,
    newton_solve,
)

if TYPE_CHECKING:
    from otflows.transforms.brenier import BrenierTransform

__all__ = [
    "INVERSE_RTOL",
    "LBFGS_ITER",
    "NEWTON_CG_FORCING",
    "SOLVE_METHODS",
    "context_rows",
    "solve",
]

# Residual tolerances ‖T(x) − y‖ ≤ rtol·(1 + ‖y‖) of the inverse, per dtype.
INVERSE_RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}
SOLVE_METHODS = ("newton", "newton-cg", "lbfgs")
# Inexact Newton ("newton-cg"): each direction solves J_T d = r by preconditioned CG to this
# relative residual. The merit then still falls along d at least (1 - η) as fast as along the
# exact direction, and the final residual is T's own, so the solution's tolerance is unchanged.
NEWTON_CG_FORCING = 0.1
# L-BFGS converges linearly: it may take this many times the inverse's Newton steps.
LBFGS_ITER = 10


def solve(
    T: BrenierTransform,
    y: Tensor,
    x0: Tensor | None = None,
    rtol: float | None = None,
    method: str = "newton",
    context: Tensor | None = None,
    masked_iter: int | None = None,
) -> InverseResult:
    r"""Solves :math:`T(x) = y` (:math:`T(x; c) = y`) for a Brenier transform ``T`` row by row
    without raising; see :class:`otflows.linalg.InverseResult`.

    Arguments:
        T: The transform.
        y: The right-hand sides ``[B, D]``.
        x0: A warm start ``[B, D]`` (e.g. the previous solution when ``y`` moved a little);
            by default the linearisation at 0, :math:`J_T(0)^{-1}(y - T(0))`.
        rtol: The residual tolerance :math:`\|T(x) - y\| \le \text{rtol}\,(1 + \|y\|)`;
            by default the inverse's (:math:`10^{-10}` in float64, :math:`10^{-5}` in
            float32).
        method: ``"newton"`` (damped Newton on the factored Jacobian,
            :func:`otflows.linalg.newton_solve`: quadratic convergence, for tight
            tolerances; rows where no damped step decreases the residual before the step
            limit — far from the solution where :math:`T` bends sharply, or at the
            floating-point floor just above the tolerance — go on by ``"lbfgs"`` from
            there), ``"newton-cg"`` (the same damped Newton, each direction by conjugate
            gradients on Jacobian-vector products to :data:`NEWTON_CG_FORCING`,
            preconditioned by :math:`(V^\top V/s + \gamma I)^{-1}`, the map's quadratic
            part: no Jacobian is assembled or factorised, the cheaper one at large ``D``)
            or ``"lbfgs"`` (L-BFGS on the conjugate's objective
            :math:`\psi(x) - \langle x, y\rangle`, :math:`\psi` the potential,
            :func:`otflows.linalg.lbfgs_minimize`, preconditioned by :math:`J_T^{-1}` at
            the starts' mean: gradients only, no per-row factorisation; the cheaper one
            while :math:`T` is nearly affine, slower once it bends, see
            :class:`otflows.maps.objectives.SemiDual`).
        context: The rows' contexts ``[B, C]`` for a conditional network.
        masked_iter: Newton's masked steps on every row before its first host read
            (:func:`otflows.linalg.newton_solve`; ``None``: by the device).

    Example:
        >>> from otflows import MMGN, BrenierTransform
        >>> T = BrenierTransform(MMGN(3, 8), gamma=0.5).double()
        >>> y = torch.randn(4, 3, dtype=torch.float64)
        >>> result = solve(T, y, rtol=1e-8, method="lbfgs")
        >>> bool(result.converged.all()), bool(torch.allclose(T.transport(result.x), y))
        (True, True)
    """
    if method not in SOLVE_METHODS:
        raise ValueError(f"method must be one of {SOLVE_METHODS}; got {method!r}")
    rtol = INVERSE_RTOL[y.dtype] if rtol is None else rtol
    with torch.no_grad():
        if x0 is None:  # per context, or once for all rows
            zeros = y.new_zeros(1 if context is None else len(y), T.features)
            T0, J0 = T.linearize(zeros, context)
            x0 = J0.solve(y - T0)
        if method == "lbfgs":
            return _minimize_conjugate(T, y, x0, rtol, context)
        direction = (
            _cg_direction(T)
            if method == "newton-cg"
            else lambda x, r, *c: T.linearize(x, *c)[1].solve(r)
        )
        result = newton_solve(
            T.transport,
            direction,
            y,
            x0,
            *context_rows(context),
            rtol=rtol,
            max_iter=T.inverse_max_iter,
            masked_iter=masked_iter,
        )
        # rows where no damped Newton step decreased the residual (before the step limit):
        # L-BFGS on the conjugate's convex objective goes on from there
        stalled = ~result.converged & (result.iterations < T.inverse_max_iter)
        failed = stalled.nonzero().squeeze(1)
        if len(failed):
            c = None if context is None else context[failed]
            retry = _minimize_conjugate(T, y[failed], result.x[failed], rtol, c)
            result.x[failed], result.residual[failed] = retry.x, retry.residual
            result.iterations[failed] += retry.iterations
            result.converged[failed] = retry.converged
        return result


def _cg_direction(T: BrenierTransform) -> Callable[..., Tensor]:
    r"""The Newton direction :math:`J_T(x)^{-1} r` by preconditioned CG,
    ``(x [B, D], r [B, D], *rows) -> [B, D]``: Jacobian-vector products by forward-mode
    autodiff, the preconditioner the inverse of the quadratic part :math:`V^\top V/s +
    \gamma I` (one Cholesky factor for every row and step)."""
    V = T.net.quadratic.V
    eye = torch.eye(T.features, dtype=V.dtype, device=V.device)
    L = torch.linalg.cholesky(V.T @ V / T.scale + T.gamma * eye)  # [D, D]

    def direction(x: Tensor, r: Tensor, *rows: Tensor) -> Tensor:
        context = rows[0] if rows else None
        products = lambda v: torch.func.jvp(  # noqa: E731
            lambda z: T.transport(z, context), (x,), (v,)
        )[1]
        return conjugate_gradient(
            products,
            r,
            NEWTON_CG_FORCING,
            T.features,
            precondition=lambda v: torch.cholesky_solve(v.T, L).T,
        )[0]

    return direction


def _minimize_conjugate(
    T: BrenierTransform, y: Tensor, x0: Tensor, rtol: float, context: Tensor | None = None
) -> InverseResult:
    r"""L-BFGS on the conjugate's convex objective :math:`\psi(x) - \langle x, y\rangle`
    from ``x0`` (:meth:`solve`'s ``"lbfgs"``)."""

    def value_and_grad(x: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        c = None if context is None else context[rows]
        psi, Tx = T.potential_and_transport(x, c)
        return psi - (x * y[rows]).sum(-1), Tx - y[rows]

    # the inverse Hessian's first guess: J_T⁻¹ at the starts' (and contexts') mean, shared
    c_mean = None if context is None else context.mean(0, keepdim=True)
    J_mean = DenseCholesky(T.jacobian(x0.mean(0, keepdim=True), c_mean))
    return lbfgs_minimize(
        value_and_grad,
        x0,
        rtol * (1.0 + y.norm(dim=-1)),
        max_iter=LBFGS_ITER * T.inverse_max_iter,
        precondition=J_mean.solve,
    )


def context_rows(context: Tensor | None) -> tuple[Tensor, ...]:
    r"""A per-row context as the extra arguments of :func:`otflows.linalg.batched_jacobian`
    and :func:`otflows.linalg.newton_solve` (none without one).

    Example:
        >>> context_rows(None), len(context_rows(torch.zeros(3, 1)))
        ((), 1)
    """
    return () if context is None else (context,)
