"""What every Brenier transform must do, for every monotone gradient network and log-det method.

Adding a family of networks means adding one entry to ``NETS``.
"""

import io
from functools import partial

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from nflows.distributions import StandardNormal
from nflows.flows import Flow
from nflows.transforms import ActNorm, CompositeTransform

from otflows import BrenierTransform, build_net

GAMMA = 0.05
NETS = {
    "cmgn": dict(hidden_features=12, num_layers=3),
    "mmgn": dict(hidden_features=6, num_modules=3),
    "icgn": dict(hidden_features=12),
    "icnn": dict(hidden_features=12, num_layers=3),
    "qicnn": dict(hidden_features=12, num_layers=3, quadratic_rank=2),
}


STRUCTURED = ("cmgn", "mmgn", "icgn", "qicnn")  # networks with a factored Jacobian
CASES = [(name, "exact") for name in NETS] + [(name, "structured") for name in STRUCTURED]
IDS = [f"{name}-{logdet}" for name, logdet in CASES]


def make_transform(name, logdet="exact", features=3, seed=0):
    torch.manual_seed(seed)
    T = BrenierTransform(build_net(name, features, **NETS[name]), gamma=GAMMA, logdet=logdet)
    # a non-trivial data normalisation (shift, isotropic scale), as after a first training batch
    T.initialize(1.0 + 2.0 * torch.randn(64, features))
    return T


def autograd_jacobian(T, x):
    """Jacobians by reverse-mode autograd, row by row (independent of torch.func)."""
    return torch.stack([torch.autograd.functional.jacobian(T.transport, row) for row in x])


@pytest.mark.parametrize("name, logdet", CASES, ids=IDS)
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.floats(0.1, 5.0))
def test_jacobian_symmetric_and_at_least_gamma(name, logdet, seed, scale):
    T = make_transform(name, logdet, seed=seed)
    x = scale * torch.randn(6, 3, generator=torch.Generator().manual_seed(seed))
    J = autograd_jacobian(T, x)
    assert torch.allclose(J, J.mT, atol=1e-10 * (1 + J.abs().max()))
    eigenvalues = torch.linalg.eigvalsh(0.5 * (J + J.mT))
    assert eigenvalues.min() >= GAMMA * (1 - 1e-8)


