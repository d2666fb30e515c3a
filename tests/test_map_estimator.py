"""BrenierMap as an estimator: POT's and scikit-learn's conventions, validation without a known
map, and checkpoints that resume a killed fit exactly."""

import re
from types import SimpleNamespace

import numpy as np
import ot
import pytest
import torch
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from otflows import BrenierMap
from otflows.datasets import GaussianCoupling
from otflows.metrics import wasserstein2_squared
from otflows.training import loop

SMALL = {"net": "mmgn", "hidden_features": 8, "progress": False, "random_state": 0}


@pytest.fixture(scope="module")
def pair():
    problem = GaussianCoupling.random_pair(2, seed=0)
    return problem, problem.sample(600, seed=1), problem.sample_target(600, seed=2)


def test_parameters_come_from_the_signature_and_clone_works():
    otmap = BrenierMap(lr=0.05, patience=3, random_state=np.random.default_rng(1))
    params = otmap.get_params()
    assert params["lr"] == 0.05 and params["patience"] == 3 and params["net"] == "qicnn"
    twin = clone(otmap)
    assert twin.get_params()["lr"] == 0.05 and twin is not otmap
    assert otmap.set_params(batch_size=64) is otmap and otmap.batch_size == 64
    with pytest.raises(ValueError, match="Invalid parameter"):
        otmap.set_params(learning_rate=1.0)
    assert repr(BrenierMap(lr=0.05, net="mmgn")) == "BrenierMap(lr=0.05, net='mmgn')"


@pytest.mark.parametrize(
    "random_state",
    [0, np.int64(0), np.random.default_rng(0), np.random.RandomState(0), None],
)
def test_random_state_accepts_what_scikit_learn_does(pair, random_state):
    _, Xs, Xt = pair
    otmap = BrenierMap(**(SMALL | {"random_state": random_state, "max_iter": 2, "init_iter": 0}))
    assert otmap.fit(Xs=Xs, Xt=Xt).transform(Xs[:3]).shape == (3, 2)


def test_seeded_fits_are_identical_and_generators_draw_their_seed(pair):
    _, Xs, Xt = pair
    settings = SMALL | {"max_iter": 5, "init_iter": 5}
    a = BrenierMap(**settings).fit(Xs=Xs, Xt=Xt).transform(Xs)
    b = BrenierMap(**settings).fit(Xs=Xs, Xt=Xt).transform(Xs)
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(5)
    c = BrenierMap(**(settings | {"random_state": rng})).fit(Xs=Xs, Xt=Xt).transform(Xs)
    d = BrenierMap(**(settings | {"random_state": rng})).fit(Xs=Xs, Xt=Xt).transform(Xs)
    assert not np.array_equal(c, d)  # the generator moved on between the fits
    with pytest.raises(TypeError, match="random_state must be None, an int"):
        BrenierMap(**(settings | {"random_state": "7"})).fit(Xs=Xs, Xt=Xt)


def test_fitted_state_and_devices(pair, tmp_path):
    _, Xs, Xt = pair
    otmap = BrenierMap(**(SMALL | {"max_iter": 2, "init_iter": 0}))
    with pytest.raises(Exception, match="not fitted"):
        check_is_fitted(otmap)
    otmap.fit(Xs=Xs, Xt=Xt)
    check_is_fitted(otmap)
    assert next(otmap.transform_.parameters()).device.type == "cpu"  # never CUDA unasked
    otmap.save(tmp_path / "map.pt")
    loaded = BrenierMap.load(tmp_path / "map.pt")
    assert repr(loaded).startswith("BrenierMap(") and "net='mmgn'" in repr(loaded)
    check_is_fitted(loaded)


def test_pot_signature_and_its_positional_traps(pair):
    _, Xs, Xt = pair
    otmap = BrenierMap(**(SMALL | {"max_iter": 2, "init_iter": 0}))
    with pytest.raises(ValueError, match=r"call fit\(Xs=..., Xt=...\)"):
        otmap.fit(Xs, Xt)  # POT's fit(Xs, ys, Xt, yt): Xt would land in ys
    Y = otmap.fit(Xs=Xs, ys=None, Xt=Xt, yt=None).transform(Xs=Xs, batch_size=7)
    np.testing.assert_allclose(otmap.inverse_transform(Xt=Y, batch_size=100), Xs, atol=1e-4)
    with pytest.raises(ValueError, match=r"call inverse_transform\(Xt=...\)"):
        otmap.inverse_transform(Y)
    with pytest.raises(NotImplementedError, match="no coupling"):
        otmap.transform_labels(np.zeros(3))


