"""Metrics against independent closed forms (SciPy), and the flow's likelihood by hand."""

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from otflows import BrenierFlow
from otflows.datasets import GaussianCoupling, load_array, two_moons
from otflows.metrics import (
    gaussian_entropy,
    gaussian_w2_squared,
    kl_divergence,
    l2_uvp,
    log_prob,
    map_cosine,
    nll,
    sinkhorn_divergence,
    transport_cost,
)


def random_spd(d, rng):
    A = rng.standard_normal((d, d))
    return A @ A.T + 0.5 * np.eye(d)


def test_gaussian_w2_squared_matches_formula():
    rng = np.random.default_rng(0)
    m1, m2 = rng.standard_normal(4), rng.standard_normal(4)
    C1, C2 = random_spd(4, rng), random_spd(4, rng)
    root = scipy.linalg.sqrtm(C1)
    expected = np.sum((m1 - m2) ** 2) + np.trace(
        C1 + C2 - 2 * scipy.linalg.sqrtm(root @ C2 @ root)
    )
    assert gaussian_w2_squared(m1, C1, m2, C2) == pytest.approx(expected.real, rel=1e-9)


def test_gaussian_entropy_matches_scipy():
    C = random_spd(3, np.random.default_rng(1))
    expected = scipy.stats.multivariate_normal(np.zeros(3), C).entropy()
    assert gaussian_entropy(C) == pytest.approx(expected, rel=1e-12)


def test_gaussian_coupling_closed_forms():
    problem = GaussianCoupling.mgn_2d()
    assert problem.w2_squared == pytest.approx(3.71, abs=5e-3)  # REFERENCES.md
    assert problem.entropy == pytest.approx(2.14, abs=5e-3)
    X = problem.sample(200_000, seed=0)
    TX = problem.brenier_map(X)
    np.testing.assert_allclose(TX.mean(0), 0, atol=1e-2)
    np.testing.assert_allclose(np.cov(TX.T), np.eye(2), atol=1e-2)
    # the optimal map is symmetric positive definite (gradient of a convex quadratic)
    np.testing.assert_allclose(problem.map_matrix, problem.map_matrix.T, atol=1e-12)
    assert transport_cost(problem.brenier_map, torch.as_tensor(X)) == pytest.approx(
        problem.w2_squared, rel=1e-2
    )


def test_random_gaussian_coupling_is_seeded():
    a, b = GaussianCoupling.random(8, seed=3), GaussianCoupling.random(8, seed=3)
    np.testing.assert_array_equal(a.cov, b.cov)
    assert np.all(np.linalg.eigvalsh(a.cov) > 0)


def test_l2_uvp_and_transport_cost():
    true = np.random.default_rng(0).standard_normal((1000, 3))
    assert l2_uvp(true, true) == 0.0
    assert l2_uvp(true + 1.0, true) == pytest.approx(300.0 / true.var(0).sum())
    with pytest.raises(ValueError, match="same shape"):
        l2_uvp(true, true[:500])
    X = torch.ones(5, 2)
    assert transport_cost(lambda x: x + 2.0, X) == pytest.approx(8.0)


def test_nll_is_the_change_of_variables_formula(tol):
    torch.manual_seed(0)
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4, num_modules=2)
    X = torch.randn(20, 2)
    T = flow._transform
    J = torch.stack([torch.autograd.functional.jacobian(T.transport, x) for x in X])
    Z = T.transport(X).detach()
    expected = (
        scipy.stats.multivariate_normal(np.zeros(2), np.eye(2)).logpdf(Z.numpy())
        + torch.linalg.slogdet(J)[1].numpy()
    )
    np.testing.assert_allclose(log_prob(flow, X).numpy(), expected, rtol=tol, atol=tol)
    assert nll(flow, X) == pytest.approx(-expected.mean(), rel=tol)


