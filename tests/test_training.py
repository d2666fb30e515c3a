"""Training: a small Gaussian fit reaches closed-form optima; the loop keeps its promises."""

import copy
import os
import re
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from otflows import BrenierFlow, fit_flow
from otflows.datasets import GaussianCoupling
from otflows.metrics import kl_divergence, nll, transport_cost
from otflows.training import loop
from otflows.training.gaussian import COPULA, GAUSSIAN
from otflows.transforms.marginal import MarginalSpline


def test_small_gaussian_fit_reaches_kl_and_cost():
    torch.manual_seed(0)
    problem = GaussianCoupling.mgn_2d()
    X, X_val, X_test = (
        problem.sample(n, seed=s) for n, s in ((20_000, 1), (2_000, 2), (5_000, 3))
    )
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=16, num_modules=4)
    fit_flow(
        flow, X, max_iter=700, batch_size=128, lr=0.05, X_val=X_val, random_state=0, progress=False
    )
    assert kl_divergence(flow, X_test, problem.log_prob) < 0.02
    cost = transport_cost(flow.transport, X_test)
    assert cost == pytest.approx(problem.w2_squared, rel=0.03)


def test_best_validation_weights_are_restored():
    torch.manual_seed(0)
    X = np.random.default_rng(0).normal(size=(512, 2))
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4, num_modules=2)
    # a learning rate high enough that later steps are worse than the best one
    history = fit_flow(
        flow,
        X,
        max_iter=60,
        lr=0.5,
        schedule=None,
        X_val=X[:128],
        validation_interval=5,
        random_state=0,
        gaussian_start=False,
        keep_gaussian=False,
        progress=False,
    )
    assert history.best_step > 0
    assert history.best_step == history.val_step[int(np.argmin(history.val_loss))]
    best = history.val_step.index(history.best_step)
    assert nll(flow, X[:128]) == pytest.approx(history.val_metrics["nll"][best], rel=1e-12)


@pytest.mark.parametrize(
    "shift, kept",
    [(0.01, 4), (1.0, 1)],  # within the held-out noise: the latest; far above it: the best
)
def test_the_latest_weights_within_the_validation_noise_are_kept(shift, kept):
    """With per-sample terms, validation keeps the latest weights whose score is not
    significantly worse than the best (paired over samples), else the best ones."""
    from otflows.training.loop import train
    from otflows.training.parts import Report, Schedule, Validation
    from otflows.training.samplers import WithReplacement

    w = torch.nn.Parameter(torch.zeros(1))
    model = torch.nn.ParameterList([w])
    generator = torch.Generator().manual_seed(0)
    calls = []

    def metrics():
        calls.append(w.item())
        # the score at steps 0, 1, 2, 3, 4: 3, 1 (the best), then `shift` above it, each
        # checkpoint's per-sample terms off by noise of mean 0 (standard error of a
        # paired difference ≈ 0.1)
        offset = [3.0, 1.0, 1.0 + shift, 1.0 + shift, 1.0 + shift][len(calls) - 1]
        noise = torch.randn(200, generator=generator)
        return {"score": (noise - noise.mean() + offset,), "value": offset}

    history = train(
        model,
        lambda i: (w - 1.0).square().sum(),
        WithReplacement((10,), (2,), torch.Generator()),
        Schedule(4, lr=0.1),
        validation=Validation(metrics, "score", every=1),
        report=Report(progress=False),
    )
    assert history.best_step == kept
    assert history.val_metrics["score"] == pytest.approx(history.val_metrics["value"])
    assert w.item() == calls[kept]


def test_cosine_schedule_and_clipping():
    X = np.random.default_rng(0).normal(size=(256, 2))
    flow = BrenierFlow(2, "cmgn", num_blocks=1, hidden_features=4)
    history = fit_flow(
        flow,
        X,
        epochs=2,
        batch_size=64,
        lr=0.1,
        clip_grad=1.0,
        validation_fraction=0,
        progress=False,
    )
    assert len(history.loss) == 8
    assert history.lr[0] == pytest.approx(0.1)
    assert history.lr[-1] < 0.1 * 0.2
    assert history.best_step is None


