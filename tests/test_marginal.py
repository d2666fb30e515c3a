"""A spline on each feature: its log-determinant against autograd's Jacobian, its exact inverse,
its start at the map that sends each marginal to N(0, 1), and a flow that starts at the
Gaussian copula of the data."""

import numpy as np
import pytest
import torch
from scipy import stats

from otflows import BrenierFlow
from otflows.flows import load_flow, save_flow
from otflows.transforms.marginal import BOUND, MarginalSpline


def _random_spline(features: int, seed: int) -> MarginalSpline:
    g = torch.Generator().manual_seed(seed)
    step = MarginalSpline(features, num_bins=6).double()
    with torch.no_grad():
        for parameter in step.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=g, dtype=torch.float64))
        step.loc.copy_(torch.randn(features, generator=g, dtype=torch.float64))
        step.scale.copy_(torch.rand(features, generator=g, dtype=torch.float64) + 0.5)
    return step


def test_log_determinant_is_autograds_and_the_inverse_is_exact():
    """float64, random knots, inputs inside and outside the spline's box: log|det J| equals
    slogdet of the dense autograd Jacobian, the inverse returns the inputs with the negated
    log-determinant, and each feature's map is increasing."""
    step = _random_spline(3, 0)
    g = torch.Generator().manual_seed(1)
    x = step.loc + 2.5 * step.scale * torch.randn(40, 3, generator=g, dtype=torch.float64)
    assert bool(((x - step.loc).abs() / step.scale > BOUND).any())  # the identity tails too
    y, logabsdet = step(x)
    for row in range(len(x)):
        J = torch.autograd.functional.jacobian(lambda v: step(v[None])[0][0], x[row])
        assert torch.allclose(J, torch.diag(torch.diagonal(J)))  # feature by feature
        assert torch.allclose(logabsdet[row], torch.linalg.slogdet(J)[1], atol=1e-10)
    back, inverse_logabsdet = step.inverse(y)
    assert torch.allclose(back, x, atol=1e-10)
    assert torch.allclose(inverse_logabsdet, -logabsdet, atol=1e-10)
    grid = torch.linspace(-15, 15, 2001, dtype=torch.float64)[:, None].expand(-1, 3)
    assert bool((torch.diff(step(grid)[0], dim=0) > 0).all())


def test_a_new_spline_is_the_identity():
    step = MarginalSpline(4)
    x = 3 * torch.randn(50, 4)
    y, logabsdet = step(x)
    assert torch.allclose(y, x, atol=1e-5)
    assert torch.allclose(logabsdet, torch.zeros(50), atol=1e-5)


@pytest.mark.parametrize(
    "marginal",
    [stats.expon(), stats.uniform(0, 17), stats.lognorm(0.8)],
    ids=["exponential", "uniform", "log-normal"],
)
def test_fit_marginals_is_the_map_to_the_normal(marginal):
    """Started on 20 000 draws of a known marginal F, the spline is Φ⁻¹∘F (the map that sends
    F to N(0, 1)) at F's quantiles 2 %…98 %, to 0.05, and sends fresh draws to N(0, 1)
    (Kolmogorov–Smirnov distance below 0.02)."""
    rng = np.random.default_rng(0)
    step = MarginalSpline(1).double()
    step.fit_marginals(torch.as_tensor(marginal.rvs(20_000, random_state=rng))[:, None])
    p = np.linspace(0.02, 0.98, 49)
    z = step(torch.as_tensor(marginal.ppf(p))[:, None])[0].detach().numpy()[:, 0]
    assert np.abs(z - stats.norm.ppf(p)).max() < 0.05
    fresh = step(torch.as_tensor(marginal.rvs(20_000, random_state=rng))[:, None])[0]
    assert stats.kstest(fresh.detach().numpy()[:, 0], "norm").statistic < 0.02


def test_a_flow_with_marginals_starts_at_the_gaussian_copula(tmp_path):
    """start_from_gaussian of a flow with marginal splines: log p(x) is the Gaussian copula's,
    Σ_d log f_d'(x_d) + log N(f(x); m, Σ) with m, Σ the mean and covariance of f(X) (computed
    here from the spline alone), on held-out rows; the flow survives a save and load."""
    rng = np.random.default_rng(0)
    X = np.c_[rng.exponential(size=3000), rng.uniform(0, 17, size=3000)]
    X[:, 1] += 2 * X[:, 0]  # dependent features
    torch.manual_seed(0)
    flow = BrenierFlow(2, "icgn", num_blocks=2, hidden_features=8, marginals=True).double()
    flow.start_from_gaussian(X[:2500])
    spline = next(m for m in flow.modules() if isinstance(m, MarginalSpline))
    z = spline(torch.as_tensor(X[:2500]))[0].detach()
    gaussian = torch.distributions.MultivariateNormal(z.mean(0), torch.cov(z.T))
    held_out = torch.as_tensor(X[2500:])
    f, log_slope = spline(held_out)
    copula = gaussian.log_prob(f) + log_slope
    flow.eval()
    assert torch.allclose(flow.log_prob(held_out), copula.detach(), atol=1e-3)
    save_flow(flow, tmp_path / "flow.pt")
    assert torch.allclose(
        load_flow(tmp_path / "flow.pt").log_prob(held_out), flow.log_prob(held_out)
    )


def test_bad_input_names_the_column_and_the_shape():
    step = MarginalSpline(2)
    with pytest.raises(ValueError, match=r"column 1 is constant"):
        step.fit_marginals(torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match=r"x must have shape \[N, 2\] with N >= 2; got \(3, 3\)"):
        step.fit_marginals(torch.randn(3, 3))
    with pytest.raises(ValueError, match="num_bins must be at least 2"):
        MarginalSpline(2, num_bins=1)
    with pytest.raises(ValueError, match="a conditional flow has no marginal splines"):
        BrenierFlow(2, "mmgn", context_features=1, marginals=True)
