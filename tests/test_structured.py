"""Structured log-determinants and solves against dense ``slogdet`` and ``solve`` (float64)."""

import pytest
import torch

from otflows import BrenierTransform, build_net
from otflows.linalg import LowRankUpdate, RidgeFactors, batched_jacobian

SIZES = {
    "cmgn": dict(hidden_features=24, num_layers=2),
    "mmgn": dict(hidden_features=6, num_modules=3),
    "icgn": dict(hidden_features=24),
    "qicnn": dict(hidden_features=3, num_layers=3, quadratic_rank=2),
}


pytestmark = pytest.mark.usefixtures("float64")


@pytest.mark.parametrize("name", SIZES)
def test_factors_reconstruct_the_jacobian(name):
    torch.manual_seed(0)
    net = build_net(name, 7, **SIZES[name])
    x = 2 * torch.randn(5, 7)
    G, f = net.gradient_and_factors(x)
    J = net.quadratic.V.T @ net.quadratic.V + torch.einsum("ki,bk,kj->bij", f.U, f.d, f.U)
    if f.E is not None:
        J = J + f.E @ f.E.mT
    torch.testing.assert_close(G, net.gradient(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(J, batched_jacobian(net.gradient, x)[0], rtol=1e-10, atol=1e-10)
    assert f.rank == net.ridge_rank
    assert (f.d >= 0).all()


@pytest.mark.parametrize("D", [5, 37, 100])
@pytest.mark.parametrize("with_E", [False, True])
def test_low_rank_update_matches_dense(D, with_E):
    torch.manual_seed(D)
    k, K, B = 12, 3, 4
    V = torch.randn(D, D) / D**0.5
    A0 = V.T @ V + 0.01 * torch.eye(D)
    factors = RidgeFactors(
        torch.randn(k, D), torch.rand(B, k), torch.randn(B, D, K) if with_E else None
    )
    J = A0 + torch.einsum("ki,bk,kj->bij", factors.U, factors.d, factors.U)
    if with_E:
        J = J + factors.E @ factors.E.mT
    update = LowRankUpdate(A0, factors)
    expected = torch.linalg.slogdet(J)[1]
    assert ((update.logdet() - expected).abs() / expected.abs().clamp_min(1)).max() < 1e-8
    r = torch.randn(B, D)
    torch.testing.assert_close(
        update.solve(r), torch.linalg.solve(J, r[..., None])[..., 0], rtol=1e-8, atol=1e-10
    )


def test_low_rank_update_gradients_match_dense():
    torch.manual_seed(0)
    D, k = 9, 4
    U = torch.randn(k, D, requires_grad=True)
    d = torch.rand(3, k, requires_grad=True)
    E = torch.randn(3, D, 2, requires_grad=True)
    A0 = torch.eye(D) * 0.5

    def dense():
        return torch.linalg.slogdet(A0 + torch.einsum("ki,bk,kj->bij", U, d, U) + E @ E.mT)[1]

    structured = torch.autograd.grad(
        LowRankUpdate(A0, RidgeFactors(U, d, E)).logdet().sum(), (U, d, E)
    )
    expected = torch.autograd.grad(dense().sum(), (U, d, E))
    for a, b in zip(structured, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_zero_curvature_gives_finite_gradients():
    U = torch.randn(3, 4, requires_grad=True)
    d = torch.tensor([[0.0, 1.0, 2.0]], requires_grad=True)
    logdet = LowRankUpdate(torch.eye(4), RidgeFactors(U, d)).logdet()
    grads = torch.autograd.grad(logdet.sum(), (U, d))
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", SIZES)
@pytest.mark.parametrize("D", [16, 50])
def test_auto_picks_structured_and_matches_dense(name, D):
    torch.manual_seed(1)
    auto = BrenierTransform(build_net(name, D, **SIZES[name]), gamma=0.05)
    assert auto.method == "structured"
    assert isinstance(auto.linearize(torch.zeros(1, D))[1], LowRankUpdate) == (
        auto.net.ridge_rank < D
    )
    exact = BrenierTransform(auto.net, gamma=0.05, logdet="exact")
    x = torch.randn(6, D)
    y_auto, logdet_auto = auto(x)
    y_exact, logdet_exact = exact(x)
    torch.testing.assert_close(y_auto, y_exact, rtol=1e-12, atol=1e-12)
    assert ((logdet_auto - logdet_exact).abs() / logdet_exact.abs()).max() < 1e-8


def test_structured_needs_a_factored_network():
    with pytest.raises(ValueError, match="ICNN has none"):
        BrenierTransform(build_net("icnn", 3), logdet="structured")
    with pytest.raises(ValueError, match="logdet must be one of"):
        BrenierTransform(build_net("mmgn", 3), logdet="lanczos")


@pytest.mark.parametrize("name", SIZES)
def test_low_rank_quadratic_joins_the_ridges(name):
    """With V of rank r < D, A₀ = γI and V's rows are ridges of unit curvature."""
    torch.manual_seed(4)
    D = 40
    structured = BrenierTransform(build_net(name, D, rank=5, **SIZES[name]), gamma=0.05)
    structured.initialize(3.0 + 2.0 * torch.randn(128, D))
    exact = BrenierTransform(structured.net, gamma=0.05, logdet="exact")
    exact.load_state_dict(structured.state_dict())
    x = 3.0 + 2.0 * torch.randn(6, D)
    _, logdet = structured(x)
    _, expected = exact(x)
    assert ((logdet - expected).abs() / expected.abs()).max() < 1e-8
    r = torch.randn(6, D)
    solved = structured.linearize(x)[1].solve(r)
    torch.testing.assert_close(structured.jacobian(x) @ solved[..., None], r[..., None])


def test_scalar_shared_part_matches_dense():
    torch.manual_seed(5)
    factors = RidgeFactors(torch.randn(6, 20), torch.rand(3, 6), torch.randn(3, 20, 2))
    c = torch.tensor(0.3)
    scalar = LowRankUpdate(c, factors)
    dense = LowRankUpdate(c * torch.eye(20), factors)
    torch.testing.assert_close(scalar.logdet(), dense.logdet())
    r = torch.randn(3, 20)
    torch.testing.assert_close(scalar.solve(r), dense.solve(r))
