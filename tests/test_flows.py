"""BrenierFlow: construction, transport, sampling, checkpoints."""

import pytest
import torch
from nflows.transforms import ActNorm

from otflows import MMGN, BrenierFlow, BrenierMap, BrenierTransform, fit_flow
from otflows.flows import load_flow, save_flow


def test_stacked_flow_has_actnorm_and_refuses_transport():
    flow = BrenierFlow(2, "icgn", num_blocks=3, hidden_features=4)
    assert len(flow.blocks) == 3
    assert sum(isinstance(m, ActNorm) for m in flow.modules()) == 3
    with pytest.raises(ValueError, match="not the gradient of a convex"):
        flow.transport(torch.randn(3, 2))


def test_single_block_transport_is_the_block():
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4)
    x = torch.randn(5, 2)
    torch.testing.assert_close(flow.transport(x), flow.blocks[0].transport(x))


def test_from_transforms():
    T = BrenierTransform(MMGN(3, 4), gamma=0.1)
    flow = BrenierFlow(3, transforms=[T])
    assert flow.config is None
    torch.testing.assert_close(flow.transport(torch.ones(1, 3)), T.transport(torch.ones(1, 3)))
    with pytest.raises(ValueError, match="built from transforms"):
        save_flow(flow, "unused.pt")


def test_sample_has_the_flows_dtype_and_inverts():
    torch.manual_seed(0)
    flow = BrenierFlow(2, "cmgn", num_blocks=2, hidden_features=4).to(torch.float32)
    flow.log_prob(torch.randn(16, 2, dtype=torch.float32))  # ActNorm initialisation
    with torch.no_grad():
        x = flow.sample(32)
        z, _ = flow._transform(x)
        x_back, _ = flow._transform.inverse(z)
    assert x.dtype == torch.float32
    torch.testing.assert_close(x_back, x, rtol=1e-4, atol=1e-4)


def test_sample_is_differentiable():
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4)
    flow.sample(8).square().sum().backward()
    assert all(p.grad is not None for p in flow.parameters())


@pytest.mark.parametrize("net", ["cmgn", "mmgn", "icgn", "icnn", "qicnn"])
def test_checkpoint_round_trip(net, tmp_path):
    torch.manual_seed(0)
    flow = BrenierFlow(2, net, num_blocks=2, hidden_features=4, gamma=0.02, learn_gamma=True)
    x = torch.randn(6, 2)
    flow.log_prob(x)  # ActNorm initialisation
    save_flow(flow, tmp_path / "flow.pt")
    loaded = load_flow(tmp_path / "flow.pt")
    assert loaded.config == flow.config
    torch.testing.assert_close(loaded.log_prob(x), flow.log_prob(x), rtol=0, atol=0)


LOADERS = {
    "load_flow": load_flow,
    "BrenierMap.load": BrenierMap.load,
    "fit_flow(resume=True)": lambda path: fit_flow(
        BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4),
        torch.randn(8, 2),
        max_iter=1,
        checkpoint=path,
        resume=True,
        progress=False,
    ),
}


@pytest.mark.parametrize("load", LOADERS.values(), ids=LOADERS.keys())
def test_checkpoint_rejects_pickled_objects_and_other_versions(tmp_path, load, capsys):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save(
        {"format_version": 1, "config": "{}", "state_dict": Payload()}, tmp_path / "evil.pt"
    )
    with pytest.raises(ValueError, match="not a safe otflows checkpoint"):
        load(tmp_path / "evil.pt")
    assert "pwned" not in capsys.readouterr().out  # the payload never ran
    torch.save({"format_version": 99, "config": "{}", "state_dict": {}}, tmp_path / "new.pt")
    with pytest.raises(ValueError, match="format version 1"):
        load(tmp_path / "new.pt")


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4)
    path = tmp_path / "flow.pt"
    save_flow(flow, path)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(KeyboardInterrupt):
        save_flow(BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=8), path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda f: f.log_prob(torch.randn(3, 3)), ValueError, "inputs must have 2 features"),
        (lambda f: f.log_prob(torch.tensor([[0.0, float("nan")]])), ValueError, "NaN or Inf"),
        (lambda f: f.log_prob(torch.zeros(0, 2)), ValueError, "inputs is empty"),
        (lambda f: f.log_prob(torch.zeros(2, 2, dtype=torch.float16)), TypeError, "dtype"),
        (lambda f: f.transport(torch.zeros(2)), ValueError, r"x must be a matrix \[N, D\]"),
        (lambda f: f.sample(0), ValueError, "num_samples must be a positive integer"),
        (lambda f: f.sample(2.5), ValueError, "num_samples must be a positive integer"),
    ],
)
def test_bad_input_at_the_flow_edge(call, error, message):
    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4)
    with pytest.raises(error, match=message):
        call(flow)


def test_numpy_input_is_cast_to_the_flows_dtype():
    import numpy as np

    flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4).to(torch.float32)
    assert flow.log_prob(np.zeros((3, 2))).dtype == torch.float32


