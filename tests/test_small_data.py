"""Few rows per dimension: BrenierMap never ends worse than the Bures map it starts from, the
entropic map beside it, and the paired held-out score that decides between them."""

import numpy as np
import ot
import pytest
import torch
from small_data_study import rendered

from otflows import MMGN, BrenierMap, BrenierTransform, EntropicMap
from otflows.datasets import GaussianCoupling, two_moons
from otflows.maps import fallback
from otflows.maps.entropic import sinkhorn_potentials
from otflows.maps.settings import settings_for
from otflows.metrics import extrapolation_ratio, l2_uvp, w2_difference, wasserstein2_squared
from otflows.nets import build_net
from otflows.transforms.affine import bures_map, start_affine

FAST = {"hidden_features": 16, "progress": False, "random_state": 0, "dtype": "float64"}


def _bures(Xs: np.ndarray, Xt: np.ndarray):
    linear = ot.da.LinearTransport().fit(Xs=Xs, Xt=Xt)
    return lambda X: linear.transform(Xs=X)


def test_a_small_sample_fit_ends_within_noise_of_the_bures_map_or_better():
    """A Gaussian pair (the Bures map is the true one) with 60 rows per side in d = 6: the
    default settings (those of few rows per dimension) overfit them; the fit's held-out test
    rows score it no worse than 1.05× the Bures map of the same rows, and the fit says what
    it kept and why."""
    pair = GaussianCoupling.random_pair(6, seed=3)
    Xs, Xt = pair.sample(60, seed=1), pair.sample_target(60, seed=2)
    Xs_test, Xt_test = pair.sample(2000, seed=3), pair.sample_target(2000, seed=4)
    defaults = {"progress": False, "random_state": 0, "dtype": "float64"}
    otmap = BrenierMap(max_iter=400, **defaults).fit(Xs=Xs, Xt=Xt)
    assert otmap.settings_["size"] == "few rows"
    bures = _bures(Xs, Xt)
    ours = wasserstein2_squared(otmap.transform(Xs_test), Xt_test)
    assert ours <= 1.05 * wasserstein2_squared(bures(Xs_test), Xt_test)
    assert l2_uvp(otmap.transform(Xs_test), pair.brenier_map(Xs_test)) <= 1.05 * l2_uvp(
        bures(Xs_test), pair.brenier_map(Xs_test)
    )
    record = otmap.log_["fallback"]
    assert otmap.log_["kept"] == record["kept"] in ("network", "bures")
    assert record["difference_se"] > 0 and record["w2_baseline"] > 0


def test_the_settings_follow_the_training_rows_per_dimension():
    """Below 100 training rows per dimension on the smaller side: width 16, lr 1e-2; from 100
    on: width 64, lr 3e-2. Below 500 held-out rows on the smaller side the weights are kept by
    held-out W2², from 500 on by the objective. Settings given are kept at every size."""
    defaults = BrenierMap().get_params()
    assert settings_for(defaults, 800, 8, 1.0, held_out=500) == {
        "hidden_features": 64,
        "lr": 3e-2,
        "validation_score": "objective",
        "gamma": 1e-2,
        "rows_per_dimension": 100.0,
        "size": "many rows",
        "held_out_rows": 500,
        "bures_slope": 1.0,
    }
    few = settings_for(defaults, 799, 8, 1.0, held_out=500)
    assert (few["size"], few["hidden_features"], few["lr"], few["validation_score"]) == (
        "few rows",
        16,
        1e-2,
        "objective",
    )
    assert settings_for(defaults, 800, 8, 1.0, held_out=499)["validation_score"] == "w2"
    given = BrenierMap(hidden_features=32, validation_score="objective").get_params()
    assert settings_for(given, 799, 8, 1.0, held_out=100)["hidden_features"] == 32
    assert settings_for(given, 799, 8, 1.0, held_out=100)["validation_score"] == "objective"
    assert settings_for(given, 800, 8, 1.0, held_out=100)["lr"] == 3e-2


