"""The stochastic log-determinant: SLQ values within their stated error, unbiased gradients,
conjugate-gradient solves and Newton inverses without forming the Jacobian (float64)."""

import warnings

import pytest
import torch

from otflows import BrenierFlow, BrenierTransform, build_net
from otflows.linalg import JacobianOperator, conjugate_gradient, slq_logdet
from otflows.metrics import nll

pytestmark = pytest.mark.usefixtures("float64")


def icnn_transform(D, seed=0, **kwargs):
    torch.manual_seed(seed)
    return BrenierTransform(
        build_net("icnn", D, hidden_features=32, num_layers=2),
        gamma=0.1,
        logdet="stochastic",
        **kwargs,
    )


def test_slq_error_is_within_its_stated_bound_at_d64():
    T = icnn_transform(64, lanczos_steps=30)
    x = torch.randn(3, 64)
    J = T.jacobian(x)
    eigenvalues, Q = torch.linalg.eigh(J)
    log_J = Q @ torch.diag_embed(eigenvalues.log()) @ Q.mT
    exact = eigenvalues.log().sum(-1)
    P = 64
    probes = torch.randint(0, 2, (P, 3, 64)).double() * 2 - 1
    estimate = slq_logdet(JacobianOperator(T.transport, x).matvec, probes, 30)
    # Monte-Carlo standard deviation of Rademacher Hutchinson: sqrt(2 Σ_{i≠j} (log J)²_ij / P)
    off_diagonal = log_J - torch.diag_embed(log_J.diagonal(dim1=-2, dim2=-1))
    sigma = (2 * off_diagonal.square().sum((-2, -1)) / P).sqrt()
    # quadrature error bound ρ^(-2m), ρ = (√κ + 1)/(√κ − 1), times the spectrum's log-range
    kappa = eigenvalues[:, -1] / eigenvalues[:, 0]
    rho = (kappa.sqrt() + 1) / (kappa.sqrt() - 1)
    quadrature = 64 * eigenvalues.log().abs().max(-1).values * rho ** (-60)
    assert ((estimate - exact).abs() <= 4 * sigma + quadrature).all()
    # the bound is not vacuous: it is a few nats on a log-det of about -26
    assert (4 * sigma + quadrature).max() < 0.5 * exact.abs().min()


def test_surrogate_gradient_is_unbiased():
    T = icnn_transform(6, cg_rtol=1e-12, lanczos_steps=2)  # SLQ steps do not touch the gradient
    x = torch.randn(2, 6)
    T.initialize(x)  # what the first training call would do
    parameters = [p for p in T.parameters() if p.requires_grad]

    def flat_grad(value):
        grads = torch.autograd.grad(value.sum(), parameters, allow_unused=True)
        return torch.cat([g.reshape(-1) for g in grads if g is not None])

    exact = flat_grad(torch.linalg.slogdet(T.jacobian(x))[1])
    draws = torch.stack([flat_grad(T(x)[1]) for _ in range(300)])
    mean, stderr = draws.mean(0), draws.std(0) / 300**0.5
    assert ((mean - exact).abs() <= 4.5 * stderr + 1e-9).float().mean() > 0.99
    assert torch.linalg.norm(mean - exact) < 0.25 * torch.linalg.norm(exact)


def test_conjugate_gradient_matches_dense_solve():
    A = torch.randn(4, 10, 10)
    A = A @ A.mT + 0.1 * torch.eye(10)
    b = torch.randn(4, 10)
    x, residual = conjugate_gradient(
        lambda v: (A @ v.unsqueeze(-1)).squeeze(-1), b, rtol=1e-12, max_iter=100
    )
    torch.testing.assert_close(x, torch.linalg.solve(A, b.unsqueeze(-1)).squeeze(-1))
    assert (residual <= 1e-12).all()


def test_preconditioned_conjugate_gradient_matches_dense_solve_in_fewer_products(float64):
    """With M ≈ A⁻¹ (the inverse of A's shared part), CG reaches the dense solve in fewer
    products with A; with M = A⁻¹ exactly, in one."""
    torch.manual_seed(0)
    Q = torch.randn(10, 10)
    A0 = Q @ Q.T + 0.1 * torch.eye(10)  # shared and ill-conditioned
    U = torch.randn(4, 10, 2)
    A = A0 + U @ U.mT  # [4, 10, 10]: the shared part plus a small per-row term
    b = torch.randn(4, 10)
    expected = torch.linalg.solve(A, b.unsqueeze(-1)).squeeze(-1)
    products = []

    def matvec(v):
        products.append(1)
        return (A @ v.unsqueeze(-1)).squeeze(-1)

    counts = []
    for M in (None, lambda v: torch.linalg.solve(A0, v.T).T, lambda v: torch.linalg.solve(A, v)):
        products.clear()
        x, residual = conjugate_gradient(matvec, b, rtol=1e-10, max_iter=100, precondition=M)
        torch.testing.assert_close(x, expected, rtol=1e-7, atol=1e-7)
        assert (residual <= 1e-10).all()
        counts.append(len(products))
    assert counts[1] < counts[0] / 2 and counts[2] == 1


def test_matrix_free_newton_inverse_round_trip():
    T = icnn_transform(20, cg_rtol=1e-8)
    x = 2 * torch.randn(16, 20)
    with torch.no_grad():
        y = T.transport(x)
        result = T.solve(y)
    assert result.converged.all() and result.iterations.max() <= 30
    torch.testing.assert_close(result.x, x, rtol=1e-8, atol=1e-8)


def test_inverse_gradient_through_cg():
    T = icnn_transform(8, cg_rtol=1e-12)
    y = torch.randn(3, 8, requires_grad=True)
    x = T.inverse(y)[0]
    c = torch.randn(3, 8)
    (grad,) = torch.autograd.grad((c * x).sum(), y)
    expected = torch.linalg.solve(T.jacobian(x.detach()), c.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(grad, expected, rtol=1e-7, atol=1e-8)


def test_auto_falls_back_to_stochastic_only_without_an_affordable_exact_method():
    assert BrenierTransform(build_net("icnn", 16)).method == "exact"
    assert BrenierTransform(build_net("icnn", 200)).method == "stochastic"
    assert BrenierTransform(build_net("mmgn", 200)).method == "structured"


def test_nll_says_when_it_is_an_estimate():
    flow = BrenierFlow(4, "icnn", num_blocks=1, hidden_features=8, logdet="stochastic")
    with pytest.warns(UserWarning, match="stochastic estimates"):
        nll(flow, torch.randn(5, 4))
    exact = BrenierFlow(4, "icnn", num_blocks=1, hidden_features=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nll(exact, torch.randn(5, 4))