def test_seeded_runs_are_identical():
    X = np.random.default_rng(0).normal(size=(300, 2))
    losses = []
    for _ in range(2):
        torch.manual_seed(1)
        flow = BrenierFlow(2, "icgn", num_blocks=1, hidden_features=4)
        losses.append(fit_flow(flow, X, max_iter=10, random_state=5, progress=False).loss)
    assert losses[0] == losses[1]


_NORMAL = np.random.default_rng(0).normal(size=(300, 3))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(X=np.zeros((0, 2))), ValueError, "X is empty"),
        (dict(X=np.zeros((5, 3))), ValueError, "X must have 2 features"),
        (dict(X=np.array([[0.0, np.nan]])), ValueError, "NaN or Inf"),
        (dict(X=np.eye(5, 2) / 2, X_val=np.zeros((5, 3))), ValueError, "X_val must have 2"),
        (dict(X=np.c_[np.eye(5, 1), np.ones(5)]), ValueError, "X's column 1 is constant"),
        (dict(X=np.zeros((5, 2)), epochs=1, max_iter=1), ValueError, "either epochs or max_iter"),
        (dict(X=[[0.0, 1.0]]), TypeError, "torch.Tensor or a numpy.ndarray"),
        (dict(X=torch.zeros(5, 2, dtype=torch.float16)), TypeError, "dtype"),
    ],
)
def test_bad_input_is_named(kwargs, error, message):
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4)
    with pytest.raises(error, match=message):
        fit_flow(flow, progress=False, **kwargs)


@pytest.mark.parametrize(
    "X, warning",
    [
        (np.c_[_NORMAL, _NORMAL[:, :1]], r"covariance is singular \(some columns are linear"),
        (_NORMAL[:20], None),
        (np.random.default_rng(0).normal(size=(20, 30)), r"singular \(20 rows for 30 columns\)"),
        (np.random.default_rng(0).poisson(3.0, size=(300, 2)), "every value of X is a whole"),
    ],
)
def test_degenerate_data_are_fitted_with_a_stated_warning_and_a_finite_density(X, warning):
    """Collinear columns, fewer rows than columns, counts: a warning says what the fit does,
    and the density it ends with is finite (the Gaussian with a ridge at worst)."""
    flow = BrenierFlow(X.shape[1], "mmgn", num_blocks=2, hidden_features=4, num_modules=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_flow(flow, X, max_iter=3, random_state=0, progress=False)
    messages = [str(w.message) for w in caught if w.category is UserWarning]
    if warning is None:
        assert not messages
    else:
        assert len(messages) == 1 and re.search(warning, messages[0]), messages
        assert caught[0].filename == __file__  # the warning points at the caller's line
    assert torch.isfinite(flow.eval().log_prob(X)).all()


def test_data_on_another_device_is_refused(dtype):
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4)
    with pytest.raises(ValueError, match="X is on meta; the model is on "):
        fit_flow(flow, torch.zeros(5, 2, dtype=dtype, device="meta"), max_iter=1)


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    X = np.random.default_rng(0).normal(size=(200, 2))
    kwargs = dict(
        max_iter=23,
        batch_size=32,
        lr=0.05,
        X_val=X[:50],
        validation_interval=4,
        random_state=3,
        progress=False,
    )

    torch.manual_seed(0)
    reference = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4, num_modules=2)
    expected = fit_flow(reference, X, **kwargs)

    torch.manual_seed(0)
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4, num_modules=2)
    calls = {"n": 0}
    original = BrenierFlow.log_prob

    def interrupted(self, *args, **kw):
        if self.training:
            calls["n"] += 1
            if calls["n"] == 16:  # the 16th training step dies (after the checkpoint at 14)
                raise KeyboardInterrupt
        return original(self, *args, **kw)

    monkeypatch.setattr(BrenierFlow, "log_prob", interrupted)
    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        fit_flow(flow, X, checkpoint=path, checkpoint_every=7, **kwargs)
    monkeypatch.setattr(BrenierFlow, "log_prob", original)

    torch.manual_seed(123)  # a fresh process: nothing but the checkpoint carries the state
    resumed = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4, num_modules=2)
    history = fit_flow(resumed, X, checkpoint=path, resume=True, **kwargs)
    assert history.loss == expected.loss
    assert history.val_loss == expected.val_loss and history.best_step == expected.best_step
    for a, b in zip(resumed.state_dict().values(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_resume_rejects_another_runs_checkpoint(tmp_path):
    X = np.random.default_rng(0).normal(size=(64, 2))
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4)
    fit_flow(flow, X, max_iter=3, checkpoint=tmp_path / "run.pt", progress=False)
    with pytest.raises(ValueError, match="its steps is 3, this run's is 5"):
        fit_flow(flow, X, max_iter=5, checkpoint=tmp_path / "run.pt", resume=True, progress=False)


def test_callback_sees_the_flow_and_its_time_is_not_counted(monkeypatch):
    """On a clock that advances 1 s per reading, and 1000 s during each callback, the
    history's seconds leave out the callbacks' 3000 s."""
    now = [0.0]

    def perf_counter():
        now[0] += 1.0
        return now[0]

    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=perf_counter))
    X = np.random.default_rng(0).normal(size=(128, 2))
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4)
    seen = []

    def callback(phase, step, model):
        assert (phase, model) == ("fit", flow)
        seen.append(step)
        now[0] += 1000.0

    history = fit_flow(
        flow, X, max_iter=9, validation_interval=4, callback=callback, progress=False
    )
    assert seen == [4, 8, 9]
    assert 9 <= history.seconds < 100  # a few readings a step, none of the callbacks' time