def test_kl_divergence_is_zero_for_the_exact_model():
    """A flow whose single block is the exact Brenier map has KL = 0 to float precision."""
    problem = GaussianCoupling.mgn_2d()
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=2, num_modules=1, gamma=1e-3)
    q = flow._transform.net
    with torch.no_grad():
        q.W.zero_()  # no nonlinear part: T(x) = (VᵀV + γI) x + a
        A = torch.as_tensor(problem.map_matrix) - 1e-3 * torch.eye(2)
        eigenvalues, Q = torch.linalg.eigh(A)
        q.quadratic.V.copy_((Q * eigenvalues.sqrt()) @ Q.T)
        q.quadratic.a.copy_(torch.as_tensor(problem.map_offset))
    X = problem.sample(1000, seed=0)
    assert abs(kl_divergence(flow, X, problem.log_prob)) < 1e-10
    assert nll(flow, X) == pytest.approx(-problem.log_prob(X).mean(), abs=1e-10)


def test_two_moons_and_load_array(tmp_path):
    X = two_moons(500, seed=0)
    assert X.shape == (500, 2) and np.isfinite(X).all()
    np.save(tmp_path / "x.npy", X)
    np.testing.assert_array_equal(load_array(tmp_path / "x.npy"), X)
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", header="a,b", comments="")
    np.testing.assert_allclose(load_array(tmp_path / "x.csv"), X)
    (tmp_path / "bad.csv").write_text("a,b\n1,x\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 2, column 2 \(b\): .x. is not a number"):
        load_array(tmp_path / "bad.csv")
    (tmp_path / "x.txt").write_text("1,2\n")
    with pytest.raises(ValueError, match=r"\.npy or \.csv"):
        load_array(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_array(tmp_path / "missing.npy")


GOOD = np.random.default_rng(1).standard_normal((20, 2))


@pytest.mark.parametrize(
    "metric, arguments, error, message",
    [
        (l2_uvp, (GOOD, GOOD[:, :1]), ValueError, r"true must have 2 features"),
        (l2_uvp, (np.zeros((0, 2)), GOOD), ValueError, "pred is empty"),
        (l2_uvp, (GOOD, np.where(GOOD > 1, np.nan, GOOD)), ValueError, "true contains"),
        (l2_uvp, (GOOD.astype(str), GOOD), TypeError, "pred must hold real numbers"),
        (l2_uvp, (GOOD[0], GOOD), ValueError, r"pred must be a matrix \[N, D\]"),
        (map_cosine, (GOOD, GOOD, np.full((20, 2), np.inf)), ValueError, "true contains"),
        (map_cosine, (GOOD, GOOD[:, :1], GOOD), ValueError, "pred must have 2 features"),
        (sinkhorn_divergence, (GOOD, GOOD[:, :1]), ValueError, "Y must have 2 features"),
        (sinkhorn_divergence, (np.zeros((0, 2)), GOOD), ValueError, "X is empty"),
        (sinkhorn_divergence, ([[0.0, 1.0]], GOOD), TypeError, "X must be a torch.Tensor"),
        (transport_cost, (lambda x: x, torch.zeros(3, 2, dtype=torch.long)), TypeError, "X"),
        (
            gaussian_w2_squared,
            (np.zeros(2), np.eye(2), np.zeros(3), np.eye(3)),
            ValueError,
            "C1 and C2 must have the same shape",
        ),
        (
            gaussian_w2_squared,
            (np.zeros(2), np.ones((2, 3)), np.zeros(2), np.eye(2)),
            ValueError,
            r"C1 must be a square covariance",
        ),
        (
            gaussian_w2_squared,
            (np.zeros((2, 1)), np.eye(2), np.zeros(2), np.eye(2)),
            ValueError,
            r"m1 must be a mean vector \[2\]",
        ),
        (
            gaussian_w2_squared,
            (np.array([0.0, np.nan]), np.eye(2), np.zeros(2), np.eye(2)),
            ValueError,
            "m1 contains 1 NaN",
        ),
        (gaussian_entropy, (-np.eye(2),), ValueError, "positive definite"),
    ],
)
def test_metrics_reject_bad_input(metric, arguments, error, message):
    with pytest.raises(error, match=message):
        metric(*arguments)


def test_kl_divergence_rejects_the_wrong_dimension():
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4)
    with pytest.raises(ValueError, match="X must have 2 features"):
        kl_divergence(flow, np.zeros((4, 3)), lambda x: np.zeros(len(x)))