@pytest.mark.parametrize("score", ["objective", "w2"])
def test_validation_scores_held_out_samples_and_keeps_the_best(pair, score, float64):
    """Every validation is logged: the exact W2² between the held-out T#μ and ν samples and the
    objective's held-out value (each recomputed here for the kept weights); the weights kept
    are those of the best score, the Bures start (step 0) among the candidates; the fit ends
    at them or at the Bures map, whichever the fallback kept."""
    problem, Xs, Xt = pair
    Xs_val, Xt_val = problem.sample(300, seed=4), problem.sample_target(300, seed=5)
    settings = SMALL | {"max_iter": 40, "validation_interval": 10, "dtype": "float64"}
    settings["validation_score"] = score
    otmap = BrenierMap(**settings).fit(Xs=Xs, Xt=Xt, Xs_val=Xs_val, Xt_val=Xt_val)
    history = otmap.log_["fit"]
    assert history["val_step"] == [0, 10, 20, 30, 40]
    metrics = history["val_metrics"]
    assert history["val_loss"] == metrics[score] and len(metrics["w2"]) == 5
    best = int(np.argmin(metrics[score]))
    assert history["best_step"] == history["val_step"][best]
    record = otmap.log_["fallback"]  # the kept weights, then the Bures map beside them
    assert record["w2_network"] == pytest.approx(metrics["w2"][best])
    if otmap.log_["kept"] == "network":
        assert wasserstein2_squared(otmap.transform(Xs_val), Xt_val) == pytest.approx(
            record["w2_network"]
        )
    else:  # the Bures map of all the rows given, held-out ones too
        rows = np.concatenate([Xs, Xs_val]), np.concatenate([Xt, Xt_val])
        bures = ot.da.LinearTransport().fit(Xs=rows[0], Xt=rows[1])
        np.testing.assert_allclose(
            otmap.transform(Xs_val), bures.transform(Xs=Xs_val), rtol=1e-5, atol=1e-5
        )


def test_the_start_is_kept_when_training_wrecks_the_map(pair, float64):
    _, Xs, Xt = pair
    """With a learning rate that wrecks the map, the start (Bures quadratic term) is kept."""
    settings = SMALL | {"init_iter": 0, "dtype": "float64", "validation_fraction": 0.25}
    settings["objective"] = "likelihood"  # no conjugates of a wrecked map to solve
    wrecked = BrenierMap(**settings, max_iter=20, lr=50.0, clip_grad=None, validation_interval=5)
    wrecked.fit(Xs=Xs, Xt=Xt)
    assert wrecked.log_["fit"]["best_step"] == 0
    start = BrenierMap(**settings, max_iter=1, lr=1e-12).fit(Xs=Xs, Xt=Xt)
    np.testing.assert_allclose(wrecked.transform(Xs), start.transform(Xs), atol=1e-8)


def test_early_stopping_stops_after_patience_validations(pair):
    _, Xs, Xt = pair
    otmap = BrenierMap(
        **(SMALL | {"max_iter": 200, "lr": 50.0, "validation_interval": 5, "patience": 2}),
        objective="likelihood",
    )
    otmap.fit(Xs=Xs, Xt=Xt)
    history = otmap.log_["fit"]
    assert history["stopped_early"]
    assert len(history["loss"]) == history["val_step"][-1] < 200
    assert len(history["val_step"]) - 1 - history["val_step"].index(history["best_step"]) == 2


def test_a_time_budget_stops_the_fit_annealed(pair, monkeypatch):
    """With ``max_time`` (on a clock that advances 1 s per reading) the fit stops when the
    budget left after the Bures start is spent, far short of ``max_iter``, and its learning
    rate ends annealed, as after a full schedule."""
    _, Xs, Xt = pair
    clock = iter(range(10**6))
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    otmap = BrenierMap(**(SMALL | {"max_iter": 10**5, "init_iter": 5, "max_time": 45}))
    otmap.fit(Xs=Xs, Xt=Xt)
    fit = otmap.log_["fit"]
    # two readings per step: the Bures start's 5 steps take 10 s, leaving 35 to training
    assert otmap.log_["init"]["seconds"] == 10 and not otmap.log_["init"]["out_of_time"]
    assert fit["out_of_time"] and 35 <= fit["seconds"] < 37 and len(fit["loss"]) == 18
    assert fit["lr"][-1] < 0.05 * max(fit["lr"]) and fit["val_step"][-1] == len(fit["loss"])