def _rss_anonymous_mb() -> float:
    """This process's resident anonymous memory (not the file pages a memmap maps)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("RssAnon:"))
    return int(line.split()[1]) / 1024


def test_memmap_trains_like_the_array_it_holds(tmp_path):
    X = np.random.default_rng(0).normal(size=(300, 3))
    np.save(tmp_path / "x.npy", X)
    kwargs = dict(
        max_iter=12, batch_size=64, lr=0.05, random_state=2, validation_fraction=0, progress=False
    )
    weights = []
    for data in (X, np.load(tmp_path / "x.npy", mmap_mode="r")):
        torch.manual_seed(0)
        flow = BrenierFlow(3, "mmgn", num_blocks=2, hidden_features=4, num_modules=2)
        history = fit_flow(flow, data, **kwargs)
        weights.append((history.loss, flow.state_dict()))
    assert weights[0][0] == weights[1][0]
    for a, b in zip(weights[0][1].values(), weights[1][1].values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_memmap_names_the_rows_holding_nan(tmp_path):
    X = np.random.default_rng(0).normal(size=(40, 2))
    X[7, 1] = np.nan
    np.save(tmp_path / "x.npy", X)
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4)
    with pytest.raises(ValueError, match=r"X holds NaN or Inf in rows \[7\]"):
        fit_flow(flow, np.load(tmp_path / "x.npy", mmap_mode="r"), max_iter=2, batch_size=40)
    with pytest.raises(ValueError, match="X must have 2 features"):
        fit_flow(flow, np.load(tmp_path / "x.npy", mmap_mode="r")[:, :1], max_iter=2)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's /proc")
def test_memmap_is_never_loaded_whole(tmp_path):
    rows, features = 1_500_000, 16  # 192 MB of float64
    X = np.lib.format.open_memmap(tmp_path / "big.npy", "w+", np.float64, (rows, features))
    for start in range(0, rows, 250_000):
        X[start : start + 250_000] = np.random.default_rng(start).normal(size=(250_000, features))
    X.flush()
    del X
    flow = BrenierFlow(features, "mmgn", num_blocks=1, hidden_features=8, num_modules=2).double()
    warm_up = np.random.default_rng(0).normal(size=(256, features))  # one-off allocations
    fit_flow(
        copy.deepcopy(flow),
        warm_up,
        max_iter=1,
        batch_size=256,
        validation_fraction=0,
        gaussian_start=False,
        progress=False,
    )
    before, during = _rss_anonymous_mb(), []
    fit_flow(
        flow,
        np.load(tmp_path / "big.npy", mmap_mode="r"),
        max_iter=6,
        batch_size=256,
        validation_interval=3,
        progress=False,
        callback=lambda *_: during.append(_rss_anonymous_mb()),
    )
    # the shuffling order is 12 MB; a whole copy would add 192 MB
    assert max(during) - before < 60


@pytest.mark.parametrize("gaussian_start", [False, True])
def test_the_gaussian_is_kept_when_no_trained_checkpoint_beats_it(float64, gaussian_start):
    """A learning rate that wrecks the flow: it ends at the Gaussian of X exactly (closed-form
    log-density on held-out points), not at the copula of its marginal splines, which is no
    better on Gaussian data, also where a feature's scale is beyond one block's reach (300 >
    1/γ: its ActNorms start again from the unscaled rows); the history says so and scores that
    Gaussian."""
    rng = np.random.default_rng(1)
    X = torch.as_tensor(rng.normal(size=(400, 2)) * [300.0, 0.5] + 1.0)
    X_val, X_test = X[:40], torch.as_tensor(rng.normal(size=(100, 2)) * [300.0, 0.5] + 1.0)
    torch.manual_seed(0)
    flow = BrenierFlow(2, "mmgn", num_blocks=2, hidden_features=4, num_modules=2)
    history = fit_flow(
        flow,
        X[40:],
        X_val=X_val,
        max_iter=20,
        lr=1.0,
        gaussian_start=gaussian_start,
        progress=False,
    )
    assert history.kept_gaussian and history.gaussian == GAUSSIAN
    gaussian = MultivariateNormal(X[40:].mean(0), X[40:].T.cov())
    assert history.gaussian_nll == pytest.approx(-gaussian.log_prob(X_val).mean().item(), abs=1e-3)
    assert history.gaussian_nll < history.best_metrics["nll"]
    with torch.no_grad():
        gap = flow.log_prob(X_test) - gaussian.log_prob(X_test)
    assert gap.abs().max().item() < 5e-3


def test_the_gaussian_copula_is_kept_where_it_beats_the_gaussian(float64):
    """Exponential marginals and a learning rate that wrecks the flow: a flow with marginal
    splines ends at its start, the Gaussian copula of X (on held-out points the spline's
    log-slopes plus the Gaussian of its outputs, computed here from the spline alone), which
    beat the plain Gaussian; the history names it."""
    rng = np.random.default_rng(4)
    X = torch.as_tensor(rng.exponential(size=(1000, 2)) @ np.array([[1.0, 0.5], [0.0, 1.0]]))
    X_val, X_test = X[:100], X[100:200]
    torch.manual_seed(0)
    flow = BrenierFlow(2, "mmgn", num_blocks=2, hidden_features=4, num_modules=2)
    history = fit_flow(
        flow, X[200:], X_val=X_val, max_iter=20, lr=1.0, gaussian_start=False, progress=False
    )
    assert history.kept_gaussian and history.gaussian == COPULA
    spline = next(m for m in flow.modules() if isinstance(m, MarginalSpline))
    rows = X[200:]  # the rows fitted (X_val is given, not held out of them)
    z = spline(rows)[0].detach()
    f, log_slope = spline(X_test)
    copula = MultivariateNormal(z.mean(0), z.T.cov()).log_prob(f) + log_slope
    plain = MultivariateNormal(rows.mean(0), rows.T.cov()).log_prob(X_test)
    with torch.no_grad():
        assert (flow.log_prob(X_test) - copula).abs().max().item() < 5e-3
    assert copula.mean().item() > plain.mean().item() + 0.1


def test_trained_weights_are_kept_when_they_beat_the_gaussian(float64):
    """Two separated clusters: a trained flow beats their Gaussian and is kept as trained."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(2000, 2)) * 0.3 + rng.choice([-2.0, 2.0], size=(2000, 1))
    torch.manual_seed(0)
    flow = BrenierFlow(2, "mmgn", num_blocks=2, hidden_features=16, num_modules=4, marginals=False)
    history = fit_flow(
        flow, X, max_iter=300, batch_size=256, gaussian_start=False, random_state=0, progress=False
    )
    assert not history.kept_gaussian
    assert history.best_metrics["nll"] < history.gaussian_nll - 0.05
    gaussian = MultivariateNormal(torch.as_tensor(X).mean(0), torch.as_tensor(X).T.cov())
    assert nll(flow, X) < -gaussian.log_prob(torch.as_tensor(X)).mean().item() - 0.05


