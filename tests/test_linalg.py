"""Quadrature, Cholesky helpers and the Newton solver, against closed forms."""

import warnings

import pytest
import torch

from otflows import MMGN, BrenierTransform, InverseError
from otflows.linalg import (
    DenseCholesky,
    gauss_legendre,
    implicit_solution,
    lbfgs_minimize,
    newton_solve,
)


def test_gauss_legendre_is_exact_to_degree_2n_minus_1():
    s, w = gauss_legendre(5, dtype=torch.float64)
    for k in range(10):
        assert abs(float((w * s**k).sum()) - 1 / (k + 1)) < 1e-14
    assert abs(float((w * s**10).sum()) - 1 / 11) > 1e-10


def test_cholesky_logdet_and_solve_match_dense(tol):
    A = torch.randn(4, 5, 5)
    J = A @ A.mT + 0.1 * torch.eye(5)
    factor = DenseCholesky(J)
    torch.testing.assert_close(factor.logdet(), torch.linalg.slogdet(J)[1], rtol=tol, atol=tol)
    r = torch.randn(4, 5)
    torch.testing.assert_close(
        factor.solve(r), torch.linalg.solve(J, r[..., None])[..., 0], rtol=tol, atol=tol
    )


def test_newton_converges_quadratically_on_a_cubic():
    T = lambda x: x + x**3  # noqa: E731
    solve = lambda x, r: r / (1 + 3 * x**2)  # noqa: E731
    y = torch.tensor([[1e-3], [2.0], [1e4]], dtype=torch.float64)
    result = newton_solve(T, solve, y, torch.zeros_like(y), rtol=1e-14)
    assert result.converged.all()
    torch.testing.assert_close(T(result.x), y, rtol=1e-13, atol=1e-15)
    assert result.iterations.max() <= 40  # y = 1e4 needs the line search from x = 0


@pytest.mark.parametrize("masked_iter", [1, 2, 5])
def test_masked_newton_steps_reach_the_same_solutions(float64, masked_iter):
    """Full steps on every row at once (masked updates, no host read) and then the adaptive
    solve of the rows left: the same solutions to the tolerance as the adaptive solve alone,
    from a cold start where many rows need the line search, and no row moves once converged."""
    torch.manual_seed(0)
    T = BrenierTransform(MMGN(3, 8, num_modules=2), gamma=0.1)
    x = 3 * torch.randn(256, 3)
    with torch.no_grad():
        y = T.transport(x)
    x0 = torch.zeros_like(x)
    x0[:8] = x[:8]  # converged from the start

    def solve(z, r):
        return T.linearize(z)[1].solve(r)

    adaptive = newton_solve(T.transport, solve, y, x0, rtol=1e-10, masked_iter=0)
    masked = newton_solve(T.transport, solve, y, x0, rtol=1e-10, masked_iter=masked_iter)
    assert adaptive.converged.all() and masked.converged.all()
    torch.testing.assert_close(masked.x, x, rtol=0, atol=1e-8)
    torch.testing.assert_close(masked.x, adaptive.x, rtol=0, atol=1e-8)
    assert torch.equal(masked.x[:8], x[:8]) and (masked.iterations[:8] == 0).all()
    full_steps = masked.iterations >= masked_iter  # rows that took every masked step
    assert full_steps.sum() > 64


def quadratics(A, y):
    """f_b(x) = ½ xᵀ A_b x − ⟨x, y_b⟩ row by row, for :func:`lbfgs_minimize`."""

    def value_and_grad(x, rows):
        Ax = (A[rows] @ x[..., None])[..., 0]
        return 0.5 * (x * Ax).sum(-1) - (x * y[rows]).sum(-1), Ax - y[rows]

    return value_and_grad


def test_lbfgs_solves_ill_conditioned_quadratics_row_by_row(float64):
    # condition numbers 1e3: x* = A_b⁻¹ y_b to the round-off floor of the gradient
    torch.manual_seed(0)
    Q = torch.linalg.qr(torch.randn(6, 8, 8)).Q
    A = Q @ torch.diag_embed(torch.logspace(-1.5, 1.5, 8).expand(6, 8)) @ Q.mT
    y = torch.randn(6, 8)
    result = lbfgs_minimize(quadratics(A, y), torch.zeros_like(y), torch.full((6,), 1e-10))
    assert result.converged.all()
    assert (result.residual <= 1e-10).all()
    torch.testing.assert_close(result.x, torch.linalg.solve(A, y), rtol=0, atol=1e-8)
    assert result.iterations.max() < 150  # gradient descent needs ~1e3 · log(1e10)


def test_lbfgs_preconditioner_takes_the_shared_curvature(float64):
    # A_b = M + small per-row parts: with H₀ = M⁻¹ a handful of steps suffice
    torch.manual_seed(0)
    Q = torch.linalg.qr(torch.randn(8, 8)).Q
    M = Q @ torch.diag(torch.logspace(-2, 2, 8)) @ Q.T
    P = torch.randn(6, 8, 8) / 80
    A, y = M + P @ P.mT, torch.randn(6, 8)
    result = lbfgs_minimize(
        quadratics(A, y),
        torch.zeros_like(y),
        torch.full((6,), 1e-10),
        precondition=DenseCholesky(M[None]).solve,
    )
    assert result.converged.all()
    torch.testing.assert_close(result.x, torch.linalg.solve(A, y), rtol=0, atol=1e-7)
    assert result.iterations.max() <= 15


