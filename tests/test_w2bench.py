"""The continuous W2 benchmark's loader: its potential against an independent NumPy evaluation,
the standardised true map, and the paper's linear baseline on the released weights."""

from pathlib import Path

import numpy as np
import pytest
import torch

from otflows.datasets import W2BenchmarkPair
from otflows.datasets.w2bench import FILE, DenseQuadraticICNN, GaussianMixture
from otflows.metrics import l2_uvp
from otflows.transforms.affine import bures_map

SHARED = Path(__file__).resolve().parents[2] / "shared" / "w2bench"


def random_arrays(D, h=(6, 5, 4), seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for i, width in enumerate(h):
        arrays[f"quadratic_layers.{i}.quadratic_decomposed"] = rng.normal(size=(D, 1, width))
        arrays[f"quadratic_layers.{i}.weight"] = rng.normal(size=(width, D))
        arrays[f"quadratic_layers.{i}.bias"] = rng.normal(size=width)
    arrays["convex_layers.0.weight"] = rng.uniform(0, 1, size=(h[1], h[0]))
    arrays["convex_layers.1.weight"] = rng.uniform(0, 1, size=(h[2], h[1]))
    arrays["final_layer.weight"] = rng.uniform(0, 1, size=(1, h[2]))
    return arrays


def numpy_potential(arrays, x):
    """ψ(x) for one point, written out loop by loop from the data's README."""

    def celu(v):
        return np.where(v > 0, v, np.expm1(np.minimum(v, 0)))

    def q(i):
        A = arrays[f"quadratic_layers.{i}.quadratic_decomposed"]
        W, b = arrays[f"quadratic_layers.{i}.weight"], arrays[f"quadratic_layers.{i}.bias"]
        return np.array(
            [sum((x @ A[:, r, h]) ** 2 for r in range(A.shape[1])) for h in range(A.shape[2])]
        ) + (W @ x + b)

    z = q(0)
    for j in range(2):
        z = celu(arrays[f"convex_layers.{j}.weight"] @ z + q(j + 1))
    return float(arrays["final_layer.weight"][0] @ z + 0.005 * x @ x)


def test_potential_matches_the_written_out_definition():
    arrays = random_arrays(3)
    psi = DenseQuadraticICNN(arrays)
    x = np.random.default_rng(1).normal(size=(7, 3))
    values = psi(torch.as_tensor(x)).numpy()
    expected = [numpy_potential(arrays, row) for row in x]
    np.testing.assert_allclose(values, expected, rtol=1e-12)


def test_potential_rejects_negative_convex_weights():
    arrays = random_arrays(2)
    arrays["convex_layers.1.weight"][0, 0] = -1.0
    with pytest.raises(ValueError, match="non-negative"):
        DenseQuadraticICNN(arrays)


def test_true_map_is_standardised_and_a_gradient_of_a_convex_function(tmp_path):
    for version in (1, 2):
        np.savez(tmp_path / FILE.format(dim=3, version=version), **random_arrays(3, seed=version))
    assert W2BenchmarkPair.available(tmp_path) == [3]
    pair = W2BenchmarkPair(tmp_path, 3)
    # the standardisation's own samples: mean 0 and unit mean per-coordinate variance
    Y = pair.brenier_map(pair.source.sample(2**14, seed=0))
    np.testing.assert_allclose(Y.mean(0), 0.0, atol=1e-10)
    assert Y.var(0).mean() == pytest.approx(1.0, rel=1e-10)
    # central differences (the map detaches its input): a symmetric positive definite Jacobian
    x, h = pair.sample_source(5, seed=1), 1e-5
    J = np.stack(
        [(pair.brenier_map(x + h * e) - pair.brenier_map(x - h * e)) / (2 * h) for e in np.eye(3)],
        axis=-1,
    )
    np.testing.assert_allclose(J, J.transpose(0, 2, 1), atol=1e-6)
    assert (np.linalg.eigvalsh(J) > 0).all()


def test_source_mixture_has_unit_mean_square_coordinates():
    X = GaussianMixture(5).sample(200_000, seed=0)
    assert np.square(X).mean() == pytest.approx(1.0, rel=0.02)


def test_source_mixture_draws_each_row_from_its_component():
    """Row i is c_k + sigma M_k eps_i for the component k and noise eps_i drawn in that order
    from the seed's generator (checked against the per-row matrix products)."""
    P = GaussianMixture(6, seed=2)
    X = P.sample(500, seed=7)
    rng = np.random.default_rng(7)
    k = rng.integers(3, size=500)
    eps = rng.standard_normal((500, 6))
    expected = np.stack(
        [P.centers[j] + P.std * P.maps[j] @ e for j, e in zip(k, eps, strict=True)]
    )
    np.testing.assert_allclose(X, expected, rtol=0, atol=1e-12)


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"the released weights are not in {SHARED}")
def test_linear_baseline_reproduces_the_paper_at_d_2():
    """The Bures map fitted to the released pair's moments scores the paper's [L] row, 14.1 %
    (an independent reimplementation: 14.0 %)."""
    pair = W2BenchmarkPair(SHARED, 2)
    Xs, Xt = pair.sample_source(50_000, seed=1), pair.sample_target(50_000, seed=2)
    A, b = bures_map(torch.as_tensor(Xs), torch.as_tensor(Xt))
    X = pair.sample_source(4096, seed=3)
    assert l2_uvp(X @ A.numpy() + b.numpy(), pair.brenier_map(X)) == pytest.approx(14.0, abs=0.3)


def test_mixture_weights_move_the_source_and_keep_the_true_map(tmp_path):
    """The conditional benchmark's pair: rows drawn with one-hot weights come from that
    component; its run scores a map at every dose against T*, which no reweighting changes."""
    from otflows.bench.conditional import mixture_weights, summarise, w2pair_run

    P = GaussianMixture(3)
    for k in range(3):
        X = P.sample(4000, seed=k, weights=np.eye(3)[[k] * 4000])
        np.testing.assert_allclose(X.mean(0), P.centers[k], atol=0.05)
    w = mixture_weights(np.array([-1.0, 0.0, 1.0]))
    np.testing.assert_allclose(w[1], 1 / 3)
    np.testing.assert_allclose(w[0], w[2, ::-1])
    assert w[0, 0] == pytest.approx(np.exp(2) / (np.exp(2) + 1 + np.exp(-2)))
    with pytest.raises(ValueError, match=r"weights must have shape \(2, 3\)"):
        P.sample(2, weights=np.ones((2, 2)) / 2)
    for version in (1, 2):
        np.savez(tmp_path / FILE.format(dim=3, version=version), **random_arrays(3, seed=version))
    run = w2pair_run(str(tmp_path), 3, samples=100, steps=5, threads=1)
    assert [d["seen"] for d in run["doses"]] == [i % 2 == 0 for i in range(17)]
    assert [d["dose"] for d in run["pooled"]] == [d["dose"] for d in run["doses"]]
    rows = summarise(run)
    assert len(rows) == 3 and all(np.isfinite(r["l2_uvp"]) and r["l2_uvp"] > 0 for r in rows)
    assert summarise({"error": "skipped"}) == [{"error": "skipped"}]
