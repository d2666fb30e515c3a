"""The benchmarks' parts against closed forms, and every benchmark's quick run end to end."""

import json
import math
import os
import platform
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from report import STUDIES, study

from otflows.bench import BENCHMARKS, run, summary
from otflows.bench.baselines import CPFlow, Whitening, autoregressive_flow, spline_flow
from otflows.bench.common import keep_freed_memory, provenance
from otflows.bench.density import digits
from otflows.bench.density import run as density_run
from otflows.bench.gradient_field import grad_f
from otflows.bench.ot_maps import KnownMapRegression, semidual_uvp
from otflows.cli import main as cli
from otflows.datasets import GaussianCoupling, checkerboard, eight_gaussians, load_tabular
from otflows.maps import BrenierMap
from otflows.metrics import l2_uvp


def _dense_log_prob(T, x: torch.Tensor) -> torch.Tensor:
    """log N(T(x); 0, I) + log|det ∂T/∂x|, with the Jacobian from autograd, sample by sample."""
    values = []
    for xi in x:
        J = torch.autograd.functional.jacobian(lambda v: T(v[None])[0], xi)
        z = T(xi[None])[0]
        normal = -0.5 * z.square().sum() - 0.5 * len(z) * math.log(2 * math.pi)
        values.append(normal + torch.linalg.slogdet(J).logabsdet)
    return torch.stack(values)


def test_keep_freed_memory_takes_on_glibc():
    assert keep_freed_memory() == (platform.libc_ver()[0] == "glibc")


def test_cpflow_exact_log_prob_is_the_change_of_variables():
    torch.manual_seed(0)
    flow = CPFlow(3, num_blocks=2).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    flow.initialize(torch.randn(64, 3, dtype=torch.float64))
    flow.eval()

    def T(v):
        for layer in flow.layers:
            v = layer(v) if hasattr(layer, "get_potential") else layer.forward_transform(v)[0]
        return v

    expected = _dense_log_prob(T, x)
    torch.testing.assert_close(flow.log_prob(x).detach(), expected, rtol=1e-9, atol=1e-9)
    flow.train()  # brute-force training mode: the same value, with gradients
    value = flow.log_prob(x)
    torch.testing.assert_close(value.detach(), expected, rtol=1e-9, atol=1e-9)
    value.sum().backward()
    assert all(p.grad is not None for p in flow.layers[1].parameters() if p.requires_grad)


def test_whitening_is_the_maximum_likelihood_gaussian():
    rng = np.random.default_rng(0)
    X = torch.as_tensor(rng.normal(size=(500, 3)) @ rng.normal(size=(3, 3)))
    flow = Whitening(X)
    x = torch.as_tensor(rng.normal(size=(7, 3)))
    gaussian = scipy.stats.multivariate_normal(X.mean(0).numpy(), np.cov(X.numpy().T))
    np.testing.assert_allclose(flow.log_prob(x).numpy(), gaussian.logpdf(x.numpy()), rtol=1e-10)


@pytest.mark.parametrize("kind", ["iaf", "maf"])
def test_autoregressive_flow_log_prob_is_the_change_of_variables(kind):
    torch.manual_seed(0)
    flow = autoregressive_flow(3, kind, num_layers=2, hidden_features=8).double()
    with torch.no_grad():  # as after training: the zero-initialised output layers move
        for parameter in flow.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(
        flow.log_prob(x).detach(),
        _dense_log_prob(lambda v: flow._transform(v)[0], x),
        rtol=1e-8,
        atol=1e-8,
    )
    with pytest.raises(ValueError, match="kind"):
        autoregressive_flow(3, "nvp")