@pytest.mark.parametrize(
    ("fit_args", "params", "error", "match"),
    [
        ({"Xs_val": np.ones((5, 3)), "Xt_val": np.ones((5, 2))}, {}, ValueError, "Xs_val must"),
        ({"Xs_val": np.ones((5, 2)), "Xt_val": np.full((5, 2), np.nan)}, {}, ValueError, "Xt_val"),
        ({"Xs_val": np.ones((5, 2))}, {}, ValueError, "give both Xs_val and Xt_val"),
        ({}, {"validation_fraction": 0.0005}, ValueError, "leaves 0 for validation"),
        ({}, {"validation_fraction": 1.0}, ValueError, r"validation_fraction must be in \[0, 1\)"),
        ({}, {"validation_score": "l2"}, ValueError, "validation_score must be one of"),
        ({}, {"patience": 0}, ValueError, "patience must be a positive integer"),
        ({}, {"hidden_features": 0}, ValueError, "hidden_features must be a positive integer"),
        ({}, {"hidden_features": 8.0}, ValueError, "hidden_features must be a positive integer"),
        ({}, {"lr": -1e-3}, ValueError, "lr must be a positive number or None"),
        ({}, {"lr": float("inf")}, ValueError, "lr must be a positive number or None"),
        ({}, {"validation_interval": 0}, ValueError, "validation_interval must be a positive"),
        ({}, {"max_time": 0}, ValueError, "max_time must be a positive number of seconds"),
        ({}, {"max_time": float("nan")}, ValueError, "max_time must be a positive number"),
        ({}, {"fallback": "yes"}, ValueError, "fallback must be True or False; got 'yes'"),
    ],
)
def test_validation_input_is_checked(pair, fit_args, params, error, match):
    _, Xs, Xt = pair
    with pytest.raises(error, match=match):
        BrenierMap(**(SMALL | {"max_iter": 1} | params)).fit(Xs=Xs, Xt=Xt, **fit_args)


def test_checkpoints_every_checkpoint_every_steps_as_fit_flow(pair, tmp_path, monkeypatch):
    """``checkpoint_every`` sets the steps between saves, as in ``fit_flow``; by default they
    follow ``validation_interval``."""
    _, Xs, Xt = pair
    saved: list[int] = []
    save = loop.atomic_save
    monkeypatch.setattr(
        loop,
        "atomic_save",
        lambda payload, path: saved.append(payload["step"]) or save(payload, path),
    )
    settings = SMALL | {"max_iter": 12, "init_iter": 6, "validation_interval": 4}
    BrenierMap(**settings).fit(Xs=Xs, Xt=Xt, checkpoint=tmp_path / "a.pt")
    assert saved == [4, 6, 4, 8, 12]  # the Bures start's 6 steps, then the fit's 12
    saved.clear()
    BrenierMap(**settings).fit(Xs=Xs, Xt=Xt, checkpoint=tmp_path / "b.pt", checkpoint_every=5)
    assert saved == [5, 6, 5, 10, 12]


def test_a_killed_fit_resumes_to_the_uninterrupted_result(pair, tmp_path, float64):
    """Killed in the objective's phase, then in a refinement round's regression, and resumed
    from the checkpoint each time by a fresh estimator: the same map to the last bit, and the
    same logs."""
    _, Xs, Xt = pair
    settings = SMALL | {
        "max_iter": 20,
        "init_iter": 10,
        "batch_size": 64,
        "validation_interval": 4,
        "refine_rounds": 1,
        "refine_iter": 10,
        "dtype": "float64",
    }
    expected = BrenierMap(**settings).fit(Xs=Xs, Xt=Xt)
    path = tmp_path / "fit.pt"
    for phase in ("fit", "refine 1"):

        def kill(name, step, otmap, phase=phase):
            if name == phase and step == 12:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            BrenierMap(**settings).fit(Xs=Xs, Xt=Xt, checkpoint=path, resume=True, callback=kill)
    resumed = BrenierMap(**settings).fit(Xs=Xs, Xt=Xt, checkpoint=path, resume=True)
    np.testing.assert_array_equal(resumed.transform(Xs), expected.transform(Xs))
    for key in ("init", "fit"):
        assert resumed.log_[key]["loss"] == expected.log_[key]["loss"]
        assert resumed.log_[key]["val_loss"] == expected.log_[key]["val_loss"]
    assert resumed.log_["refine"][0]["regression"] == {
        **expected.log_["refine"][0]["regression"],
        "seconds": resumed.log_["refine"][0]["regression"]["seconds"],
    }
    message = f"its lr is {BrenierMap().lr}, this run's is 0.1"
    with pytest.raises(ValueError, match=re.escape(message)):
        BrenierMap(**(settings | {"lr": 0.1})).fit(Xs=Xs, Xt=Xt, checkpoint=path, resume=True)


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="asks for CUDA where there is none")


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("cdua", "device must be a torch device such as 'cpu', 'cuda' or 'cuda:1'; got 'cdua'"),
        pytest.param("cuda", "device is 'cuda', but CUDA is not available", marks=NO_CUDA),
        pytest.param("cuda:1", "device is 'cuda:1', but CUDA is not available", marks=NO_CUDA),
    ],
)
def test_an_unknown_or_absent_device_is_one_clear_error(pair, device, message):
    """Nothing falls back to the CPU: the fit refuses, naming the argument."""
    _, Xs, Xt = pair
    with pytest.raises(ValueError, match=re.escape(message)):
        BrenierMap(device=device, **SMALL).fit(Xs=Xs, Xt=Xt)
