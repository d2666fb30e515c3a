"""The host's reads of device values in a training step: what a GPU waits for."""

import torch
from host_reads import HostReads
from step_speed import reads_per_step

from otflows import BrenierMap
from otflows.datasets import GaussianCoupling
from otflows.linalg.newton import MASKED_ITER
from otflows.maps.objectives import SemiDual


def _reads_per_step(masked_iter: int) -> float:
    pair = GaussianCoupling.random_pair(4, seed=0)
    Xs, Xt = pair.sample(2000, seed=1), pair.sample_target(2000, seed=2)
    objective = SemiDual(masked_iter=masked_iter)
    otmap = BrenierMap(
        max_iter=30, init_iter=5, hidden_features=8, objective=objective, random_state=0
    )
    return reads_per_step(otmap.set_params(validation_fraction=0, progress=False), Xs, Xt)


def test_a_semidual_step_reads_the_device_three_times_with_masked_newton_steps():
    """With the conjugates' first Newton steps masked, a training step reads the device three
    times: the loss (for the progress bar), the conjugates' convergence, their stalled rows;
    the adaptive solve reads it at every choice of rows."""
    masked = _reads_per_step(MASKED_ITER)
    assert masked == 3
    assert _reads_per_step(0) > 2 * masked


def test_host_reads_counts_masks_and_values_not_arithmetic():
    x = torch.randn(10)
    with HostReads() as reads:
        y = torch.where(x > 0, x, 0).cumsum(0) * 2
        x[x > 0] = 0.0
        bool(y.any())
        y.tolist()
    assert dict(reads.counts) == {"__setitem__": 1, "__bool__": 1, "tolist": 1}
