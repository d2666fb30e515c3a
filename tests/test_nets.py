"""Each network's stated guarantee, checked exactly as its docstring states it."""

import numpy as np
import pytest
import scipy.integrate
import torch
import torch.nn.functional as F

from otflows import CMGN, ICGN, ICNN, MMGN, QuadraticICNN, build_net
from otflows.linalg import batched_jacobian
from otflows.nets import MonotoneGradientNet


def jacobian(net, x):
    return batched_jacobian(net.gradient, x)[0]


def VtV(net):
    return net.quadratic.V.T @ net.quadratic.V


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus"])
@pytest.mark.parametrize("scaled", [True, False])
def test_cmgn_jacobian_is_stated_form(activation, scaled, tol):
    torch.manual_seed(0)
    net = CMGN(4, 7, num_layers=3, activation=activation, scaled=scaled)
    if scaled:  # move the scalings away from their initial value 1
        for p in (net.alpha, net.beta, net.omega):
            p.data.normal_()
    x = torch.randn(5, 4)
    alpha, beta, omega = F.softplus(net.alpha), F.softplus(net.beta), F.softplus(net.omega)
    u = x @ net.W.T
    with torch.enable_grad():
        z = alpha[0] * u + net.b[0]
        c = alpha[0].expand_as(z)
        for layer in (1, 2):
            sigma_prime = torch.func.vmap(torch.func.grad(lambda t: net.sigma(t)))(z.reshape(-1))
            sigma_prime = sigma_prime.reshape(z.shape)
            c = alpha[layer] + beta[layer - 1] * sigma_prime * c
            z = alpha[layer] * u + beta[layer - 1] * net.sigma(z) + net.b[layer]
        sigma_prime = torch.func.vmap(torch.func.grad(lambda t: net.sigma(t)))(z.reshape(-1))
    D = omega * sigma_prime.reshape(z.shape) * c
    expected = torch.einsum("hi,bh,hj->bij", net.W, D, net.W) + VtV(net)
    torch.testing.assert_close(jacobian(net, x), expected, rtol=tol, atol=tol)
    if not scaled:
        assert not any("alpha" in k for k, _ in net.named_parameters())


@pytest.mark.parametrize("activation", ["logcosh", "softplus"])
def test_mmgn_jacobian_is_stated_form(activation, tol):
    torch.manual_seed(0)
    net = MMGN(4, 5, num_modules=3, activation=activation)
    x = torch.randn(6, 4)
    z = torch.einsum("khd,bd->bkh", net.W, x) + net.b
    s = net.s(z).sum(-1)  # [B, K]
    sigma = net.sigma(z)
    sigma_prime = torch.func.vmap(torch.func.grad(lambda t: net.sigma(t)))(z.reshape(-1))
    sigma_prime = sigma_prime.reshape(z.shape)
    u = torch.einsum("khd,bkh->bkd", net.W, sigma)  # W_kᵀσ(z_k)
    expected = (
        torch.einsum("bk,khi,bkh,khj->bij", s, net.W, sigma_prime, net.W)
        + torch.einsum("bki,bkj->bij", u, u)
        + VtV(net)
    )
    torch.testing.assert_close(jacobian(net, x), expected, rtol=tol, atol=tol)


def test_mmgn_potential_gradient_equals_output(tol):
    torch.manual_seed(1)
    net = MMGN(5, 8, num_modules=4)
    x = (3 * torch.randn(10, 5)).requires_grad_()
    (grad,) = torch.autograd.grad(net.potential(x).sum(), x)
    torch.testing.assert_close(grad, net.gradient(x), rtol=tol, atol=tol)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus"])