@pytest.mark.parametrize("package", ["zuko", "nflows"])
def test_spline_flow_log_prob_is_the_change_of_variables_of_its_transport(package):
    """The spline baselines' density is that of their map data → noise, on points inside the
    splines' interval and in their tails."""
    torch.manual_seed(0)
    flow = spline_flow(3, package, num_layers=2, hidden_features=8).double()
    with torch.no_grad():  # away from the identity, as after training
        for parameter in flow.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    x = torch.cat([torch.randn(4, 3), torch.full((1, 3), 6.0)]).double()
    T = flow.flow().transform if package == "zuko" else lambda v: flow._transform(v)[0]
    expected = _dense_log_prob(T, x)
    torch.testing.assert_close(flow.log_prob(x).detach(), expected, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(flow.transport(x), T(x).detach())
    with pytest.raises(ValueError, match="package must be 'zuko' or 'nflows'; got 'pyro'"):
        spline_flow(3, "pyro")


def test_density_rows_score_each_method_at_its_best_validated_checkpoint():
    """At t seconds a method scores the test NLL of its best validated checkpoint by then;
    the Brenier row gives its share of the NSF's gain over the Gaussian."""
    from otflows.bench.density import rows

    runs = [
        {
            "data": "toy",
            "method": "gaussian",
            "nll": 3.0,
            "parameters": 5,
            "points": [(0.0, 0, None, 3.0)],
        },
        {
            "data": "toy",
            "method": "brenier",
            "nll": 2.4,
            "parameters": 9,
            "steps": 90,
            "points": [(5.0, 10, 2.9, 2.8), (20.0, 40, 2.5, 2.6), (40.0, 90, 2.6, 2.4)],
        },
        {
            "data": "toy",
            "method": "nsf",
            "nll": 2.0,
            "parameters": 9,
            "steps": 70,
            "points": [(5.0, 10, 2.2, 2.3), (40.0, 70, 2.1, 2.0)],
        },
    ]
    table = {r["method"]: r for r in rows(runs, budget=40.0)}
    assert table["brenier"]["at_10"] == 2.8 and table["brenier"]["at_30"] == 2.6
    assert table["nsf"]["at_30"] == 2.3 and table["nsf"]["nll"] == 2.0
    assert table["brenier"]["share"] == "60 %"  # (3.0 − 2.4) / (3.0 − 2.0)
    assert "share" not in table["nsf"] and table["gaussian"]["at_10"] == 3.0


def test_gradient_field_is_the_gradient_of_f():
    x = torch.rand(20, 2, dtype=torch.float64, requires_grad=True)
    x1, x2 = x[:, 0], x[:, 1]
    f = x1**4 + x1**2 / 2 + x1 * x2 / 2 + 3 * x2**2 / 2 - x2**3 / 3
    (expected,) = torch.autograd.grad(f.sum(), x)
    torch.testing.assert_close(grad_f(x), expected)


def test_digits_offset_is_the_log_det_of_the_logit_scaling():
    splits = digits("logit", seed=0)
    assert splits["train"].shape == (1257, 64) and splits["test"].shape == (360, 64)
    # the dequantised levels x behind the test points, and z = logit(α + (1 − 2α) x / 17)
    s = torch.sigmoid(torch.as_tensor(splits["test"][:3]))
    x = ((s - 0.05) / 0.9 * 17.0).requires_grad_(True)
    z = torch.logit(0.05 + 0.9 * x / 17.0)
    (derivative,) = torch.autograd.grad(z.sum(), x)
    np.testing.assert_allclose(
        splits["test_offset"][:3], derivative.log().sum(-1).numpy(), rtol=1e-8
    )
    standard = digits("standard", seed=0)
    np.testing.assert_allclose(standard["train"].mean(0), 0, atol=1e-10)


def test_density_gaussian_reference_is_the_closed_form():
    """The reference row: the training set's Gaussian scored on the test set, in nats of the
    dequantised levels (scipy's log-density plus the logit scaling's log-det)."""
    row = density_run("digits", "gaussian", 0, 0, "logit", None, 1, False)
    splits = digits("logit", seed=0)
    train = splits["train"]
    gaussian = scipy.stats.multivariate_normal(train.mean(0), np.cov(train, rowvar=False))
    expected = -(gaussian.logpdf(splits["test"]) + splits["test_offset"]).mean()
    assert row["nll"] == pytest.approx(expected, rel=1e-10)
    assert row["bits_per_dim"] == pytest.approx(expected / (64 * math.log(2)), rel=1e-10)
    assert row["parameters"] == 64 + 64 * 65 // 2


def test_toys():
    X = eight_gaussians(8000, seed=0)
    angles = np.round(np.arctan2(X[:, 1], X[:, 0]) / (np.pi / 4)) % 8
    np.testing.assert_allclose(np.bincount(angles.astype(int)) / 8000, 1 / 8, atol=0.015)
    C = checkerboard(80_000, seed=0)
    counts, _, _ = np.histogram2d(C[:, 0], C[:, 1], bins=4, range=[[-2, 2], [-2, 2]])
    dark = (np.add.outer(np.arange(4), np.arange(4)) % 2) == 0
    np.testing.assert_allclose(counts[dark] / 80_000, 1 / 8, atol=0.005)
    assert counts[~dark].sum() == 0


def test_tabular_loaders_follow_maf(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "miniboone").mkdir()
    np.save(tmp_path / "miniboone" / "data.npy", rng.normal(3.0, 2.0, size=(1000, 4)))
    splits = load_tabular("miniboone", tmp_path)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [810, 90, 100]
    both = np.vstack((splits["train"], splits["val"]))
    np.testing.assert_allclose(both.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(both.std(0), 1, atol=1e-12)

    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power" / "data.npy", rng.normal(size=(1000, 8)))
    assert load_tabular("power", tmp_path)["train"].shape == (810, 6)

    (tmp_path / "hepmass").mkdir()
    train = np.column_stack([rng.integers(0, 2, 400), rng.normal(size=(400, 3))])
    train[:, 3] = rng.integers(0, 3, 400)  # a "mass" column: its smallest value repeats
    test = np.column_stack([np.ones(50), rng.normal(size=(50, 3)), np.zeros(50)])
    for name, table in (("1000_train.csv", train), ("1000_test.csv", test)):
        np.savetxt(tmp_path / "hepmass" / name, table, delimiter=",", header="label,a,b,c")
    hepmass = load_tabular("hepmass", tmp_path)
    signal = int((train[:, 0] == 1).sum())
    assert hepmass["train"].shape[1] == 2 and hepmass["test"].shape == (50, 2)
    assert len(hepmass["train"]) + len(hepmass["val"]) == signal

    (tmp_path / "BSDS300").mkdir()
    for split in ("train", "val", "test"):
        np.save(tmp_path / "BSDS300" / f"{split}.npy", np.zeros((5, 63)))
    assert load_tabular("bsds300", tmp_path)["val"].shape == (5, 63)
    with pytest.raises(FileNotFoundError, match="gas"):
        load_tabular("gas", tmp_path)
    with pytest.raises(ValueError, match="name"):
        load_tabular("cifar", tmp_path)


def test_known_map_regression_is_the_minibatch_l2_uvp(float64):
    """The supervised reference's loss is L2-UVP / 100 (up to the unbiased variance's
    n / (n - 1)), fitting it brings an M-MGN to the closed-form Gaussian map, and the map's
    semi-dual gap is its error in the J_T⁻¹ metric, 100 E⟨δT, J_T⁻¹δT⟩ / Var (dense Jacobians)."""
    problem = GaussianCoupling.random_pair(3, seed=0)
    X = problem.sample(2000, seed=1)
    true = problem.brenier_map(X)
    otmap = BrenierMap("mmgn", hidden_features=8, max_iter=300, lr=1e-2, random_state=0)
    otmap.set_params(objective=KnownMapRegression(problem), dtype="float64", batch_size=512)
    otmap.set_params(progress=False, validation_fraction=0)  # the regressed network itself
    otmap.fit(Xs=X, Xt=problem.sample_target(2000, seed=2))
    objective = KnownMapRegression(problem)
    objective.setup(otmap.transform_, torch.as_tensor(X), torch.as_tensor(true))
    with torch.no_grad():
        loss = float(objective.loss(otmap.transform_, torch.as_tensor(X), None, None))
    uvp = l2_uvp(otmap.transform(X), true)
    assert 100 * loss == pytest.approx(uvp * (len(X) - 1) / len(X), rel=1e-10)
    assert uvp < 0.1

    x = torch.as_tensor(X[:500])
    delta = (otmap.transform_.transport(x) - problem.brenier_map(x)).detach()
    J = otmap.transform_.jacobian(x).detach()
    metric = (delta * torch.linalg.solve(J, delta.unsqueeze(-1)).squeeze(-1)).sum(-1)
    expected = float(100 * metric.mean() / problem.brenier_map(x).var(0, unbiased=False).sum())
    assert semidual_uvp(problem, X[:500], otmap.transform_) == pytest.approx(expected, rel=1e-2)


FIGURES = {"color-transfer", "conditional", "density", "gaussian", "gradient-field", "peers"}


def _check_smoke_run(out: Path, payload: dict, printed: str) -> dict:
    """What every quick run writes: a JSON marked as a smoke run, with finite numbers and no
    error, and its figure where the benchmark draws one; what it prints: no raw dict, no
    placeholder, the files it wrote. Returns the JSON."""
    assert "(a smoke run, --quick: " in printed
    assert not re.search(r"^\{'|\? threads", printed, re.MULTILINE), printed
    assert f"wrote {out}" in printed
    figure = out.with_suffix(".png")
    assert figure.is_file() == (out.stem in FIGURES)
    if figure.is_file():
        assert f"and {figure}" in printed
    written = json.loads(out.read_text())
    assert written["smoke_run"] is True
    assert written["machine"]["torch"] == torch.__version__
    assert written["machine"]["cores"] == os.cpu_count()
    rows = written.get("rows") or written["train_step"]
    assert rows and not [r for r in rows if r.get("error")]
    numbers = [v for r in rows for v in r.values() if isinstance(v, float)]
    assert numbers and all(math.isfinite(v) for v in numbers)
    assert set(payload) <= set(written)
    return written


# README's own command runs `otflows bench gaussian --quick` (tests/test_readme.py), and the
# quick runs of peers, logdet, small-data and the defaults study are the first steps of their
# tests of a partial rerun
RERUN = {"gaussian", "peers", "logdet", "small-data"}  # small-data: a study


@pytest.mark.parametrize("name", sorted(set(BENCHMARKS) - RERUN))
def test_quick_benchmark_writes_its_json(name, tmp_path, capsys):
    out = tmp_path / f"{name}.json"
    payload = run(name, ["--quick", "--out", str(out)])
    _check_smoke_run(out, payload, capsys.readouterr().out)


@pytest.mark.parametrize("name", sorted(set(STUDIES) - {"defaults", "small-data"}))
def test_quick_study_writes_its_json(name, tmp_path, capsys):
    """The studies that chose the defaults are scripts of the repository's benchmarks/."""
    out = tmp_path / f"{name}.json"
    payload = study(name).main(["--quick", "--out", str(out)])
    _check_smoke_run(out, payload, capsys.readouterr().out)


def test_a_small_data_update_reruns_the_matched_problems_only(tmp_path, capsys):
    """And of those, only the candidates it fits: another candidate's fit of a matched
    problem is kept, and its columns stay in the table."""
    out = tmp_path / "small.json"
    first = study("small-data").main(["--quick", "--out", str(out)])
    for fit in first["fits"]:  # why it kept what it kept, and the step validation chose
        assert fit["fallback"]["kept"] == fit["kept"] and 0 <= fit["best_step"] <= fit["steps"]
    written = json.loads(out.read_text())
    other = {"problem": "wine d=4", "split": 0, "candidate": "held-out 0.1", "w2": 1.25}
    written["fits"].append(other | {"kept": "bures", "seconds": 1.0})
    out.write_text(json.dumps(written))
    again = study("small-data").main(
        ["--quick", "--update", "--match", "^wine", "--out", str(out)]
    )
    assert next(f for f in again["fits"] if f["candidate"] == "held-out 0.1")["w2"] == 1.25
    assert again["rows"][0]["held-out 0.1"] == 1.25
    again["fits"] = [f for f in again["fits"] if f["candidate"] != "held-out 0.1"]
    capsys.readouterr()
    assert again["problems"] == first["problems"] == ["wine d=4", "Gaussian d=16 n=200"]
    kept = [f for f in again["fits"] if f["problem"] != "wine d=4"]
    assert [(f["w2"], f["date"]) for f in kept] == [
        (f["w2"], f["date"]) for f in first["fits"] if f["problem"] != "wine d=4"
    ]
    rerun = [f for f in again["fits"] if f["problem"] == "wine d=4"]
    before = [f["w2"] for f in first["fits"] if f["problem"] == "wine d=4"]
    assert [f["w2"] for f in rerun] == before  # seeded: the same
    assert len(again["baselines"]) == len(first["baselines"]) == 2


@pytest.mark.parametrize("name", ["small-data", "defaults"])
def test_a_baselines_only_rerun_keeps_the_fits_and_their_origin(name, tmp_path, capsys):
    """A study's quick run, then its baselines rerun alone: the same fits, each with the
    command and commit it came from, and fresh baselines (the entropic map's among them)."""
    out = tmp_path / f"{name}.json"
    main = study(name).main if name in STUDIES else lambda argv: run(name, argv)
    first = main(["--quick", "--out", str(out)])
    _check_smoke_run(out, first, capsys.readouterr().out)
    written = json.loads(out.read_text())
    again = main(["--quick", "--baselines-only", "--out", str(out)])
    assert [f["w2"] for f in again["fits"]] == [f["w2"] for f in first["fits"]]
    assert all(f["command"] == written["command"] for f in again["fits"])
    assert len(again["baselines"]) == len(first["baselines"]) > 0
    assert all(np.isfinite(b["w2_entropic"]) and b["w2_entropic"] > 0 for b in again["baselines"])


def test_quick_peers_run_and_its_update_of_one_method(tmp_path, capsys):
    out = tmp_path / "peers.json"
    payload = run("peers", ["--quick", "--out", str(out)])
    first = _check_smoke_run(out, payload, capsys.readouterr().out)["runs"]
    run("peers", ["--quick", "--update", "--methods", "otflows-timed", "--out", str(out)])
    runs = json.loads(out.read_text())["runs"]
    assert [r["method"] for r in runs] == [r["method"] for r in first]
    updated = [i for i, r in enumerate(runs) if r["method"] == "otflows-timed"]
    assert [r for i, r in enumerate(runs) if i not in updated] == [
        r for i, r in enumerate(first) if i not in updated
    ]
    assert len(updated) == 1 and runs[updated[0]]["date"] >= first[updated[0]]["date"]
    assert {"command", "commit", "date"} <= set(runs[updated[0]])
    assert runs[updated[0]]["machine"]["threads"] == 1  # the run's own process, one thread
    out.write_text(json.dumps({"args": {"budget": "300.0"}, "runs": []}))
    with pytest.raises(ValueError, match=r"whose budget is 300\.0 CPU s; this run.s is 5\.0"):
        run("peers", ["--quick", "--update", "--methods", "otflows", "--out", str(out)])


def test_quick_logdet_run_and_a_rerun_of_its_inverses(tmp_path, capsys):
    out = tmp_path / "logdet.json"
    payload = run("logdet", ["--quick", "--out", str(out)])
    first = _check_smoke_run(out, payload, capsys.readouterr().out)
    run("logdet", ["--quick", "--sections", "inverse", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["train_step"] == first["train_step"]
    assert written["inverse"] != first["inverse"]
    keys = ("machine", "command", "commit", "date")
    assert written["kept"] == {"train_step": {k: first[k] for k in keys}}
    assert "(from `" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="was run with batch 64; this with 8"):
        run("logdet", ["--quick", "--sections", "inverse", "--batch", "8", "--out", str(out)])


def test_ot_maps_refines_every_method_but_the_supervised_reference(tmp_path):
    args = ["--gaussian-dims", "2", "--methods", "mmgn:semidual", "mmgn:known-map"]
    args += ["--samples", "500", "--batch-size", "64", "--hidden", "4", "--max-iter", "5"]
    args += ["--refine-rounds", "1", "--refine-iter", "3", "--out", str(tmp_path / "o.json")]
    rows = run("ot-maps", args)["rows"]
    assert [row["method"] for row in rows] == [
        "linear (Bures)",
        "entropic (500 samples per side)",
        "mmgn + semidual, refined ×1 (3 steps each)",
        "mmgn + known-map",
    ]


def test_bench_cli_rejects_an_unknown_benchmark(capsys):
    with pytest.raises(SystemExit):
        cli(["bench", "nothing"])
    assert "invalid choice" in capsys.readouterr().err


def test_every_published_table_is_what_its_json_renders():
    """Each page's tables are what their JSON renders (benchmarks/report.py), not typed by
    hand; the pages with tables include the studies'."""
    from report import pages, render

    root = Path(__file__).resolve().parents[1]
    found = pages(root)
    assert {"defaults_study.md", "fit_defaults_study.md"} <= {p.name for p in found}
    stale = [str(page.relative_to(root)) for page in found if render(page, check=True)]
    assert stale == [], f"run python benchmarks/report.py: {stale} differ from their JSON"


def test_no_table_of_numbers_is_typed_by_hand():
    """Outside the rendered blocks, no table of README, the docs or the studies holds a cell
    that is a number: every published number comes from a JSON."""
    from report import BLOCK

    root = Path(__file__).resolve().parents[1]
    number = re.compile(r"\|\s*\**[-+]?[\d.]+(?:e[-+]?\d+)?\s*%?\**\s*(?=\|)")
    pages = [root / "README.md", *root.glob("benchmarks/*.md"), *root.glob("docs/**/*.md")]
    typed = [
        f"{page.relative_to(root)}: {line}"
        for page in pages
        for line in BLOCK.sub("", page.read_text()).splitlines()
        if line.startswith("|") and number.search(line)
    ]
    assert typed == []


@pytest.mark.parametrize("name", sorted(BENCHMARKS) + sorted(STUDIES))
def test_a_benchmark_writes_to_a_new_folder_by_default(name, capsys):
    """Never over the committed results unless --out names them; its help says a figure is
    written exactly where the benchmark draws one."""
    with pytest.raises(SystemExit):
        study(name).main(["--help"]) if name in STUDIES else run(name, ["--help"])
    # argparse wraps the help text, at spaces or after a hyphen
    text = "".join(capsys.readouterr().out.split())
    assert "(default:otflows-results/" in text
    assert ("itsfigurebesideit(.png)" in text) == (name in FIGURES)


def test_bench_help_gives_one_line_per_benchmark(capsys):
    with pytest.raises(SystemExit):
        cli(["bench", "--help"])
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split()[0]: line for line in lines[lines.index("benchmarks:") + 1 :]}
    assert sorted(listed) == sorted(BENCHMARKS)
    for name, line in listed.items():
        assert line == f"  {name:<15} {summary(name)}" and len(summary(name).split()) >= 3
        assert "`" not in line and ":" not in line  # plain text, the first sentence alone


def test_density_skips_digits_without_scikit_learn(tmp_path, monkeypatch, capsys):
    from otflows.bench import density

    monkeypatch.setattr(density, "find_spec", lambda name: None if name == "sklearn" else 1)
    args = ["--data", "two_moons", "digits", "--methods", "gaussian", "--budget", "1"]
    rows = run("density", [*args, "--out", str(tmp_path / "d.json")])["rows"]
    assert [(r["data"], r["method"]) for r in rows] == [("two_moons", "gaussian")]
    assert "digits skipped: it is read with scikit-learn" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_a_benchmarks_unknown_device_is_one_clear_error(name):
    """Nothing falls back to the CPU: the benchmark refuses before any work, naming --device."""
    with pytest.raises(ValueError, match=r"--device must be a torch device .* got 'cdua'"):
        run(name, ["--quick", "--device", "cdua"])


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (
            ["/some/otflows/cli/__main__.py", "bench", "peers", "--quick"],
            "otflows bench peers --quick",
        ),
        (["/venv/bin/otflows", "bench", "ot-maps"], "otflows bench ot-maps"),
        (["benchmarks/peers.py", "--quick"], "benchmarks/peers.py --quick"),
    ],
)
def test_provenance_names_the_cli_as_users_run_it(monkeypatch, argv, command):
    """The command a result records is `otflows ...` however the CLI was started, so that a
    results file names no folder of the machine it ran on."""
    monkeypatch.setattr("sys.argv", argv)
    assert provenance()["command"] == command


def test_a_fit_that_spends_its_budget_on_its_last_steps_stops_by_budget_not_in_error(
    monkeypatch,
):
    """A fixed-step run whose budget runs out with its last steps (a busy machine's CPU
    seconds) is scored after them and stopped by its budget: no error."""
    from otflows.bench import peer_methods
    from otflows.bench.clock import Clock
    from otflows.maps import BrenierMap

    now = [0.0]
    fit = BrenierMap.fit

    def fit_then_past_the_budget(self, *args, **kwargs):
        fitted = fit(self, *args, **kwargs)
        now[0] = 100.0
        return fitted

    monkeypatch.setattr(BrenierMap, "fit", fit_then_past_the_budget)
    rng = np.random.default_rng(0)
    data = {"Xs": rng.normal(size=(300, 2)), "Xt": rng.normal(size=(300, 2)) + 1}
    clock = Clock(50.0, lambda T: (0.0, 1.0), timer=lambda: now[0])
    stopped = peer_methods.run_otflows(data, clock, steps=5, timed=False, seed=0, device="cpu")
    assert stopped == {"stopped": "budget"} and clock.points[-1][0] == 100.0
