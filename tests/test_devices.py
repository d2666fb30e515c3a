"""Everything a user can ask of a device, on every device this machine has: the CPU always, and
CUDA where torch finds it (those cases carry the ``cuda`` marker: ``pytest -m cuda`` runs only
them). Tensors are made on the device under test, never on a default one."""

import numpy as np
import pytest
import torch
from test_contract import NETS  # the networks of the contract, at the sizes it tests

from otflows import BrenierFlow, BrenierMap, BrenierTransform, build_net, fit_flow
from otflows.datasets import GaussianCoupling, domain_adaptation
from otflows.flows import load_flow, save_flow
from otflows.maps.objectives import SemiDual
from otflows.metrics import wasserstein2_squared

CUDA = [pytest.param("cuda", marks=pytest.mark.cuda)] if torch.cuda.is_available() else []
DEVICES = ["cpu", *CUDA]
SMALL = {
    "hidden_features": 8,
    "max_iter": 20,
    "init_iter": 10,
    "progress": False,
    "random_state": 0,
}


@pytest.fixture(scope="module")
def pair():
    gaussian = GaussianCoupling.random_pair(3, seed=0)
    return gaussian.sample(600, seed=1), gaussian.sample_target(600, seed=2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("seed", [0, 1])
def test_the_contract_holds_on_the_device(name, device, seed):
    """Float64: a symmetric Jacobian ⪰ γI, the exact log-det equal to slogdet of the Jacobian,
    and the inverse to its tolerance, all computed on the device."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_net(name, 3, **NETS[name])
    T = BrenierTransform(net, gamma=0.05).to(device=device, dtype=torch.float64)
    x = (2 * torch.randn(8, 3, generator=generator, dtype=torch.float64)).to(device)
    T.initialize(x)
    y, logdet = T(x)
    J = torch.stack([torch.autograd.functional.jacobian(T.transport, row) for row in x])
    assert y.device.type == logdet.device.type == device
    torch.testing.assert_close(J, J.mT, rtol=0, atol=1e-10 * (1 + float(J.abs().max())))
    assert float(torch.linalg.eigvalsh(J).min()) >= 0.05 * (1 - 1e-8)
    torch.testing.assert_close(logdet, torch.linalg.slogdet(J)[1], rtol=1e-9, atol=1e-9)
    with torch.no_grad():
        x_back, inverse_logdet = T.inverse(y)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-8)
    # at x_back, within the inverse's tolerance of x: the log-det moves by its gradient times that
    torch.testing.assert_close(inverse_logdet, -logdet, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("device", DEVICES)
def test_a_map_that_ends_at_the_entropic_map_lives_on_the_device(device, tmp_path):
    """Clusters onto clusters, a network too short-trained to beat the entropic map: the fit
    ends at it, every tensor of the map on the device, and it maps, inverts, saves and loads
    there."""
    Xs, Xt = domain_adaptation("3gauss", 300, 1), domain_adaptation("3gauss2", 300, 2)
    otmap = BrenierMap(device=device, dtype="float64", **(SMALL | {"hidden_features": 4}))
    otmap.fit(Xs=Xs, Xt=Xt)
    assert otmap.log_["kept"] == "entropic"
    assert {t.device.type for t in otmap.transform_.state_dict().values()} == {device}
    Z = otmap.transform(torch.as_tensor(Xs).to(device))
    assert Z.device.type == device
    np.testing.assert_allclose(otmap.inverse_transform(Xt=Z).cpu().numpy(), Xs, atol=1e-8)
    otmap.save(tmp_path / "map.pt")
    loaded = BrenierMap.load(tmp_path / "map.pt", device=device)
    torch.testing.assert_close(loaded.transform(torch.as_tensor(Xs).to(device)), Z)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("masked_iter", [0, 4])
@pytest.mark.parametrize("score", ["objective", "w2"])
def test_a_map_fits_validates_and_maps_on_the_device(pair, device, score, masked_iter):
    """With held-out rows, either validation score, the fallback and both Newton modes: the map
    and its fitted attributes live on the device; NumPy in gives NumPy out, tensors on the
    device give tensors there, and the inverse returns the rows."""
    Xs, Xt = pair
    objective = SemiDual(masked_iter=masked_iter)
    otmap = BrenierMap(
        device=device, validation_score=score, objective=objective, dtype="float64", **SMALL
    )
    otmap.fit(Xs=Xs, Xt=Xt)
    assert otmap.log_["kept"] in ("network", "bures", "entropic")
    assert otmap.bures_matrix_.device.type == device
    assert next(otmap.transform_.parameters()).device.type == device
    Y = otmap.transform(Xs)
    assert isinstance(Y, np.ndarray) and np.isfinite(Y).all()
    Z = otmap.transform(torch.as_tensor(Xs[:50]).to(device))
    assert Z.device.type == device
    np.testing.assert_allclose(Z.cpu().numpy(), Y[:50], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(otmap.inverse_transform(Xt=Y), Xs, atol=1e-7)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_input_on_the_device_chooses_it(pair, device):
    """``device=None``: the fit runs where its torch input is."""
    Xs, Xt = (torch.as_tensor(X, dtype=torch.float32).to(device) for X in pair)
    otmap = BrenierMap(**SMALL).fit(Xs=Xs, Xt=Xt)
    assert next(otmap.transform_.parameters()).device.type == device
    assert otmap.transform(Xs).device.type == device


@pytest.mark.parametrize("device", DEVICES)
def test_refinement_and_a_conditional_fit_run_on_the_device(pair, device):
    Xs, Xt = pair
    refined = BrenierMap(device=device, refine_rounds=1, refine_iter=10, **SMALL).fit(Xs=Xs, Xt=Xt)
    assert np.isfinite(refined.transform(Xs)).all() and len(refined.log_["refine"]) == 1
    c = np.repeat([[0.0], [1.0]], 300, axis=0)
    conditional = BrenierMap(device=device, **SMALL).fit(Xs=Xs, Xt=Xt + c, ct=c)
    mapped = conditional.transform(Xs[:4], cs=np.ones((4, 1)))
    assert mapped.shape == (4, 3) and np.isfinite(mapped).all()
    assert conditional.conditions_.device.type == device


@pytest.mark.parametrize("device", DEVICES)
def test_checkpoints_resume_and_load_across_devices(pair, device, tmp_path):
    """A fit killed on the device resumes there to the uninterrupted result; a saved map loads
    on the CPU and on the device with the same outputs."""
    Xs, Xt = pair
    settings = SMALL | {"device": device, "dtype": "float64", "validation_interval": 4}
    expected = BrenierMap(**settings).fit(Xs=Xs, Xt=Xt)
    path = tmp_path / "fit.pt"

    def kill(name, step, otmap):
        if name == "fit" and step == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        BrenierMap(**settings).fit(Xs=Xs, Xt=Xt, checkpoint=path, resume=True, callback=kill)
    resumed = BrenierMap(**settings).fit(Xs=Xs, Xt=Xt, checkpoint=path, resume=True)
    np.testing.assert_array_equal(resumed.transform(Xs), expected.transform(Xs))
    expected.save(tmp_path / "map.pt")
    for where in ("cpu", device):
        loaded = BrenierMap.load(tmp_path / "map.pt", device=where)
        assert next(loaded.transform_.parameters()).device.type == where
        np.testing.assert_allclose(loaded.transform(Xs), expected.transform(Xs), rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_a_flow_fits_saves_and_loads_on_the_device(device, tmp_path):
    generator = torch.Generator(device="cpu").manual_seed(0)
    X = torch.randn(512, 2, generator=generator).to(device) * torch.tensor([2.0, 0.5]).to(device)
    torch.manual_seed(0)
    flow = BrenierFlow(2, "mmgn", num_blocks=2, hidden_features=4).to(device)
    history = fit_flow(flow, X, max_iter=20, batch_size=64, random_state=0, progress=False)
    assert np.isfinite(history.loss).all()
    log_prob = flow.log_prob(X[:16])
    assert log_prob.device.type == device
    save_flow(flow, tmp_path / "flow.pt")
    loaded = load_flow(tmp_path / "flow.pt", map_location=device)
    torch.testing.assert_close(loaded.log_prob(X[:16]), log_prob)
    assert flow.sample(8).device.type == device


@pytest.mark.parametrize("device", DEVICES)
def test_metrics_take_tensors_on_the_device(device):
    generator = torch.Generator(device="cpu").manual_seed(0)
    X = torch.randn(40, 2, generator=generator, dtype=torch.float64)
    expected = wasserstein2_squared(X, X + 1.0)
    assert wasserstein2_squared(X.to(device), (X + 1.0).to(device)) == pytest.approx(expected)
    assert expected == pytest.approx(2.0)
