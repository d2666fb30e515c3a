"""Numerical safety: no NaN or Inf for inputs up to |x| = 1e3 and gamma down to 1e-4, in float32
and float64; an inverse that misses its tolerance says so for each sample."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from otflows import BrenierTransform, build_net

NETS = {
    "cmgn": dict(hidden_features=8, num_layers=3),
    "mmgn": dict(hidden_features=6, num_modules=3),
    "icgn": dict(hidden_features=8),
    "icnn": dict(hidden_features=8, num_layers=3),
    "qicnn": dict(hidden_features=8, num_layers=3),
}
CASES = [(name, "exact") for name in NETS] + [
    (name, "structured") for name in ("cmgn", "mmgn", "icgn", "qicnn")
]


def _finite(tensor):
    return bool(torch.isfinite(tensor).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name, logdet", CASES, ids=[f"{n}-{m}" for n, m in CASES])
@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    log10_gamma=st.floats(-4.0, 0.0),
    log10_scale=st.floats(-3.0, 3.0),
)
def test_no_nan_or_inf_up_to_1e3_and_gamma_1e_4(
    name, logdet, dtype, seed, log10_gamma, log10_scale
):
    torch.manual_seed(seed)
    gamma = 10.0**log10_gamma
    net = build_net(name, 3, **NETS[name])
    T = BrenierTransform(net, gamma=gamma, logdet=logdet).to(dtype)
    T.initialize(torch.randn(64, 3, dtype=dtype))  # fitted at unit scale; x goes to 1e3
    x = torch.randn(16, 3, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    x = (10.0**log10_scale * x / x.abs().max()).requires_grad_()  # max |x_i| = the scale
    y, logabsdet = T(x)
    assert _finite(y) and _finite(logabsdet)
    # a J ⪰ γI floor: log det J ≥ D log γ
    assert (logabsdet >= 3 * torch.log(torch.tensor(gamma, dtype=dtype)) - 1e-3).all()
    (y.square().mean() + logabsdet.mean()).backward()
    assert _finite(x.grad)
    assert all(_finite(p.grad) for p in T.parameters() if p.grad is not None)

    with torch.no_grad():
        # every row converges: Newton, then L-BFGS on the strongly convex conjugate where
        # Newton stalls, meets ||T(x) - y|| <= rtol (1 + ||y||) over this whole range
        result = T.solve(y.detach())
        assert result.converged.all()
        assert (result.residual <= result.tolerance).all()
        x_back, _ = T.inverse(y.detach())  # would raise InverseError naming missed rows
        assert _finite(x_back)
        assert ((T(x_back)[0] - y).norm(dim=-1) <= 2 * result.tolerance).all()