def test_lbfgs_stops_rows_at_the_floating_point_floor(float64):
    # f(x) = x⁴/4 + x²/2 − x: its gradient x³ + x − 1 (an irrational root) misses 0 in
    # floating point, so a zero tolerance is unreachable; the row stops when no step decreases
    # f any more, not after max_iter
    result = lbfgs_minimize(
        lambda x, rows: ((x**4 / 4 + x**2 / 2 - x).sum(-1), x**3 + x - 1),
        torch.zeros(1, 1),
        torch.zeros(1),
    )
    root = 0.6823278038280193  # the real root of x³ + x − 1 (Cardano)
    assert not result.converged.any()
    assert result.iterations.max() < 30
    torch.testing.assert_close(result.x, torch.full((1, 1), root), rtol=1e-15, atol=0)


def test_solve_goes_on_by_lbfgs_where_newton_stalls(float64, monkeypatch):
    """Rows where no damped Newton step decreases the residual (here: Newton matrices far from
    J_T, so that their steps are no descent directions) are finished by L-BFGS on the
    conjugate's convex objective; rows that ran out of steps are not."""
    torch.manual_seed(0)
    T = BrenierTransform(MMGN(2, 8, num_modules=2), gamma=0.1)
    x = 3 * torch.randn(64, 2)
    with torch.no_grad():
        y = T.transport(x)
    wrong = torch.tensor([[1.0, 0.999], [0.999, 1.0]])
    monkeypatch.setattr(
        T, "linearize", lambda z: (T.transport(z), DenseCholesky(wrong.expand(len(z), 2, 2)))
    )
    x0 = torch.zeros_like(x)
    with torch.no_grad():
        solve = lambda z, r: T.linearize(z)[1].solve(r)  # noqa: E731
        newton = newton_solve(T.transport, solve, y, x0, rtol=1e-10, max_iter=T.inverse_max_iter)
        result = T.solve(y, x0)
    assert not newton.converged.any() and (newton.iterations < T.inverse_max_iter).all()
    assert result.converged.all()
    torch.testing.assert_close(result.x, x, rtol=0, atol=1e-8)
    T.inverse_max_iter = 1  # a step limit is the caller's: rows that used it are left as Newton's
    with torch.no_grad():
        one_step = newton_solve(T.transport, solve, y, x0, rtol=1e-10, max_iter=1)
        limited = T.solve(y, x0)
    used = one_step.iterations == 1
    assert used.sum() > 32 and not one_step.converged[used].any()
    assert torch.equal(limited.x[used], one_step.x[used])
    assert (limited.iterations[used] == 1).all() and not limited.converged[used].any()


def test_inverse_raises_with_per_sample_report_when_it_cannot_converge():
    torch.manual_seed(0)
    T = BrenierTransform(MMGN(2, 8, num_modules=2), gamma=0.01, inverse_max_iter=1)
    y = torch.tensor([[0.0, 0.0], [50.0, -80.0]])
    with pytest.raises(InverseError, match="did not converge") as info:
        T.inverse(y)
    result = info.value.result
    assert not result.converged[1]
    assert (result.residual[~result.converged] > result.tolerance[~result.converged]).all()


def test_inverse_can_warn_instead():
    torch.manual_seed(0)
    T = BrenierTransform(
        MMGN(2, 8, num_modules=2), gamma=0.01, inverse_max_iter=1, on_inverse_failure="warn"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, _ = T.inverse(torch.tensor([[50.0, -80.0]]))
    assert any("did not converge" in str(w.message) for w in caught)
    assert x.shape == (1, 2)


def test_transform_rejects_bad_arguments():
    net = MMGN(2, 4)
    with pytest.raises(ValueError, match="gamma must be > 0"):
        BrenierTransform(net, gamma=0.0)
    with pytest.raises(ValueError, match="logdet must be"):
        BrenierTransform(net, logdet="lanczos")
    T = BrenierTransform(net)
    with pytest.raises(ValueError, match=r"inputs must have shape \[\.\.\., 2\]"):
        T(torch.randn(3, 5))
    with pytest.raises(ValueError, match="context must be None"):
        T(torch.randn(3, 2), context=torch.randn(3, 1))


def test_implicit_solution_is_the_solution_of_a_nonlinear_equation(float64):
    """x* of T(x; θ) = θ x + x³ (row-wise, θ > 0) = y: its gradients in θ and y against
    central differences of the closed-form root."""
    theta = torch.tensor(1.5, requires_grad=True)
    y = torch.tensor([[0.7, -2.0, 3.0]], requires_grad=True)

    def root(theta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Cardano: x³ + θx − y = 0 has one real root for θ > 0
        s = (y.square() / 4 + theta**3 / 27).sqrt()
        return torch.sign(y / 2 + s) * (y / 2 + s).abs() ** (1 / 3) - torch.sign(s - y / 2) * (
            s - y / 2
        ).abs() ** (1 / 3)

    x = root(theta, y).detach()
    x_star, slot = implicit_solution(x, theta * x + x**3, y)
    slot.factor = DenseCholesky(torch.diag_embed(theta.detach() + 3 * x.square()))
    weights = torch.tensor([[1.0, 2.0, -1.0]])
    (weights * x_star).sum().backward()
    eps = 1e-6
    with torch.no_grad():
        d_theta = (weights * (root(theta + eps, y) - root(theta - eps, y))).sum() / (2 * eps)
        d_y = weights * (root(theta, y + eps) - root(theta, y - eps)) / (2 * eps)
    torch.testing.assert_close(theta.grad, d_theta, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(y.grad, d_y, rtol=1e-7, atol=1e-9)


def test_implicit_solution_needs_its_factor():
    x = torch.zeros(2, 3)
    y = torch.ones(2, 3, requires_grad=True)
    x_star, _ = implicit_solution(x, x, y)
    with pytest.raises(RuntimeError, match="never put in its slot"):
        x_star.sum().backward()