def test_a_fit_uses_the_settings_of_its_size_and_saves_them(tmp_path):
    """300 and 200 rows in d = 4, a quarter held out: 150 training rows on the smaller side,
    37.5 per dimension, and 50 held out. The network is 16 wide, its peak learning rate 1e-2,
    its kept weights those of the best held-out W2²; ``settings_`` and the log say so, and a
    saved map loads with the same network."""
    rng = np.random.default_rng(0)
    Xs, Xt = rng.normal(size=(300, 4)), 0.5 * rng.normal(size=(200, 4)) + 1
    otmap = BrenierMap(max_iter=40, init_iter=0, progress=False, random_state=0)
    otmap.fit(Xs=Xs, Xt=Xt)
    assert otmap.settings_ == otmap.log_["settings"]
    assert otmap.settings_["rows_per_dimension"] == 37.5
    assert otmap.settings_["size"] == "few rows"
    assert otmap.settings_["held_out_rows"] == 50
    narrow = sum(p.numel() for p in build_net("qicnn", 4, hidden_features=16).parameters())
    assert sum(p.numel() for p in otmap.transform_.net.parameters()) == narrow
    history = otmap.log_["fit"]
    assert max(history["lr"]) == pytest.approx(1e-2)
    assert history["val_loss"] == history["val_metrics"]["w2"]
    assert otmap.get_params()["hidden_features"] is None  # the argument as given
    otmap.save(tmp_path / "map.pt")
    loaded = BrenierMap.load(tmp_path / "map.pt")
    assert loaded.settings_ == otmap.settings_
    np.testing.assert_array_equal(loaded.transform(Xs), otmap.transform(Xs))


def test_gamma_follows_the_scales_of_the_data():
    """Data onto data a thousand times narrower: the Bures map's slopes are about 1e-3, below
    a fixed γ = 1e-2 (which held the map ten times too wide and far worse than the Bures map).
    γ is then an eighth of the smallest slope and the fit scores as the Bures map on fresh
    rows; a γ given above that slope is kept, with a warning naming it."""
    rng = np.random.default_rng(0)
    Xs, Xt = 100 * rng.normal(size=(600, 2)), 0.1 * rng.normal(size=(600, 2))
    fresh, fresh_t = 100 * rng.normal(size=(2000, 2)), 0.1 * rng.normal(size=(2000, 2))
    otmap = BrenierMap(max_iter=30, **FAST).fit(Xs=Xs, Xt=Xt)
    slope = otmap.settings_["bures_slope"]
    assert 5e-4 < slope < 2e-3 and otmap.settings_["gamma"] == pytest.approx(slope / 8)
    ours = wasserstein2_squared(otmap.transform(fresh), fresh_t)
    assert ours <= 1.05 * wasserstein2_squared(_bures(Xs, Xt)(fresh), fresh_t)
    with pytest.warns(UserWarning, match=r"gamma=0\.01 is at least the smallest slope"):
        BrenierMap(max_iter=2, gamma=1e-2, **FAST).fit(Xs=Xs, Xt=Xt)


def test_a_wrecked_network_ends_at_the_bures_map_of_all_rows_everywhere():
    """Trained at a learning rate that wrecks it, the map ends exactly at the Bures map of all
    the rows given (training and held-out), also far outside the rows' hull."""
    rng = np.random.default_rng(0)
    Xs, Xt = rng.normal(size=(300, 3)), rng.normal(size=(300, 3)) @ np.diag([2.0, 1.0, 0.5]) + 1
    settings = FAST | {"max_iter": 30, "lr": 50.0, "clip_grad": None, "objective": "likelihood"}
    otmap = BrenierMap(**settings).fit(Xs=Xs, Xt=Xt)
    assert otmap.log_["kept"] == otmap.log_["fallback"]["verdict"] == "bures"
    far = 20 * rng.normal(size=(50, 3))  # ~20 standard deviations out
    np.testing.assert_allclose(otmap.transform(far), _bures(Xs, Xt)(far), rtol=1e-6, atol=1e-6)
    # without the fallback the fit ends at the wrecked network, and the log keeps the verdict
    wrecked = BrenierMap(**settings, fallback=False).fit(Xs=Xs, Xt=Xt)
    assert wrecked.log_["kept"] == "network" and wrecked.log_["fallback"]["verdict"] == "bures"
    assert wrecked.log_["fallback"]["w2_network"] == otmap.log_["fallback"]["w2_network"]
    mapped = wrecked.transform(Xs)
    assert wasserstein2_squared(mapped, Xt) > 1.5 * wasserstein2_squared(otmap.transform(Xs), Xt)
    # the old name of the argument still works, with a warning naming the new one
    with pytest.warns(DeprecationWarning, match="floor is renamed fallback; the old name"):
        old = BrenierMap(**settings, floor=False).fit(Xs=Xs, Xt=Xt)
    np.testing.assert_array_equal(old.transform(Xs), mapped)


@pytest.fixture(scope="module")
def moons_fit():
    Xs, Xt = np.random.default_rng(0).normal(size=(2000, 2)), two_moons(2000, seed=1)
    return Xs, Xt, BrenierMap(max_iter=300, **FAST).fit(Xs=Xs, Xt=Xt)