def test_cmgn_ridge_integral_potential(activation, tol):
    """C-MGN's sum of 1-D ridge integrals: its gradient is the field, and it equals the
    generic D-dimensional line integral."""
    torch.manual_seed(2)
    net = CMGN(4, 12, num_layers=3, activation=activation)
    x = (2 * torch.randn(7, 4)).requires_grad_()
    (grad,) = torch.autograd.grad(net.potential(x).sum(), x)
    torch.testing.assert_close(grad, net.gradient(x), rtol=1e3 * tol, atol=1e3 * tol)
    torch.testing.assert_close(
        net.potential(x), MonotoneGradientNet.potential(net, x), rtol=tol, atol=tol
    )


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus"])
def test_icgn_jacobian_is_stated_form(activation, tol):
    torch.manual_seed(0)
    net = ICGN(4, 9, activation=activation)
    x = 2 * torch.randn(6, 4)
    sigma_prime = net.dsigma(x @ net.W.T + net.b)
    expected = torch.einsum("hi,bh,hj->bij", net.W, sigma_prime.square(), net.W) + VtV(net)
    torch.testing.assert_close(jacobian(net, x), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus"])
def test_icgn_exact_integral_is_the_papers_integral(activation):
    """G(x) = ∫₀¹ J_M(sx)ᵀ J_M(sx) x ds + VᵀVx + a, with the integral by adaptive quadrature."""
    torch.manual_seed(0)
    net = ICGN(3, 5, activation=activation).double()
    x = 2 * torch.randn(3, dtype=torch.float64)

    def integrand(s):
        J = net.dsigma(s * (net.W @ x) + net.b)[:, None] * net.W  # J_M(sx) [H, D]
        return (J.T @ J @ x).detach().numpy()

    integral = scipy.integrate.quad_vec(integrand, 0.0, 1.0, epsabs=1e-13, epsrel=1e-13)[0]
    expected = integral + net.quadratic.gradient(x).detach().numpy()
    np.testing.assert_allclose(net.gradient(x).detach().numpy(), expected, rtol=1e-10, atol=1e-11)


def test_icgn_quadrature_error_is_within_stated_bound():
    """32 Gauss–Legendre nodes keep the error below 1e-8 for |wᵢᵀx| ≤ 10 (tanh)."""
    torch.manual_seed(0)
    exact = ICGN(4, 16, activation="tanh").double()
    quadrature = ICGN(4, 16, activation="tanh", quadrature_nodes=32).double()
    quadrature.load_state_dict(exact.state_dict())
    x = torch.randn(200, 4, dtype=torch.float64)
    u = x @ exact.W.T
    x = x * (10.0 / u.abs().max(dim=1, keepdim=True).values)  # max |wᵢᵀx| = 10 per row
    u = x @ exact.W.T
    error = (exact._ridge(u) - quadrature._ridge(u)).abs().max()
    assert error < 1e-8
    # and fewer nodes are measurably worse: the bound is not vacuous
    coarse = ICGN(4, 16, activation="tanh", quadrature_nodes=8).double()
    coarse.load_state_dict(exact.state_dict())
    assert (exact._ridge(u) - coarse._ridge(u)).abs().max() > 1e-5


def test_line_integral_potential_matches_closed_form(tol):
    """The base class's quadrature potential equals M-MGN's closed form, up to φ(0)."""
    torch.manual_seed(2)
    net = MMGN(3, 6, num_modules=2)
    x = 2 * torch.randn(7, 3)
    closed = net.potential(x) - net.potential(torch.zeros(1, 3))
    numeric = MonotoneGradientNet.potential(net, x)
    torch.testing.assert_close(numeric, closed, rtol=1e3 * tol, atol=1e3 * tol)


def test_icgn_closed_form_potential(tol):
    torch.manual_seed(3)
    for activation in ("tanh", "sigmoid"):
        net = ICGN(3, 6, activation=activation)
        x = 2 * torch.randn(7, 3)
        numeric = MonotoneGradientNet.potential(net, x)
        torch.testing.assert_close(net.potential(x), numeric, rtol=1e3 * tol, atol=1e3 * tol)


@pytest.mark.parametrize("shape", [(7,), (2, 3)])
def test_qicnn_hand_written_gradient_is_the_potentials_autograd_gradient(shape):
    """QuadraticICNN's backward pass by hand gives ∇φ, φ and their parameter gradients as
    autograd through its potential does (float64, weights far from their initialisation)."""
    torch.manual_seed(0)
    net = QuadraticICNN(3, 8, num_layers=3, quadratic_rank=2).double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    x = torch.randn(*shape, 3, dtype=torch.float64)
    phi, G = net.potential_and_gradient(x)
    expected = torch.func.grad(lambda x: net.potential(x).sum())(x)
    torch.testing.assert_close(G, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(phi, net.potential(x), rtol=1e-12, atol=1e-12)
    weights = torch.randn(*shape, 3, dtype=torch.float64)
    by_hand = torch.autograd.grad((net.gradient(x) * weights).sum(), list(net.parameters()))
    auto = torch.autograd.grad((expected * weights).sum(), list(net.parameters()))
    for a, b in zip(by_hand, auto, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ICNN(3, 16, num_layers=3, activation="gaussian_softplus"),
        lambda: QuadraticICNN(3, 16, num_layers=4, quadratic_rank=2),
    ],
    ids=["icnn", "qicnn"],
)
def test_input_convex_potentials_are_convex_along_lines(make):
    torch.manual_seed(0)
    net = make().double()
    with torch.no_grad():  # far from the initialisation: large quadratic and convex weights
        for p in net.parameters():
            p.mul_(5.0)
    x, y = torch.randn(50, 3, dtype=torch.float64), torch.randn(50, 3, dtype=torch.float64)
    for t in (0.1, 0.5, 0.9):
        assert (
            net.potential(t * x + (1 - t) * y)
            <= t * net.potential(x) + (1 - t) * net.potential(y) + 1e-9
        ).all()


def test_unbatched_input_gives_unbatched_output():
    for name in ("cmgn", "mmgn", "icgn", "icnn", "qicnn"):
        net = build_net(name, 3)
        assert net.gradient(torch.randn(3)).shape == (3,)
        assert net.potential(torch.randn(3)).shape == ()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: build_net("resnet", 2), "net must be one of"),
        (lambda: CMGN(2, 4, activation="relu"), "activation must be one of"),
        (lambda: MMGN(2, 4, num_modules=0), "num_modules must be >= 1"),
        (lambda: ICNN(0, 4), "features must be a positive integer"),
        (lambda: QuadraticICNN(2, 4, quadratic_rank=0), "quadratic_rank must be >= 1"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