def test_auto_starts_few_rows_per_dimension_at_the_gaussian(float64):
    """With fewer than 100 training rows per dimension the flow starts at the Gaussian (its
    first validation scores the Gaussian's NLL), at Adam 1e-2; with more, from random weights,
    at 3e-2 (after a warm-up, here of one step)."""
    X = torch.as_tensor(np.random.default_rng(3).normal(size=(630, 2)) * [2.0, 0.3])
    X_val = X[:30]
    runs = {}
    for rows in (150, 600):  # 75 and 300 rows per dimension
        torch.manual_seed(0)
        flow = BrenierFlow(
            2, "mmgn", num_blocks=2, hidden_features=4, num_modules=2, marginals=False
        )
        train = X[30 : 30 + rows]
        runs[rows] = fit_flow(flow, train, X_val=X_val, max_iter=3, progress=False)
        gaussian = MultivariateNormal(train.mean(0), train.T.cov())
        gap = runs[rows].val_metrics["nll"][0] + gaussian.log_prob(X_val).mean().item()
        assert (abs(gap) < 1e-3) == (rows == 150)
    assert runs[150].lr[0] == pytest.approx(1e-2) and runs[600].lr[0] == pytest.approx(3e-2)
    with pytest.raises(ValueError, match="gaussian_start must be True, False or 'auto'"):
        fit_flow(flow, X, max_iter=1, gaussian_start="yes", progress=False)