def test_a_network_clearly_better_than_the_bures_map_is_kept(moons_fit):
    """N(0, I) → two moons, 2000 rows per side: the network maps the held-out rows
    significantly nearer the moons than the Bures map does, and is kept."""
    _, _, otmap = moons_fit
    record = otmap.log_["fallback"]
    assert otmap.log_["kept"] == "network"
    assert record["w2_network"] + 2 * record["difference_se"] < record["w2_baseline"]
    assert 0 < record["extrapolation"] <= record["extrapolation_limit"]


def test_a_kept_network_maps_rows_outside_the_training_rows_as_it_maps_rows_near_them(moons_fit):
    """Fresh rows outside the box of the training rows (up to 1.3 times their largest radius)
    are mapped about as far from the Bures map as their ten nearest training rows are."""
    Xs, Xt, otmap = moons_fit
    fresh = np.random.default_rng(5).normal(size=(20000, 2)) * 1.5
    radius = np.linalg.norm(fresh, axis=1)
    outside = (fresh < Xs.min(0)).any(1) | (fresh > Xs.max(0)).any(1)
    probes = fresh[outside & (radius < 1.3 * np.linalg.norm(Xs, axis=1).max())]
    assert len(probes) >= 20
    bures = _bures(Xs, Xt)
    ratio = extrapolation_ratio(
        Xs, otmap.transform(Xs) - bures(Xs), probes, otmap.transform(probes) - bures(probes)
    )
    assert np.quantile(ratio, 0.9) <= 2.0 and ratio.max() <= 3.0


def test_a_network_that_grows_off_the_rows_ends_at_the_bures_map(moons_fit, monkeypatch):
    """The same fit, held to a limit on growth off the rows that its network exceeds, ends at
    the Bures map however much better it maps the held-out rows."""
    Xs, Xt, _ = moons_fit
    monkeypatch.setattr(fallback, "_EXTRAPOLATION_LIMIT", 0.5)
    otmap = BrenierMap(max_iter=300, **FAST).fit(Xs=Xs, Xt=Xt)
    record = otmap.log_["fallback"]
    assert otmap.log_["kept"] == "bures" and record["extrapolation"] > 0.5
    assert record["w2_network"] + 3 * record["difference_se"] < record["w2_baseline"]
    far = 20 * np.random.default_rng(1).normal(size=(50, 2))
    A, b = otmap.bures_matrix_.numpy(), otmap.bures_offset_.numpy()
    np.testing.assert_allclose(otmap.transform(far), far @ A + b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ((8, 50), "Xs has 8 rows for 8 features: a map needs more rows than features"),
        ((50, 3), "Xt has 3 rows for 8 features"),
    ],
)
def test_fewer_rows_than_features_is_a_clear_error(rows, match):
    rng = np.random.default_rng(0)
    Xs, Xt = rng.normal(size=(rows[0], 8)), rng.normal(size=(rows[1], 8))
    with pytest.raises(ValueError, match=match):
        BrenierMap(validation_fraction=0, **FAST).fit(Xs=Xs, Xt=Xt)


def test_constant_features_and_duplicate_rows_give_a_finite_map():
    """A feature constant on the source side gets the Bures map's ridge; duplicated rows are
    samples: the map stays finite and invertible on every row."""
    rng = np.random.default_rng(0)
    Xs = np.repeat(rng.normal(size=(40, 3)), 3, axis=0)
    Xs[:, 1] = 2.0
    Xt = rng.normal(size=(120, 3))
    otmap = BrenierMap(max_iter=20, **FAST).fit(Xs=Xs, Xt=Xt)
    Y = otmap.transform(Xs)
    assert np.isfinite(Y).all()
    np.testing.assert_allclose(otmap.inverse_transform(Xt=Y), Xs, atol=1e-6)


def test_w2_difference_is_the_paired_difference_of_exact_scores():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(30, 2)), rng.normal(size=(25, 2))
    A, B = X + 0.5, 0.8 * X
    delta, se = w2_difference(A, B, Y)
    assert delta == pytest.approx(wasserstein2_squared(A, Y) - wasserstein2_squared(B, Y))
    assert w2_difference(B, A, Y) == pytest.approx((-delta, se))
    assert se > 0 and w2_difference(A, A, Y) == (0.0, 0.0)
    with pytest.raises(ValueError, match="A and B must map the same rows; got 30 and 29"):
        w2_difference(A, B[:29], Y)


