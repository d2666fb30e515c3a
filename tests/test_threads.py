"""A fit's CPU threads: one where its steps are small, the caller's count where given, and
torch's own count back afterwards, whatever happens in the fit."""

import numpy as np
import pytest
import torch

from otflows import BrenierFlow, BrenierMap, EntropicMap, fit_flow
from otflows.training.threads import WORK_PER_THREAD, fit_threads, threads_for

CPU = torch.device("cpu")


@pytest.fixture
def two_threads():
    """torch on two threads for the test (a machine's default on two cores), then as before."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_small_work_runs_on_one_thread_large_on_torchs(two_threads):
    assert threads_for(WORK_PER_THREAD - 1) == 1
    assert threads_for(WORK_PER_THREAD) == 2
    assert threads_for(10.0, threads=3) == 3


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_threads_must_be_a_positive_integer(threads):
    with pytest.raises(ValueError, match="threads must be a positive integer or None; got"):
        threads_for(1.0, threads)


def test_the_count_comes_back_after_an_error(two_threads):
    with pytest.raises(RuntimeError, match="inside"), fit_threads(1.0, None, CPU):
        assert torch.get_num_threads() == 1
        raise RuntimeError("inside")
    assert torch.get_num_threads() == 2


def test_off_the_cpu_the_count_is_left_alone(two_threads):
    with fit_threads(1.0, None, torch.device("meta")) as n:
        assert n == torch.get_num_threads() == 2


@pytest.mark.parametrize(("threads", "during"), [(None, 1), (2, 2)])
def test_a_small_map_fits_on_one_thread_unless_told(two_threads, threads, during):
    rng = np.random.default_rng(0)
    seen = set()
    otmap = BrenierMap(max_iter=4, init_iter=2, threads=threads, random_state=0, progress=False)
    otmap.fit(
        Xs=rng.normal(size=(64, 2)),
        Xt=rng.normal(size=(64, 2)),
        callback=lambda *_: seen.add(torch.get_num_threads()),
    )
    assert seen == {during}
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize(("threads", "during"), [(None, 1), (2, 2)])
def test_a_small_flow_fits_on_one_thread_unless_told(two_threads, threads, during):
    seen = set()
    fit_flow(
        BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4),
        np.random.default_rng(0).normal(size=(64, 2)),
        max_iter=3,
        threads=threads,
        callback=lambda *_: seen.add(torch.get_num_threads()),
        progress=False,
    )
    assert seen == {during}
    assert torch.get_num_threads() == 2


def test_the_estimators_name_a_bad_thread_count():
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ValueError, match="threads must be a positive integer; got 0"):
        BrenierMap(threads=0, progress=False).fit(Xs=X, Xt=X)
    with pytest.raises(ValueError, match="threads must be a positive integer or None; got 0"):
        EntropicMap(threads=0).fit(Xs=X, Xt=X)
