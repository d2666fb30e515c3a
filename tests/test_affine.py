"""Affine starts: the Bures and whitening maps in closed form, setting and regressing a
transform's affine part, and a flow started at the Gaussian of its data."""

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from otflows import BrenierFlow, BrenierTransform, fit_flow
from otflows.nets import build_net
from otflows.transforms.affine import bures_map, set_affine, start_affine, whitening_map


def test_bures_map_recovers_an_spd_affine_map(float64):
    """An SPD affine map is the optimal map between a measure and its image: recovered exactly."""
    rng = np.random.default_rng(0)
    B = rng.normal(size=(4, 4))
    A0, b0 = B @ B.T + np.eye(4), rng.normal(size=4)
    Xs = torch.as_tensor(rng.normal(size=(500, 4)) @ B)
    A, b = bures_map(Xs, Xs @ torch.as_tensor(A0) + torch.as_tensor(b0), reg=0.0)
    torch.testing.assert_close(A, torch.as_tensor(A0), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(b, torch.as_tensor(b0), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("net", ["mmgn", "cmgn", "icgn", "icnn", "qicnn"])
def test_set_affine_sets_the_affine_part(net, float64):
    """After set_affine, T(x) minus the network's non-quadratic part is exactly A x + b."""
    torch.manual_seed(0)
    T = BrenierTransform(build_net(net, 3, hidden_features=6), gamma=0.05)
    T.initialize(2 * torch.randn(100, 3) + 1)
    B = torch.randn(3, 3)
    A, b = B @ B.T + torch.eye(3), torch.randn(3)
    set_affine(T, A, b)
    x = torch.randn(7, 3)
    x_tilde = T._normalize(x)
    ridges = T.net.gradient(x_tilde) - T.net.quadratic.gradient(x_tilde)
    torch.testing.assert_close(T.transport(x) - ridges, x @ A + b)


def test_whitening_map_is_the_inverse_square_root_of_the_covariance(float64):
    """Z = X A + b has exactly zero mean and identity covariance; A is symmetric, so the map is
    the gradient of a convex quadratic (the W2-optimal map onto N(0, I))."""
    rng = np.random.default_rng(1)
    X = torch.as_tensor(rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5)) + 2.0)
    A, b = whitening_map(X, reg=0.0)
    Z = X @ A + b
    torch.testing.assert_close(Z.mean(0), torch.zeros(5), atol=1e-10, rtol=0)
    torch.testing.assert_close(Z.T.cov(), torch.eye(5), atol=1e-10, rtol=0)
    torch.testing.assert_close(A, A.T, atol=0, rtol=0)
    assert torch.linalg.eigvalsh(A).min() > 0
    # the same map as the Bures map onto a sample whose Gaussian is exactly N(0, I)
    A_bures, b_bures = bures_map(X, Z, reg=0.0)
    torch.testing.assert_close(A_bures, A, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(b_bures, b, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("net", ["mmgn", "cmgn", "icgn", "icnn", "qicnn"])
def test_start_affine_is_the_affine_map_everywhere(net, float64):
    """After start_affine the whole transform, ridges included, is the affine map on the data
    and far from it (the shrunk terms leave O(1e-6)), and every parameter still gets a
    gradient."""
    torch.manual_seed(0)
    T = BrenierTransform(build_net(net, 3, hidden_features=6), gamma=0.05)
    X = 2 * torch.randn(300, 3) + 1
    B = torch.randn(3, 3)
    A, b = B @ B.T + torch.eye(3), torch.randn(3)
    start_affine(T, A, b, X)
    assert bool(T.initialized)
    for points in (X, 30 * torch.randn(100, 3)):
        target = points @ A + b
        error = (T.transport(points) - target).norm(dim=-1) / target.norm(dim=-1)
        assert error.max().item() < 1e-4
    T.transport(X).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in T.parameters())


def test_start_from_gaussian_gives_the_gaussian_density(float64):
    """Started at the Gaussian of its data, a 3-block flow's log-density is that Gaussian's
    (closed form) on the data and on points far from it, and training keeps the start (no
    data-dependent re-initialisation)."""
    rng = np.random.default_rng(0)
    M = rng.normal(size=(4, 4))
    X = torch.as_tensor(rng.normal(size=(2000, 4)) @ M - 1.0)
    far = torch.as_tensor(5 * rng.normal(size=(200, 4)) @ M)
    torch.manual_seed(0)
    flow = BrenierFlow(4, "mmgn", num_blocks=3, hidden_features=8, num_modules=2, marginals=False)
    flow.start_from_gaussian(X)
    gaussian = MultivariateNormal(X.mean(0), X.T.cov())
    with torch.no_grad():
        for points in (X, far):
            gap = flow.log_prob(points) - gaussian.log_prob(points)
            assert gap.abs().max().item() < 5e-3  # nats, pointwise (the whitening has a ridge)
    assert flow.training  # the mode is restored
    before = flow.log_prob(X).mean().item()
    fit_flow(flow, X, max_iter=5, lr=1e-4, batch_size=500, progress=False, random_state=0)
    assert flow.log_prob(X).mean().item() == pytest.approx(before, abs=0.05)


def test_a_single_block_starts_at_the_gaussian_of_features_of_very_different_scales(float64):
    """Features with standard deviations from 0.01 to 50 (a ridge proportional to the mean
    variance would swamp the small ones): a single block starts at their Gaussian, held-out
    points included."""
    rng = np.random.default_rng(1)
    scales = np.array([0.01, 0.05, 1.0, 50.0])
    X = torch.as_tensor((rng.normal(size=(1000, 4)) @ rng.normal(size=(4, 4))) * scales)
    torch.manual_seed(0)
    flow = BrenierFlow(4, "mmgn", num_blocks=1, hidden_features=8, num_modules=2)
    flow.start_from_gaussian(X[:800])
    gaussian = MultivariateNormal(X[:800].mean(0), X[:800].T.cov())
    with torch.no_grad():
        gap = flow.log_prob(X[800:]) - gaussian.log_prob(X[800:])
    assert gap.abs().max().item() < 5e-3


def test_start_from_gaussian_refuses_a_scale_one_block_cannot_contract():
    X = torch.as_tensor(np.random.default_rng(0).normal(size=(500, 2)) * [1.0, 300.0])
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4).double()  # gamma = 0.01
    with pytest.raises(
        ValueError, match=r"standard deviation \d+(\.\d+)?, more than 1/gamma = 100: "
    ):
        flow.start_from_gaussian(X)
    stacked = BrenierFlow(
        2, "mmgn", num_blocks=2, hidden_features=4, marginals=False
    ).double()  # ActNorm first
    stacked.start_from_gaussian(X)
    gaussian = MultivariateNormal(X.mean(0), X.T.cov())
    with torch.no_grad():
        assert (stacked.log_prob(X) - gaussian.log_prob(X)).abs().max().item() < 5e-3


def test_start_from_gaussian_validates_its_data():
    flow = BrenierFlow(3, "mmgn", num_blocks=1, hidden_features=4)
    with pytest.raises(ValueError, match="X"):
        flow.start_from_gaussian(torch.randn(10, 2))
    with pytest.raises(ValueError, match="X"):
        flow.start_from_gaussian(torch.full((10, 3), float("nan")))
