"""Conditional BrenierMap: T(·; c) from samples labelled by condition, against each condition's
closed-form Bures map, at conditions seen in training and between them."""

import numpy as np
import pytest
import torch

from otflows import BrenierMap
from otflows.maps.conditions import ByCondition, Conditions
from otflows.metrics import l2_uvp

SMALL = {"hidden_features": 8, "progress": False, "random_state": 0}


def gaussian_target(c: float) -> tuple[np.ndarray, np.ndarray]:
    """The target N(m(c), S(c)) of condition c; from N(0, I) its Brenier map is S^½ x + m."""
    angle = np.pi * c
    R = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    root = R @ np.diag([np.exp(0.6 * c), np.exp(-0.4 * c)]) @ R.T  # S(c)^½
    return 2 * np.array([np.cos(angle), np.sin(angle)]), root


def labelled(conditions, n: int, seed: int):
    rng = np.random.default_rng(seed)
    Xt, ct = [], []
    for c in conditions:
        m, root = gaussian_target(c)
        Xt.append(rng.normal(size=(n, 2)) @ root + m)
        ct.append(np.full((n, 1), c))
    return rng.normal(size=(n * len(conditions), 2)), np.concatenate(Xt), np.concatenate(ct)


@pytest.fixture(scope="module")
def fitted():
    seen = np.linspace(0.0, 1.0, 9)
    Xs, Xt, ct = labelled(seen, 800, seed=0)
    otmap = BrenierMap(net="qicnn", max_iter=600, **SMALL).fit(Xs=Xs, Xt=Xt, ct=ct)
    return otmap, seen


def uvp(otmap, c: float) -> float:
    X = np.random.default_rng(1).normal(size=(3000, 2))
    m, root = gaussian_target(c)
    return l2_uvp(otmap.transform(X, cs=np.full((3000, 1), c)), X @ root + m)


def test_a_conditional_map_is_each_conditions_brenier_map_seen_or_not(fitted):
    otmap, seen = fitted
    on_seen = [uvp(otmap, c) for c in seen]
    between = [uvp(otmap, c) for c in (seen[:-1] + seen[1:]) / 2]
    assert max(on_seen) < 1.0, on_seen  # % of the target's variance
    assert np.mean(between) < 2 * np.mean(on_seen), (on_seen, between)
    # one map per condition, not one for all: the map at c = 0 misses the target at c = 1
    X = np.random.default_rng(2).normal(size=(2000, 2))
    m, root = gaussian_target(1.0)
    assert l2_uvp(otmap.transform(X, cs=np.zeros((2000, 1))), X @ root + m) > 50
    assert otmap.conditions_.flatten().tolist() == pytest.approx(seen.tolist())


def test_a_conditional_map_inverts_and_saves(fitted, tmp_path):
    otmap, _ = fitted
    X = np.random.default_rng(3).normal(size=(50, 2))
    c = np.random.default_rng(4).uniform(size=(50, 1))
    Y = otmap.transform(X, cs=c)
    np.testing.assert_allclose(otmap.inverse_transform(Xt=Y, ct=c), X, atol=1e-3)
    otmap.save(tmp_path / "map.pt")
    loaded = BrenierMap.load(tmp_path / "map.pt")
    np.testing.assert_array_equal(loaded.transform(X, cs=c), Y)
    assert loaded.context_features_ == 1


def test_labelled_sources_are_drawn_from_their_condition():
    ct = torch.tensor([[0.0], [1.0], [1.0], [2.0]])
    cs = torch.tensor([[2.0], [0.0], [1.0], [1.0], [0.0], [2.0]])
    conditions = Conditions(ct, cs)
    sampler = ByCondition(conditions, len(cs), (4000, 8), torch.Generator().manual_seed(0))
    i, j, k = sampler.draw()
    assert j.shape == (8,) and torch.equal(cs[i], ct[k])
    # each condition weighs its share of the target rows on both sides
    shares = torch.bincount(conditions.target[k], minlength=3).double() / len(k)
    torch.testing.assert_close(shares, torch.tensor([0.25, 0.5, 0.25]), atol=0.03, rtol=0)
    # and held-out terms reweighted to those shares: mean(w f) = Σ_g p_g mean_g(f)
    p, w_s, w_t = conditions.balance()
    f = torch.arange(6.0, dtype=torch.float64)
    by_condition = [f[conditions.source == g].mean() for g in range(3)]
    torch.testing.assert_close((w_s * f).mean(), sum(p[g] * by_condition[g] for g in range(3)))
    torch.testing.assert_close(p, torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64))
    assert float(w_t.mean()) == pytest.approx(1.0)


