"""Bounded data: the box's logit as a flow's first step, its log-determinant against autograd's
Jacobian, its inverse, and the errors for values outside the box."""

import numpy as np
import pytest
import torch

from otflows import BrenierFlow, fit_flow
from otflows.flows import load_flow, save_flow
from otflows.transforms.logit import ALPHA, BoxLogit


def test_box_logit_log_determinant_is_autograds_and_its_inverse_is_exact():
    """float64: log|det J| of the step equals slogdet of the dense autograd Jacobian, and the
    logistic inverse returns the inputs with the negated log-determinant."""
    low, high = torch.tensor([0.0, -1.0, 2.0], dtype=torch.float64), 3.0
    step = BoxLogit(3, low, high).double()
    g = torch.Generator().manual_seed(0)
    x = low + (high - low) * torch.rand(5, 3, generator=g, dtype=torch.float64)
    y, logabsdet = step(x)
    for row in range(5):
        J = torch.autograd.functional.jacobian(lambda v: step(v[None])[0][0], x[row])
        assert torch.allclose(logabsdet[row], torch.linalg.slogdet(J)[1], atol=1e-12)
    back, inverse_logabsdet = step.inverse(y)
    assert torch.allclose(back, x, atol=1e-12)
    assert torch.allclose(inverse_logabsdet, -logabsdet, atol=1e-12)
    # the faces map to ±log((1 - α) / α)
    faces = step(torch.stack([low, torch.full((3,), high, dtype=torch.float64)]))[0]
    edge = float(np.log((1 - ALPHA) / ALPHA))
    assert torch.allclose(faces, torch.tensor([[-edge] * 3, [edge] * 3], dtype=torch.float64))


def test_a_bounded_flow_has_the_density_of_its_steps_and_samples_inside_the_box():
    """log p(x) of a flow with bounds is the step's log-determinant plus the rest's log p,
    samples lie in the box, and the bounds survive a save and load."""
    torch.manual_seed(0)
    flow = BrenierFlow(
        2, "mmgn", num_blocks=1, hidden_features=4, bounds=(0.0, [1.0, 10.0])
    ).double()
    rest = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4).double()
    rest._transform.load_state_dict(flow._transform._transforms[1].state_dict())
    x = torch.rand(6, 2, dtype=torch.float64) * torch.tensor([1.0, 10.0], dtype=torch.float64)
    y, logabsdet = flow._transform._transforms[0](x)
    assert torch.allclose(flow.log_prob(x), rest.log_prob(y) + logabsdet, atol=1e-10)
    samples = flow.sample(200)  # in the box widened by α / (1 - 2α) of its width
    margin = ALPHA / (1 - 2 * ALPHA) * torch.tensor([1.0, 10.0], dtype=torch.float64)
    assert bool(((samples > -margin) & (samples < margin + torch.tensor([1.0, 10.0]))).all())
    assert torch.isfinite(flow.log_prob(samples)).all()


def test_bounded_flow_round_trips_through_a_checkpoint(tmp_path):
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4, bounds=(0.0, 17.0))
    save_flow(flow, tmp_path / "flow.pt")
    loaded = load_flow(tmp_path / "flow.pt")
    x = torch.rand(4, 2) * 17
    assert torch.allclose(loaded.log_prob(x), flow.log_prob(x))


@pytest.mark.parametrize(
    "bounds, message",
    [
        ((1.0, 0.0), "high must exceed low in every feature"),
        ((0.0, float("inf")), "bounds must be finite numbers"),
        ((0.0, [1.0, 2.0, 3.0]), r"high must be a number or 2 numbers \(one per feature\)"),
        ((0.0,), r"bounds must be a pair \(low, high\)"),
    ],
)
def test_bad_bounds_name_what_was_expected(bounds, message):
    with pytest.raises(ValueError, match=message):
        BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4, bounds=bounds)


def test_values_outside_the_box_are_errors_naming_the_argument_and_row():
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4, bounds=(0.0, 1.0))
    X = np.random.default_rng(0).uniform(size=(100, 2))
    X_val = X[:10].copy()
    X_val[3, 1] = 1.1
    with pytest.raises(
        ValueError, match=r"X_val has a value outside the flow's bounds: row 3, column 1"
    ):
        fit_flow(flow, X, X_val=X_val, max_iter=2, progress=False)
    with pytest.raises(
        ValueError, match=r"inputs has a value outside the flow's bounds: row 0, column 0"
    ):
        flow.log_prob(torch.tensor([[-0.5, 0.5]]))  # beyond the margin of 0.0556
