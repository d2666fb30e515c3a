"""The entropic map as a Brenier map: the gradient of a convex log-sum-exp potential, an
invertible flow step once γx is added, and the fallback's simple map where it cross-validates
better than the Bures map."""

import numpy as np
import pytest
import torch

from otflows import BrenierMap, BrenierTransform, EntropicMap
from otflows.cli.commands import _kept
from otflows.datasets import GaussianCoupling, domain_adaptation
from otflows.maps.fallback import baseline_choice
from otflows.maps.problem import build_problem
from otflows.metrics import l2_uvp, maximum_mean_discrepancy, wasserstein2_squared
from otflows.nets import EntropicPotential
from otflows.transforms.affine import bures_map

GAMMA = 0.05


def autograd_jacobian(T, x):
    return torch.stack([torch.autograd.functional.jacobian(T.transport, row) for row in x])


@pytest.fixture(scope="module")
def clusters():
    """Three clusters onto three others (POT's domain-adaptation set), 300 rows per side."""
    Xs, Xt = domain_adaptation("3gauss", 300, 1), domain_adaptation("3gauss2", 300, 2)
    return Xs, Xt, EntropicMap().fit(Xs=Xs, Xt=Xt)


def test_as_transform_is_the_entropic_map_plus_gamma_off_the_source_mean(clusters):
    """T(x) = T_ε(x) + γ(x − m) in float64, on the rows and twenty times further out, and T is
    the gradient of its potential."""
    Xs, _, entropic = clusters
    T = entropic.as_transform(GAMMA)
    m = entropic.source_mean_
    x = torch.as_tensor(np.concatenate([Xs[:20], 20 * Xs[20:40]]))
    with torch.no_grad():
        mapped = T.transport(x)
    torch.testing.assert_close(mapped, entropic.transform(x) + GAMMA * (x - m), rtol=0, atol=1e-12)
    x = x[:8].clone().requires_grad_()
    (gradient,) = torch.autograd.grad(T.potential(x).sum(), x)
    torch.testing.assert_close(gradient, T.transport(x).detach(), rtol=1e-10, atol=1e-10)


def test_the_entropic_flow_step_keeps_the_contract(clusters):
    """Symmetric Jacobian ⪰ γI (autograd, float64), the exact log-det equal to slogdet, and the
    inverse back to the rows, also where the map is nearly constant (far from the atoms)."""
    Xs, _, entropic = clusters
    T = entropic.as_transform(GAMMA)
    x = torch.as_tensor(np.concatenate([Xs[:6], 10 * Xs[6:10]]))
    J = autograd_jacobian(T, x)
    torch.testing.assert_close(J, J.mT, rtol=0, atol=1e-10)
    assert torch.linalg.eigvalsh(J).min() >= GAMMA * (1 - 1e-10)
    with torch.no_grad():
        y, logabsdet = T(x)
        x_back, inverse_logabsdet = T.inverse(y)
    sign, expected = torch.linalg.slogdet(J)
    assert (sign > 0).all()
    torch.testing.assert_close(logabsdet, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-7)
    torch.testing.assert_close(inverse_logabsdet, -logabsdet)


def test_the_potential_is_a_log_sum_exp_of_affine_functions():
    """φ(x) = τ log Σ exp((⟨y_j, x⟩ + c_j)/τ) + aᵀx + ½‖Vx‖², against its formula, and its
    Jacobian is the atoms' covariance under the softmax weights over τ."""
    g = torch.Generator().manual_seed(0)
    net = EntropicPotential(3, atoms=5).double()
    with torch.no_grad():
        net.Y.copy_(torch.randn(5, 3, generator=g))
        net.c.copy_(torch.randn(5, generator=g))
        net.tau.fill_(0.7)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    logits = (x @ net.Y.T + net.c) / 0.7
    V = net.quadratic.V.detach()
    expected = 0.7 * torch.logsumexp(logits, 1) + 0.5 * (x @ V.T).square().sum(1)
    torch.testing.assert_close(net.potential(x), expected)
    p = torch.softmax(logits, 1)
    mean = p @ net.Y
    centred = net.Y - mean[:, None]  # [B, M, D]
    covariance = torch.einsum("bm,bmd,bme->bde", p, centred, centred) / 0.7
    J = torch.stack([torch.autograd.functional.jacobian(net.gradient, row) for row in x])
    torch.testing.assert_close(J, covariance + V.T @ V)
    with pytest.raises(ValueError, match="atoms must be >= 1; got 0"):
        EntropicPotential(3, atoms=0)