def test_labelled_sources_fit_their_own_conditions(float64):
    """With cs, each condition's map starts from that condition's source samples."""
    rng = np.random.default_rng(5)
    c = rng.integers(0, 2, size=(2000, 1)).astype(float)
    Xs = rng.normal(size=(2000, 2)) + 3 * c  # source of condition 1 shifted by (3, 3)
    Xt = rng.normal(size=(2000, 2)) * 0.5
    otmap = BrenierMap(net="mmgn", max_iter=300, **SMALL).fit(Xs=Xs, Xt=Xt, cs=c, ct=c)
    X = rng.normal(size=(1000, 2))
    for condition in (0.0, 1.0):
        x = X + 3 * condition
        true = 0.5 * X  # the Brenier map of each condition: x ↦ (x − 3c)/2
        assert l2_uvp(otmap.transform(x, cs=np.full((1000, 1), condition)), true) < 2.0


@pytest.mark.parametrize(
    "params, fit_args, match",
    [
        ({}, {"cs": np.zeros((40, 1))}, "cs is given without ct"),
        ({}, {"ct": np.zeros((39, 1))}, r"ct must have one row per row of Xt \(40\)"),
        ({}, {"ct": np.zeros((40, 1)), "cs": np.zeros((40, 2))}, "cs must have 1 features"),
        ({}, {"ct": np.full((40, 1), np.nan)}, "ct contains 40 NaN"),
        ({"net": "icnn"}, {"ct": np.zeros((40, 1))}, "net must be one of .* conditional fit"),
        ({"net": "picnn"}, {}, r"net must be one of .* unconditional \(no ct given\)"),
        ({"objective": "sinkhorn"}, {"ct": np.zeros((40, 1))}, "does not fit conditional"),
        ({"refine_rounds": 1}, {"ct": np.zeros((40, 1))}, "refine_rounds must be 0"),
        (
            {"validation_fraction": 0},
            {"ct": np.zeros((40, 1)), "cs": np.ones((40, 1))},
            r"cs and ct must label the same conditions: 1 condition\(s\) of cs have no rows",
        ),
        (
            {},
            {
                "ct": np.zeros((40, 1)),
                "Xs_val": np.zeros((5, 2)),
                "Xt_val": np.zeros((5, 2)),
            },
            "ct_val must be given with Xt_val",
        ),
    ],
)
def test_bad_conditions_are_clear_errors(params, fit_args, match):
    X = np.random.default_rng(0).normal(size=(40, 2))
    with pytest.raises(ValueError, match=match):
        BrenierMap(max_iter=2, **(SMALL | params)).fit(Xs=X, Xt=X, **fit_args)


def test_applying_a_map_checks_its_conditions(fitted):
    otmap, _ = fitted
    X = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"cs is required: this BrenierMap is conditional"):
        otmap.transform(X)
    with pytest.raises(ValueError, match=r"ct must have 1 features"):
        otmap.inverse_transform(Xt=X, ct=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"cs must have one row per row of Xs \(3\)"):
        otmap.transform(X, cs=np.zeros((2, 1)))
    Y = np.random.default_rng(0).normal(size=(40, 2))
    plain = BrenierMap(max_iter=2, init_iter=0, **SMALL).fit(Xs=Y, Xt=Y + 1)
    with pytest.raises(ValueError, match="cs must be None: this BrenierMap was fitted without"):
        plain.transform(X, cs=np.zeros((3, 1)))