def test_a_stacked_flows_first_training_call_needs_varied_rows():
    """ActNorm initialises from its first training batch's standard deviation: one row (or a
    constant feature) is refused with a clear error; in eval mode one row is scored."""
    flow = BrenierFlow(3, "mmgn", num_blocks=2, hidden_features=4)
    for rows in (torch.randn(1, 3), torch.ones(4, 3)):
        with pytest.raises(ValueError, match="standard deviation, which must not be 0"):
            flow.log_prob(rows)
    assert torch.isfinite(flow.eval().log_prob(torch.randn(1, 3))).all()
    flow.train().log_prob(torch.randn(8, 3))  # initialised: one row is fine from now on
    assert torch.isfinite(flow.log_prob(torch.randn(1, 3))).all()


def _randomised_context_heads(flow):
    """The context networks start at maps that ignore the context: randomise them."""
    with torch.no_grad():
        for key, parameter in flow.named_parameters():
            if any(part in key for part in ("context", "gate", "shift")):
                parameter.normal_(std=0.5)
    return flow


@pytest.mark.parametrize("net", ["mmgn", "picnn"])
def test_conditional_flow_is_the_change_of_variables_per_context(net, tmp_path):
    torch.manual_seed(0)
    flow = BrenierFlow(2, net, num_blocks=2, context_features=3, hidden_features=6).double()
    x, c = torch.randn(4, 5, 2, dtype=torch.float64), torch.randn(4, 5, 3, dtype=torch.float64)
    flow.log_prob(x, c)  # ActNorm initialisation
    _randomised_context_heads(flow).eval()
    log_p = flow.log_prob(x, c)
    assert log_p.shape == (4, 5)
    z, logabsdet = flow._transform(x.reshape(-1, 2), c.reshape(-1, 3))
    expected = -0.5 * z.square().sum(-1) - torch.log(torch.tensor(2 * torch.pi)) + logabsdet
    torch.testing.assert_close(log_p.flatten(), expected, rtol=1e-10, atol=1e-10)
    assert (flow.log_prob(x, c.flip(0)) - log_p).abs().max() > 1e-3
    # samples per context: [K, n, D], mapped back to the noise they came from
    with torch.no_grad():
        samples = flow.sample(7, context=c[0])
    assert samples.shape == (5, 7, 2)
    save_flow(flow, tmp_path / "conditional.pt")
    loaded = load_flow(tmp_path / "conditional.pt").eval()
    torch.testing.assert_close(loaded.log_prob(x, c), log_p, rtol=0, atol=0)


def test_conditional_brenier_block_beside_an_nflows_conditional_transform():
    from nflows.transforms import MaskedAffineAutoregressiveTransform

    torch.manual_seed(0)
    brenier = BrenierTransform(MMGN(3, 6, context_features=2), gamma=0.1)
    maf = MaskedAffineAutoregressiveTransform(3, hidden_features=8, context_features=2)
    flow = BrenierFlow(3, transforms=[brenier, maf])
    x, c = torch.randn(9, 3), torch.randn(9, 2)
    y, logdet_brenier = brenier(x, c)
    z, logdet_maf = maf(y, c)
    expected = -0.5 * z.square().sum(-1) - 1.5 * torch.log(torch.tensor(2 * torch.pi))
    torch.testing.assert_close(flow.log_prob(x, c), expected + logdet_brenier + logdet_maf)
    assert flow.sample(4, context=c[:2]).shape == (2, 4, 3)


def test_conditional_flow_bad_arguments():
    with pytest.raises(ValueError, match="net must be one of"):
        BrenierFlow(2, "icnn", context_features=1)
    flow = BrenierFlow(2, "mmgn", context_features=1, hidden_features=4)
    with pytest.raises(ValueError, match=r"context must have shape \(5, 1\)"):
        flow.log_prob(torch.randn(5, 2))
    with pytest.raises(ValueError, match="context must be None"):
        BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4).log_prob(
            torch.randn(5, 2), torch.randn(5, 1)
        )


def test_the_default_flow_is_the_studied_density_flow():
    """BrenierFlow(d): 4 ICGN blocks of width 32 after ActNorms (DENSITY_FLOW); a conditional
    flow one M-MGN block; a given net keeps its own width."""
    from nflows.transforms import ActNorm

    from otflows.flows import CONDITIONAL_FLOW, DENSITY_FLOW
    from otflows.nets import ICGN, MMGN

    flow = BrenierFlow(3)
    assert len(flow.blocks) == DENSITY_FLOW["num_blocks"] == 4
    assert all(isinstance(b.net, ICGN) and b.net.W.shape[0] == 32 for b in flow.blocks)
    assert sum(isinstance(t, ActNorm) for t in flow._transform._transforms) == 4
    conditional = BrenierFlow(3, context_features=2)
    assert len(conditional.blocks) == CONDITIONAL_FLOW["num_blocks"] == 1
    assert isinstance(conditional.blocks[0].net, MMGN)
    assert BrenierFlow(3, "icgn", num_blocks=1).blocks[0].net.W.shape[0] == 64
    # a saved flow's config names its architecture, not the defaults of its day
    assert {k: flow.config[k] for k in DENSITY_FLOW} == DENSITY_FLOW