def _conditional_gaussian(n, seed):
    """x | c ~ N((2c, −c), diag(0.3², 0.5²)), c ~ U(−2, 2): samples, contexts, entropy."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(-2, 2, size=(n, 1))
    x = np.hstack([2 * c, -c]) + rng.normal(size=(n, 2)) * np.array([0.3, 0.5])
    entropy = 0.5 * np.log((2 * np.pi * np.e) ** 2 * (0.3 * 0.5) ** 2)
    return x, c, entropy


def test_fit_flow_learns_a_conditional_density():
    """A conditional Brenier flow reaches the conditional Gaussian's entropy on held-out
    samples, far below what any density of x alone can (its marginal is spread by the mean)."""
    from otflows.metrics import nll

    X, C, entropy = _conditional_gaussian(8000, seed=0)
    X_test, C_test, _ = _conditional_gaussian(4000, seed=1)
    torch.manual_seed(0)
    flow = BrenierFlow(2, "mmgn", context_features=1, hidden_features=8).double()
    history = fit_flow(flow, X, c=C, max_iter=1500, batch_size=256, random_state=0, progress=False)
    assert history.best_metrics["nll"] < entropy + 0.05
    assert nll(flow, X_test, context=C_test) - entropy < 0.05
    marginal = 0.5 * np.log(np.linalg.det(2 * np.pi * np.e * np.cov(X.T)))
    assert marginal - entropy > 1.0  # what ignoring the context would cost, at best


def test_fit_flow_context_errors():
    X, C, _ = _conditional_gaussian(100, seed=0)
    flow = BrenierFlow(2, "mmgn", context_features=1, hidden_features=4)
    with pytest.raises(ValueError, match=r"c must have one row per row of X \(100\)"):
        fit_flow(flow, X, c=C[:50], max_iter=1, progress=False)
    with pytest.raises(ValueError, match="c_val needs c"):
        fit_flow(flow, X, c_val=C, max_iter=1, progress=False)
    with pytest.raises(ValueError, match="c_val must be given with X_val"):
        fit_flow(flow, X, c=C, X_val=X, max_iter=1, progress=False)
    with pytest.raises(ValueError, match="context must have shape"):
        fit_flow(flow, X, max_iter=1, validation_fraction=0, progress=False)


def test_the_old_names_work_for_a_release_with_a_warning():
    """``seed`` and ``eval_every`` are ``random_state`` and ``validation_interval``, as in
    ``BrenierMap``: the old names fit the same, with a warning naming the new ones."""
    X = np.random.default_rng(0).normal(size=(128, 2))

    def fitted(**names):
        torch.manual_seed(0)
        flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4)
        return fit_flow(flow, X, max_iter=6, batch_size=32, progress=False, **names)

    with (
        pytest.warns(DeprecationWarning, match="seed is renamed random_state; the old name"),
        pytest.warns(DeprecationWarning, match="eval_every is renamed validation_interval"),
    ):
        old = fitted(seed=2, eval_every=2)
    new = fitted(random_state=2, validation_interval=2)
    assert old.loss == new.loss and old.val_step == new.val_step == [0, 2, 4, 6]
    drawn = fitted(random_state=np.random.default_rng(5))  # a Generator gives one seed a fit
    assert drawn.loss == fitted(random_state=np.random.default_rng(5)).loss
    with pytest.raises(TypeError, match="give random_state alone: seed is its old name"):
        fitted(seed=1, random_state=1)


def test_old_context_names_and_callback_form_work_for_a_release_with_a_warning():
    """``context``/``context_val`` are ``c``/``c_val``, as ``cs``/``ct`` in ``BrenierMap``,
    and a two-argument callback ``(step, flow)`` is still called: the same fit, warned."""
    X, C, _ = _conditional_gaussian(100, seed=0)

    def fitted(**names):
        torch.manual_seed(0)
        flow = BrenierFlow(2, "mmgn", context_features=1, hidden_features=4)
        history = fit_flow(flow, X[:80], X_val=X[80:], max_iter=4, progress=False, **names)
        return history.loss, history.val_metrics["nll"]

    with (
        pytest.warns(DeprecationWarning, match="context is renamed c; the old name"),
        pytest.warns(DeprecationWarning, match="context_val is renamed c_val"),
    ):
        old = fitted(context=C[:80], context_val=C[80:])
    assert old == fitted(c=C[:80], c_val=C[80:])
    steps = []
    with pytest.warns(DeprecationWarning, match=r"now called callback\(phase, step, flow\)"):
        fitted(
            c=C[:80], c_val=C[80:], validation_interval=2, callback=lambda s, f: steps.append(s)
        )
    assert steps == [2, 4]


@pytest.mark.parametrize(
    ("gaussian_start", "expected"), [(True, (1e-2, "cosine")), (False, (3e-2, "warmup_cosine"))]
)
def test_the_default_learning_rate_and_schedule_follow_the_start(
    gaussian_start, expected, monkeypatch
):
    """From the Gaussian of the data Adam 1e-2 annealed by a cosine, from random weights 3e-2
    after a warm-up; given ones are kept."""
    seen = []
    adam = loop.adam

    def recorded(parameters, lr, total, schedule="cosine", *args, **kwargs):
        seen.append((lr, schedule))
        return adam(parameters, lr, total, schedule, *args, **kwargs)

    monkeypatch.setattr(loop, "adam", recorded)
    X = np.random.default_rng(0).normal(size=(200, 2))
    fit = dict(max_iter=2, gaussian_start=gaussian_start, progress=False)
    fit_flow(BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4), X, **fit)
    fit_flow(
        BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4), X, lr=0.2, schedule=None, **fit
    )
    assert seen == [expected, (0.2, None)]