@pytest.mark.parametrize("name, logdet", CASES, ids=IDS)
def test_logdet_equals_slogdet_of_autograd_jacobian(name, logdet, tol):
    T = make_transform(name, logdet)
    x = 2 * torch.randn(8, 3)
    _, logabsdet = T(x)
    sign, expected = torch.linalg.slogdet(autograd_jacobian(T, x))
    assert (sign > 0).all()
    torch.testing.assert_close(logabsdet, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("name, logdet", CASES, ids=IDS)
def test_inverse_round_trip(name, logdet, dtype):
    T = make_transform(name, logdet)
    x = 3 * torch.randn(32, 3)
    with torch.no_grad():
        y, logabsdet = T(x)
        result = T.solve(y)
        x_back, inverse_logabsdet = T.inverse(y)
    rtol = 1e-10 if dtype == torch.float64 else 1e-5
    assert result.converged.all()
    assert (result.residual <= rtol * (1 + y.norm(dim=-1))).all()
    assert result.iterations.max() <= 30
    torch.testing.assert_close(x_back, x, rtol=0, atol=100 * rtol / GAMMA)
    torch.testing.assert_close(inverse_logabsdet, -logabsdet, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["lbfgs", "newton-cg"])
@pytest.mark.parametrize("name", NETS)
def test_other_solvers_reach_the_same_inverse(name, method, dtype):
    T = make_transform(name)
    x = 3 * torch.randn(32, 3)
    with torch.no_grad():
        y = T.transport(x)
        result = T.solve(y, method=method)
    rtol = 1e-10 if dtype == torch.float64 else 1e-5
    assert result.converged.all()
    assert (result.residual <= rtol * (1 + y.norm(dim=-1))).all()
    torch.testing.assert_close(result.x, x, rtol=0, atol=100 * rtol / GAMMA)


@pytest.mark.parametrize("name, logdet", CASES, ids=IDS)
def test_inverse_carries_implicit_gradient(name, logdet, tol):
    T = make_transform(name, logdet)
    y = torch.randn(4, 3, requires_grad=True)
    x, _ = T.inverse(y)
    # dx/dy = J_T(x)⁻¹: the gradient of ⟨c, x⟩ with respect to y is J⁻¹ c (J symmetric).
    c = torch.randn(4, 3)
    (grad_y,) = torch.autograd.grad((c * x).sum(), y)
    J = autograd_jacobian(T, x.detach())
    expected = torch.linalg.solve(J, c.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(grad_y, expected, rtol=1e3 * tol, atol=1e3 * tol)


@pytest.mark.parametrize("name, logdet", CASES, ids=IDS)
def test_inverse_gradients_match_finite_differences(name, logdet, float64):
    """The inverse's outputs and its log-det are differentiable in the parameters and in y,
    through x*(θ, y) too (one factorisation of J at x* carries both): against central
    differences along a random direction of every parameter and of y."""
    T = make_transform(name, logdet)
    y, v = torch.randn(4, 3), torch.randn(4, 3)
    parameters = [p for p in T.parameters() if p.requires_grad]
    direction = [torch.randn_like(p) for p in parameters]
    dy = torch.randn_like(y)

    def loss(y):
        x, logabsdet = T.inverse(y)
        return (v * x).sum() + logabsdet.sum()

    y_leaf = y.clone().requires_grad_(True)
    grads = torch.autograd.grad(loss(y_leaf), [*parameters, y_leaf])
    analytic = sum((g * d).sum() for g, d in zip(grads, [*direction, dy], strict=True))
    eps = 1e-6
    values = []
    with torch.no_grad():
        for sign in (1.0, -1.0):
            for p, d in zip(parameters, direction, strict=True):
                p.add_(sign * eps * d)
            values.append(loss(y + sign * eps * dy))
            for p, d in zip(parameters, direction, strict=True):
                p.sub_(sign * eps * d)
    numeric = (values[0] - values[1]) / (2 * eps)
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, logdet", CASES, ids=IDS)
def test_inverse_under_gradients_factorises_once(name, logdet, monkeypatch):
    """Newton's steps run without gradients; then the inverse with gradients, forward and
    backward, linearises T once (the factor of J at x* serves its log-det and the implicit
    gradient's J⁻¹)."""
    T = make_transform(name, logdet)
    linearize, recorded = T.linearize, []

    def counted(*args, **kwargs):
        recorded.append(torch.is_grad_enabled())
        return linearize(*args, **kwargs)

    monkeypatch.setattr(T, "linearize", counted)
    y = torch.randn(4, 3, requires_grad=True)
    x, logabsdet = T.inverse(y)
    (x.square().sum() + logabsdet.sum()).backward()
    assert recorded.count(True) == 1 and len(recorded) > 1
    assert y.grad is not None and all(p.grad is not None for p in T.net.parameters())


@pytest.mark.parametrize("name, logdet", CASES, ids=IDS)
def test_gradients_reach_every_parameter(name, logdet):
    T = make_transform(name, logdet)
    T.eta = torch.nn.Parameter(torch.tensor(0.0))  # the learnable part of γ, too
    y, logabsdet = T(torch.randn(16, 3))
    (y.square().sum() - logabsdet.sum()).backward()
    for key, parameter in T.named_parameters():
        assert parameter.grad is not None, key
        assert torch.isfinite(parameter.grad).all(), key
        assert parameter.grad.abs().sum() > 0, key


@pytest.mark.parametrize("name, logdet", CASES, ids=IDS)
def test_eval_output_equals_train_output(name, logdet):
    T = make_transform(name, logdet)
    x = torch.randn(5, 3)
    train = T(x)
    T.eval()
    evaluated = T(x)
    for a, b in zip(train, evaluated, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name, logdet", CASES, ids=IDS)
def test_state_dict_round_trip_weights_only(name, logdet):
    T, other = make_transform(name, logdet, seed=0), make_transform(name, logdet, seed=1)
    buffer = io.BytesIO()
    torch.save(T.state_dict(), buffer)
    buffer.seek(0)
    other.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(5, 3)
    for a, b in zip(T(x), other(x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name, logdet", CASES, ids=IDS)
def test_inside_nflows_composite_and_flow(name, logdet, tol):
    T = make_transform(name, logdet)
    composite = CompositeTransform([ActNorm(3), T, make_transform(name, logdet, seed=2)])
    flow = Flow(composite, StandardNormal([3]))
    x = torch.randn(10, 3)
    flow.log_prob(x)  # ActNorm's data-dependent initialisation
    flow.eval()
    z, logabsdet = composite(x)
    expected = StandardNormal([3]).log_prob(z) + logabsdet
    torch.testing.assert_close(flow.log_prob(x), expected)
    x_back, inverse_logabsdet = composite.inverse(z.detach())
    torch.testing.assert_close(x_back, x, rtol=1e3 * tol, atol=1e3 * tol)
    torch.testing.assert_close(inverse_logabsdet, -logabsdet, rtol=1e3 * tol, atol=1e3 * tol)
    assert flow.sample(4).shape == (4, 3)


@pytest.mark.parametrize("name, logdet", CASES, ids=IDS)
def test_potential_gradient_is_the_field(name, logdet, tol):
    T = make_transform(name, logdet)
    x = torch.randn(6, 3, requires_grad=True)
    (grad,) = torch.autograd.grad(T.potential(x).sum(), x)
    # The line-integral potentials (C-MGN) carry the quadrature error.
    rtol = 1e-6 if name == "cmgn" else 1e3 * tol
    torch.testing.assert_close(grad, T.transport(x), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("name", NETS)
def test_potential_and_transport_in_one_pass(name, tol):
    T = make_transform(name)
    x = torch.randn(6, 3)
    potential, transported = T.potential_and_transport(x)
    torch.testing.assert_close(potential, T.potential(x), rtol=tol, atol=tol)
    torch.testing.assert_close(transported, T.transport(x), rtol=tol, atol=tol)


# Conditional networks: for every context c, T(·; c) must keep the whole contract.
CONDITIONAL = {
    "mmgn": dict(hidden_features=6, num_modules=3, context_features=2),
    "qicnn": dict(hidden_features=5, num_layers=3, quadratic_rank=2, context_features=2),
    "picnn": dict(hidden_features=12, num_layers=3, context_features=2),
}
CONDITIONAL_CASES = [
    ("mmgn", "exact"),
    ("mmgn", "structured"),
    ("qicnn", "exact"),
    ("qicnn", "structured"),
    ("picnn", "exact"),
]
CONDITIONAL_IDS = [f"{name}-{logdet}" for name, logdet in CONDITIONAL_CASES]


def make_conditional(name, logdet="exact", seed=0):
    """A conditional transform whose context network is randomised (it starts at a map that
    ignores the context), with a non-trivial data normalisation."""
    torch.manual_seed(seed)
    net = build_net(name, 3, **CONDITIONAL[name])
    with torch.no_grad():
        for key, parameter in net.named_parameters():
            if any(part in key for part in ("context", "gate", "shift")):
                parameter.normal_(std=0.5)
    T = BrenierTransform(net, gamma=GAMMA, logdet=logdet)
    T.initialize(1.0 + 2.0 * torch.randn(64, 3))
    return T


def conditional_jacobian(T, x, c):
    """Jacobians in x by reverse-mode autograd, row by row, each at its own context."""
    return torch.stack(
        [
            torch.autograd.functional.jacobian(partial(T.transport, context=ci), row)
            for row, ci in zip(x, c, strict=True)
        ]
    )


@pytest.mark.parametrize("name, logdet", CONDITIONAL_CASES, ids=CONDITIONAL_IDS)
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.floats(0.1, 5.0))
def test_conditional_jacobian_symmetric_and_at_least_gamma(name, logdet, seed, scale):
    T = make_conditional(name, logdet, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(6, 3, generator=generator)
    c = 3 * torch.randn(6, 2, generator=generator)
    J = conditional_jacobian(T, x, c)
    assert torch.allclose(J, J.mT, atol=1e-10 * (1 + J.abs().max()))
    assert torch.linalg.eigvalsh(0.5 * (J + J.mT)).min() >= GAMMA * (1 - 1e-8)


@pytest.mark.parametrize("name, logdet", CONDITIONAL_CASES, ids=CONDITIONAL_IDS)
def test_conditional_logdet_inverse_and_batch_shape(name, logdet, tol, dtype):
    T = make_conditional(name, logdet)
    x, c = 2 * torch.randn(4, 5, 3), torch.randn(4, 5, 2)
    y, logabsdet = T(x, c)
    assert y.shape == (4, 5, 3) and logabsdet.shape == (4, 5)
    sign, expected = torch.linalg.slogdet(
        conditional_jacobian(T, x.flatten(0, 1), c.flatten(0, 1))
    )
    assert (sign > 0).all()
    torch.testing.assert_close(logabsdet.flatten(), expected, rtol=tol, atol=tol)
    # the context changes the map: a Brenier map per context, not one map
    assert (T(x, c.flip(0))[0] - y).abs().max() > 1e-3
    with torch.no_grad():
        x_back, inverse_logabsdet = T.inverse(y, c)
    rtol = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(x_back, x, rtol=0, atol=100 * rtol / GAMMA)
    torch.testing.assert_close(inverse_logabsdet, -logabsdet, rtol=1e-6, atol=1e-6)
    for method in ("lbfgs", "newton-cg"):
        result = T.solve(y.flatten(0, 1), method=method, context=c.flatten(0, 1))
        assert result.converged.all()
        torch.testing.assert_close(result.x, x.flatten(0, 1), rtol=0, atol=100 * rtol / GAMMA)


@pytest.mark.parametrize("name, logdet", CONDITIONAL_CASES, ids=CONDITIONAL_IDS)
def test_conditional_potential_gradient_and_implicit_gradient(name, logdet, tol):
    T = make_conditional(name, logdet)
    x, c = torch.randn(6, 3, requires_grad=True), torch.randn(6, 2)
    (grad,) = torch.autograd.grad(T.potential(x, c).sum(), x)
    torch.testing.assert_close(grad, T.transport(x, c), rtol=1e3 * tol, atol=1e3 * tol)
    y = torch.randn(4, 3, requires_grad=True)
    x, _ = T.inverse(y, c[:4])
    v = torch.randn(4, 3)
    (grad_y,) = torch.autograd.grad((v * x).sum(), y)
    J = conditional_jacobian(T, x.detach(), c[:4])
    expected = torch.linalg.solve(J, v.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(grad_y, expected, rtol=1e3 * tol, atol=1e3 * tol)


def test_a_bad_context_is_a_clear_error():
    conditional, plain = make_conditional("mmgn"), make_transform("mmgn")
    x = torch.randn(5, 3)
    cases = [
        (conditional, None, r"context must have shape \(5, 2\)"),
        (conditional, torch.randn(5, 3), r"context must have shape \(5, 2\)"),
        (conditional, torch.randn(4, 2), r"context must have shape \(5, 2\)"),
        (conditional, torch.full((5, 2), float("nan")), "context must be finite"),
        (plain, torch.randn(5, 2), "context must be None"),
    ]
    for T, c, message in cases:
        with pytest.raises(ValueError, match=message):
            T(x, c)
    with pytest.raises(TypeError, match="context must have the inputs' dtype"):
        conditional(x, torch.randn(5, 2, dtype=torch.float16))