def test_entropic_map_is_the_barycentric_projection_of_the_sinkhorn_plan():
    """On the training rows, the out-of-sample formula is the barycentre of each row's share of
    POT's entropic plan (float64, the same ε)."""
    rng = np.random.default_rng(0)
    Xs, Xt = rng.normal(size=(80, 3)), 2 * rng.normal(size=(70, 3)) + 1
    otmap = EntropicMap(tol=1e-11).fit(Xs=Xs, Xt=Xt)
    a, b = np.full(80, 1 / 80), np.full(70, 1 / 70)
    plan = ot.sinkhorn(
        a,
        b,
        ot.dist(Xs, Xt),
        otmap.epsilon_,
        method="sinkhorn_log",
        stopThr=1e-13,
        numItermax=100_000,
    )
    np.testing.assert_allclose(otmap.transform(Xs), (plan @ Xt) / a[:, None], atol=1e-7)
    assert otmap.epsilon_ == pytest.approx(0.05 * ot.dist(Xs, Xt).mean())
    mapped = otmap.transform(torch.as_tensor(Xs[:5], dtype=torch.float32))
    assert mapped.dtype == torch.float32 and mapped.shape == (5, 3)


def test_entropic_map_input_errors():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2))
    with pytest.raises(RuntimeError, match="EntropicMap is not fitted"):
        EntropicMap().transform(X)
    with pytest.raises(ValueError, match="epsilon must be a positive number; got -1"):
        EntropicMap(epsilon=-1).fit(Xs=X, Xt=X)
    with pytest.raises(ValueError, match="Xt must have 2 features"):
        EntropicMap().fit(Xs=X, Xt=rng.normal(size=(20, 3)))
    with pytest.raises(RuntimeError, match="Sinkhorn did not reach its tolerance"):
        sinkhorn_potentials(torch.as_tensor(X), torch.as_tensor(X) + 5, 1e-3, max_iter=10)


def test_the_study_table_reports_ratios_split_by_split():
    payload = {
        "args": {"candidates": ["BrenierMap()"]},
        "problems": ["p"],
        "baselines": [
            {
                "problem": "p",
                "split": s,
                "rows": 50,
                "d": 5,
                "w2_identity": 9.0,
                "w2_bures": 2.0 + s,
                "w2_entropic": 1.0,
                "w2_emd": 1.5,
                "entropic_seconds": 0.5,
            }
            for s in (0, 1)
        ],
        "fits": [
            {
                "problem": "p",
                "split": s,
                "candidate": "BrenierMap()",
                "w2": 2.0,
                "kept": k,
                "seconds": 3.0,
            }
            for s, k in ((0, "bures"), (1, "network"), (2, "entropic"))
        ],
    }
    table = rendered(payload)  # split 2 has no baselines: not scored
    assert "| p | 50 | 10 | 9 | 2.5 | 1 | 1.5 | 0.5 | 2 | 1 | 2 | 1/0/1 | 3 |" in table


def test_the_fallback_scores_the_semidual_difference_in_closed_form():
    """A "network" set exactly to another affine map x ↦ A₂x + b₂: the fallback's semi-dual
    difference against the Bures map is, on the held-out rows, the closed form of the two
    quadratic potentials ½xᵀAx + bᵀx and their conjugates ½(y − b)ᵀA⁻¹(y − b), term by term
    (float64), with the standard error of the paired terms; the worse map is not kept."""
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(400, 2, generator=generator, dtype=torch.float64)
    Y = X @ torch.tensor([[2.0, 0.3], [0.3, 0.5]], dtype=torch.float64) + 1
    Xs, Xs_val, Xt, Xt_val = X[:300], X[300:], Y[:300], Y[300:]
    T = BrenierTransform(MMGN(2, 4), gamma=0.1).double()
    T.initialize(Xs)
    A2 = torch.tensor([[1.5, 0.2], [0.2, 0.8]], dtype=torch.float64)
    b2 = torch.tensor([0.5, -0.3], dtype=torch.float64)
    start_affine(T, A2, b2, Xs, shrink=0.0)
    A, b = bures_map(Xs, Xt)
    record, _, _ = fallback.fall_back(T, (A, b), Xs, Xt, Xs_val, Xt_val, seed=0)

    def terms(A, b):
        phi = 0.5 * torch.einsum("ni,ij,nj->n", Xs_val, A, Xs_val) + Xs_val @ b
        z = Xt_val - b
        return phi, 0.5 * (z * torch.linalg.solve(A, z.T).T).sum(1)

    (phi2, conj2), (phi, conj) = terms(A2, b2), terms(A, b)
    source, target = phi2 - phi, conj2 - conj
    expected = float(source.mean() + target.mean())
    se = float((source.var() / len(source) + target.var() / len(target)).sqrt())
    assert record["semidual_difference"] == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert record["semidual_se"] == pytest.approx(se, rel=1e-6)
    assert expected > 0 and record["kept"] == "bures" and record["unconverged"] == 0
