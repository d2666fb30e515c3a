"""Quadrature, Cholesky helpers and the Newton solver, against closed forms."""

import warnings

import pytest
import torch

from otflows import MMGN, BrenierTransform, InverseError
from otflows.linalg import DenseCholesky, gauss_legendre, newton_solve


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
    with pytest.raises(ValueError, match=r"inputs must have shape \[B, 2\]"):
        T(torch.randn(3, 5))
    with pytest.raises(ValueError, match="context must be None"):
        T(torch.randn(3, 2), context=torch.randn(3, 1))