def test_the_cross_validation_picks_the_true_kind_of_map():
    """A Gaussian pair (its true map is the Bures map), 100 rows per side in d = 6: the plain
    W2² of the 25 held-out rows prefers the entropic map, which shrinks its image, although on
    fresh rows it is several times further from the true map; the discrepancy keeps the Bures
    map. Three clusters onto three others, and onto two rotated ones (a sample where the energy
    distance, which weighs far pairs most, kept the Bures map at twice the entropic map's test
    W2²): the entropic map."""
    pair = GaussianCoupling.random_pair(6, seed=3)
    Xs = torch.as_tensor(pair.sample(100, seed=1))
    Xt = torch.as_tensor(pair.sample_target(100, seed=2))
    name, cv, entropic = baseline_choice(Xs[25:], Xt[25:], Xs[:25], Xt[:25], seed=0)
    assert name == "bures" and entropic is None and cv["cv_difference"] > cv["cv_se"] > 0
    shrinking = EntropicMap().fit(Xs=Xs[25:], Xt=Xt[25:])
    A, b = bures_map(Xs[25:], Xt[25:])
    plain = wasserstein2_squared(shrinking.transform(Xs[:25]), Xt[:25])
    assert plain < wasserstein2_squared(Xs[:25] @ A + b, Xt[:25])
    fresh = pair.sample(2000, seed=3)
    true = pair.brenier_map(fresh)
    bures_error = l2_uvp(fresh @ A.numpy() + b.numpy(), true)
    assert l2_uvp(shrinking.transform(fresh), true) > 3 * bures_error
    Xs = torch.as_tensor(domain_adaptation("3gauss", 300, 1))
    Xt = torch.as_tensor(domain_adaptation("3gauss2", 300, 2))
    name, cv, entropic = baseline_choice(Xs[75:], Xt[75:], Xs[:75], Xt[:75], seed=0)
    assert name == "entropic" and cv["cv_difference"] + cv["cv_se"] < 0
    assert entropic is not None and len(entropic.Xt_) == 225  # fitted to the training rows
    Xs, Xt = domain_adaptation("3gauss", 300, 201), domain_adaptation("gaussrot", 300, 202)
    cpu = torch.device("cpu")
    p = build_problem(Xs, Xt, dtype=torch.float64, device=cpu, seed=2, validation_fraction=0.25)
    name, cv, _ = baseline_choice(p.Xs, p.Xt, p.Xs_val, p.Xt_val, p.seed)  # BrenierMap's split
    assert name == "entropic" and cv["cv_difference"] + cv["cv_se"] < 0
    big = torch.randn(1001, 2, dtype=torch.float64)
    assert baseline_choice(big[:800], big[:800], big[800:], big[800:], 0)[1]["cv_se"] is None


def test_maximum_mean_discrepancy_against_its_closed_form():
    """N(0, I) against N(δ, I) in d = 3, Gaussian kernels of bandwidths h: with X − X′ ~ N(0, 2I)
    and X − Y ~ N(−δ, 2I), MMD² = Σₕ 2 (h²/(h² + 2))^(d/2) (1 − exp(−|δ|²/2(h² + 2)));
    between two samples of one measure, 0 within its noise."""
    rng = np.random.default_rng(0)
    delta, bandwidths = np.array([1.0, 0.0, 0.0]), [0.5, 2.0]
    expected = sum(
        2 * (h * h / (h * h + 2)) ** 1.5 * (1 - np.exp(-(delta @ delta) / (2 * (h * h + 2))))
        for h in bandwidths
    )
    X, Y = rng.normal(size=(5, 1500, 3)), rng.normal(size=(5, 1500, 3)) + delta
    estimates = [maximum_mean_discrepancy(x, y, bandwidths) for x, y in zip(X, Y, strict=True)]
    assert np.mean(estimates) == pytest.approx(expected, abs=0.01)  # 3 SE of a mean of five
    same = [maximum_mean_discrepancy(*rng.normal(size=(2, 200, 3)), bandwidths) for _ in range(20)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(20)
    with pytest.raises(ValueError, match="X and Y need 2 rows or more each; got 1 and 5"):
        maximum_mean_discrepancy(X[0, :1], Y[0, :5], bandwidths)
    with pytest.raises(ValueError, match=r"bandwidths must be positive and finite.*\[0.0\]"):
        maximum_mean_discrepancy(X[0], Y[0], [0.0])


def test_a_fit_of_clusters_ends_at_the_entropic_map_of_all_rows_and_saves_it(clusters, tmp_path):
    """Clusters onto clusters with a network too short-trained to beat it: the fit ends at the
    entropic map of all its rows as a flow step, says so, maps fresh rows as well as
    ``EntropicMap`` does and inverts them; saved and loaded, the same map."""
    Xs, Xt, entropic = clusters
    settings = {"max_iter": 30, "progress": False, "random_state": 0, "dtype": "float64"}
    otmap = BrenierMap(**settings).fit(Xs=Xs, Xt=Xt)
    record = otmap.log_["fallback"]
    assert otmap.log_["kept"] == record["kept"] == record["baseline"] == "entropic"
    assert isinstance(otmap.transform_.net, EntropicPotential)
    assert "kept the entropic map" in _kept(otmap.log_)
    fresh_s, fresh_t = domain_adaptation("3gauss", 2000, 3), domain_adaptation("3gauss2", 2000, 4)
    expected = entropic.as_transform(otmap.settings_["gamma"])
    with torch.no_grad():
        np.testing.assert_allclose(
            otmap.transform(fresh_s), expected.transport(torch.as_tensor(fresh_s)).numpy()
        )
    ours = wasserstein2_squared(otmap.transform(fresh_s), fresh_t)
    assert ours <= 1.05 * wasserstein2_squared(entropic.transform(fresh_s), fresh_t)
    np.testing.assert_allclose(otmap.inverse_transform(Xt=otmap.transform(Xs)), Xs, atol=1e-8)
    path = tmp_path / "map.pt"
    otmap.save(path)
    loaded = BrenierMap.load(path)
    np.testing.assert_array_equal(loaded.transform(fresh_s), otmap.transform(fresh_s))
    assert loaded.log_["kept"] == "entropic"


def test_as_transform_needs_a_fit():
    with pytest.raises(RuntimeError, match="EntropicMap is not fitted"):
        EntropicMap().as_transform(0.1)
    assert isinstance(
        EntropicMap().fit(Xs=np.eye(3), Xt=np.eye(3) + 1).as_transform(0.1), BrenierTransform
    )
