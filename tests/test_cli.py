"""The command line: the demo's numbers, fitting a user's file, one-line errors."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from otflows import BrenierMap
from otflows.cli import main
from otflows.datasets import load_array
from otflows.flows import load_flow
from otflows.training.threads import threads_for


def test_demo_prints_scores_and_saves_the_figure(tmp_path, capsys):
    out, scores = tmp_path / "coupling.png", tmp_path / "demo.json"
    argv = ["demo", "--steps", "300", "--samples", "5000", "--out", str(out), "--no-progress"]
    assert main([*argv, "--json", str(scores)]) == 0
    text = capsys.readouterr().out
    assert out.stat().st_size > 10_000
    rows = {
        line.split("|")[1].strip(): line.split("|")[2]
        for line in text.splitlines()
        if line.startswith("| ") and "metric" not in line
    }
    kl = float(rows["KL = E[log μ − log p] (nats)"])
    uvp = float(rows["L2-UVP vs Brenier map (%)"])
    assert 0 <= kl < 0.05 and 0 <= uvp < 5  # a short run; `otflows demo` itself goes further
    written = json.loads(scores.read_text())  # what the docs' table is rendered from
    assert written["command"] and written["machine"]["torch"] == torch.__version__
    assert [r["value"] for r in written["rows"]][1] == pytest.approx(kl, rel=1e-3)


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_fit_saves_a_loadable_flow(tmp_path, suffix, capsys):
    X = np.random.default_rng(0).normal(size=(400, 3))
    data = tmp_path / f"x{suffix}"
    np.save(data, X) if suffix == ".npy" else np.savetxt(data, X, delimiter=",")
    model = tmp_path / "model.pt"
    assert (
        main(
            [
                "fit",
                "--data",
                str(data),
                "--out",
                str(model),
                "--epochs",
                "1",
                "--net",
                "icgn",
                "--no-progress",
            ]
        )
        == 0
    )
    assert re.search(
        r"\nkept (the Gaussian of the data|the weights of step \d+): held-out NLL ",
        capsys.readouterr().out,
    )
    assert load_flow(model).config["net"] == "icgn"


def test_fit_with_bounds_gives_a_density_in_the_box(tmp_path, capsys):
    """--bounds puts the box's logit first: the saved flow keeps the bounds, and a value
    beyond them is an error naming --data, its row and its column."""
    X = np.random.default_rng(0).uniform(0, 17, size=(400, 3))
    np.save(tmp_path / "x.npy", X)
    argv = ["fit", "--data", str(tmp_path / "x.npy"), "--bounds", "0", "17", "--max-iter", "5"]
    assert main([*argv, "--out", str(tmp_path / "m.pt"), "--no-progress"]) == 0
    assert "the Gaussian of the data's logits" in capsys.readouterr().out
    flow = load_flow(tmp_path / "m.pt")
    assert flow.config["bounds"] == [0.0, 17.0]
    assert bool(torch.isfinite(flow.log_prob(torch.as_tensor(X[:5], dtype=torch.float32))).all())
    X[7, 2] = 20.0
    np.save(tmp_path / "x.npy", X)
    assert main([*argv, "--out", str(tmp_path / "m.pt"), "--no-progress"]) == 2
    assert re.search(
        r"--data .*x.npy has a value outside the flow's bounds: row 7, column 2 is 20, "
        r"outside \[0, 17\]",
        capsys.readouterr().err,
    )


def test_errors_are_one_line_with_nonzero_status(tmp_path):
    np.save(tmp_path / "nan.npy", np.array([[0.0, np.nan]]))
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "otflows.cli",
            "fit",
            "--data",
            str(tmp_path / "nan.npy"),
            "--out",
            str(tmp_path / "m.pt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        f"otflows fit: error: --data {tmp_path / 'nan.npy'} contains 1 NaN or Inf value(s) in "
        "rows [0]; expected finite numbers"
    ]


@pytest.mark.parametrize("mmap", [False, True])
def test_fit_names_the_file_and_row_holding_nan(tmp_path, capsys, mmap):
    X = np.random.default_rng(0).normal(size=(50, 2))
    X[7, 1] = np.nan
    np.save(tmp_path / "x.npy", X)
    args = ["fit", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "m.pt")]
    assert main(args + (["--mmap"] if mmap else [])) == 2
    assert re.search(
        rf"--data {re.escape(str(tmp_path))}/x.npy (holds|contains 1) NaN or Inf "
        r"(value\(s\) )?in rows \[7\]",
        capsys.readouterr().err,
    )
    assert not (tmp_path / "m.pt").exists()


def test_map_writes_the_mapped_source_and_the_model(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.normal(size=(300, 2)))
    np.save(tmp_path / "b.npy", 2 * rng.normal(size=(200, 2)) + 1)
    args = ["map", "--source", str(tmp_path / "a.npy"), "--target", str(tmp_path / "b.npy")]
    args += ["--out", str(tmp_path / "ta.npy"), "--save", str(tmp_path / "map.pt")]
    args += ["--max-iter", "5", "--hidden-features", "4", "--no-progress"]
    args += ["--refine-rounds", "1", "--refine-iter", "3", "--max-time", "600"]
    assert main(args) == 0
    mapped = np.load(tmp_path / "ta.npy")
    assert mapped.shape == (300, 2) and np.isfinite(mapped).all()
    out = capsys.readouterr().out
    assert "cost E|x - T(x)|^2" in out
    # which map the fit ended at, and the held-out scores that chose it
    assert re.search(
        r"\nkept the (network|Bures \(linear\) map|entropic map): (it|the network)[^\n]* "
        r"held-out W2\^2 [\d.e+-]+ [^\n]*\(difference [\d.e+-]+ ± [\d.e+-]+\)",
        out,
    )
    assert re.search(
        r"\nthe simple map was the (Bures \(linear\)|entropic) map: the entropic map "
        r"cross-validated (better|no better) than the Bures map \(discrepancy difference "
        r"[\d.e+-]+ ± ",
        out,
    )
    # the settings it used: the width given, the others by 150 training rows in d = 2 and 50
    # held out
    assert re.search(
        r"\(width 4, lr 0\.01, validated by w2 on 50 held-out rows, gamma 0\.01; 75 training "
        r"rows per dimension: few rows\)",
        out,
    )
    from otflows import BrenierMap

    loaded = BrenierMap.load(tmp_path / "map.pt")
    np.testing.assert_allclose(loaded.transform(np.load(tmp_path / "a.npy")), mapped)
    assert (loaded.refine_rounds, loaded.refine_iter, loaded.max_time) == (1, 3, 600)
    assert [len(r["inner"]["fit"]["loss"]) for r in loaded.log_["refine"]] == [3]


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_map_writes_the_format_its_out_suffix_names(tmp_path, capsys, suffix):
    """The file --out names, in its format, every digit kept; another suffix is refused before
    any work, and so is a CSV for the [G, N, D] array of shared sources."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.normal(size=(100, 2)))
    np.save(tmp_path / "b.npy", rng.normal(size=(100, 2)) + 1)
    args = ["map", "--source", str(tmp_path / "a.npy"), "--target", str(tmp_path / "b.npy")]
    args += ["--max-iter", "3", "--hidden-features", "4", "--no-progress", "--dtype", "float64"]
    out = tmp_path / f"ta{suffix}"
    assert main([*args, "--out", str(out), "--save", str(tmp_path / "m.pt")]) == 0
    assert re.search(
        rf"; wrote {re.escape(str(out))}\n(.+\n)+saved the map: ", capsys.readouterr().out
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "b.npy", "m.pt", out.name]
    expected = BrenierMap.load(tmp_path / "m.pt").transform(np.load(tmp_path / "a.npy"))
    np.testing.assert_array_equal(load_array(out), expected)
    assert main([*args, "--out", str(tmp_path / "ta.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"otflows map: error: --out {tmp_path / 'ta.txt'}: write a .npy or .csv file (the "
        "suffix names the format)"
    ]
    np.save(tmp_path / "ct.npy", np.zeros((100, 1)))
    conditional = [*args, "--target-conditions", str(tmp_path / "ct.npy")]
    assert main([*conditional, "--out", str(tmp_path / "shared.csv")]) == 2
    assert "an array of 3 axes needs a .npy file" in capsys.readouterr().err
    assert not (tmp_path / "ta.txt").exists() and not (tmp_path / "shared.csv").exists()


def test_map_with_conditions_writes_the_source_mapped_at_each(tmp_path, capsys):
    """Unlabelled sources are written mapped at every target condition, [G, N, D] in sorted
    order; labelled ones each at its own; both as the saved conditional map maps them."""
    rng = np.random.default_rng(0)
    ct = np.repeat([[1.0], [0.0]], 100, axis=0)
    np.save(tmp_path / "a.npy", rng.normal(size=(120, 2)))
    np.save(tmp_path / "b.npy", rng.normal(size=(200, 2)) + 3 * ct)
    np.savetxt(tmp_path / "ct.csv", ct, delimiter=",")
    np.save(tmp_path / "cs.npy", np.repeat([[0.0], [1.0]], 60, axis=0))
    args = ["map", "--source", str(tmp_path / "a.npy"), "--target", str(tmp_path / "b.npy")]
    args += ["--target-conditions", str(tmp_path / "ct.csv"), "--max-iter", "5"]
    args += ["--hidden-features", "4", "--no-progress", "--save", str(tmp_path / "map.pt")]
    from otflows import BrenierMap

    Xs = np.load(tmp_path / "a.npy")
    assert main([*args, "--out", str(tmp_path / "shared.npy")]) == 0
    assert "each of the 2 conditions of --target-conditions" in capsys.readouterr().out
    shared = np.load(tmp_path / "shared.npy")
    loaded = BrenierMap.load(tmp_path / "map.pt")
    assert shared.shape == (2, 120, 2)
    for g, c in enumerate([0.0, 1.0]):
        expected = loaded.transform(Xs, cs=np.full((120, 1), c))
        np.testing.assert_allclose(shared[g], expected, rtol=1e-5, atol=1e-6)
    labelled = [*args, "--source-conditions", str(tmp_path / "cs.npy")]
    assert main([*labelled, "--out", str(tmp_path / "own.npy")]) == 0
    own = np.load(tmp_path / "own.npy")
    loaded = BrenierMap.load(tmp_path / "map.pt")
    cs = np.load(tmp_path / "cs.npy")
    np.testing.assert_allclose(own, loaded.transform(Xs, cs=cs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "files, message",
    [
        ({"cs": np.zeros((120, 1))}, "--source-conditions needs --target-conditions"),
        ({"ct": np.zeros((199, 1))}, r"--target-conditions .* must have one row per row"),
        ({"ct": np.zeros((200, 1)), "cs": np.zeros((120, 2))}, "--source-conditions .* 1 feat"),
    ],
)
def test_map_rejects_bad_conditions(tmp_path, capsys, files, message):
    np.save(tmp_path / "a.npy", np.ones((120, 2)))
    np.save(tmp_path / "b.npy", np.ones((200, 2)))
    args = ["map", "--source", str(tmp_path / "a.npy"), "--target", str(tmp_path / "b.npy")]
    for key, flag in (("ct", "--target-conditions"), ("cs", "--source-conditions")):
        if key in files:
            np.save(tmp_path / f"{key}.npy", files[key])
            args += [flag, str(tmp_path / f"{key}.npy")]
    assert main([*args, "--out", str(tmp_path / "o.npy"), "--max-iter", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err


def test_map_rejects_mismatched_files(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.ones((10, 2)))
    np.save(tmp_path / "b.npy", np.ones((10, 3)))
    args = ["map", "--source", str(tmp_path / "a.npy"), "--target", str(tmp_path / "b.npy")]
    assert main([*args, "--out", str(tmp_path / "o.npy"), "--max-iter", "1"]) == 2
    err = capsys.readouterr().err
    assert "--target" in err and "must have 2 features" in err
    assert len(err.strip().splitlines()) == 1


def test_color_transfer_writes_the_image_and_figure(tmp_path, capsys):
    from otflows.maps.color import read_image, write_image

    rng = np.random.default_rng(0)
    write_image(tmp_path / "src.png", rng.random((12, 10, 3)))
    write_image(tmp_path / "tgt.png", rng.random((8, 9, 3)) ** 2)
    args = ["color-transfer", *(str(tmp_path / n) for n in ("src.png", "tgt.png", "out.png"))]
    args += ["--figure", str(tmp_path / "fig.png"), "--max-iter", "5", "--pixels", "60"]
    assert main([*args, "--hidden-features", "4", "--no-progress"]) == 0
    assert read_image(tmp_path / "out.png").shape == (12, 10, 3)
    assert (tmp_path / "fig.png").stat().st_size > 1000
    assert "Sinkhorn divergence" in capsys.readouterr().out


def test_color_transfer_errors(tmp_path, capsys):
    import matplotlib.image

    rgba = np.zeros((4, 4, 4))
    rgba[..., 3] = 0.5
    matplotlib.image.imsave(tmp_path / "rgba.png", rgba)
    assert main(["color-transfer", "missing.jpg", "x.jpg", str(tmp_path / "o.png")]) == 2
    assert "image not found: missing.jpg" in capsys.readouterr().err
    path = str(tmp_path / "rgba.png")
    assert main(["color-transfer", path, path, str(tmp_path / "o.png")]) == 2
    assert "transparent alpha channel" in capsys.readouterr().err


def test_fit_from_a_memory_mapped_file(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(200, 2)))
    args = ["fit", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "m.pt"), "--mmap"]
    assert main([*args, "--epochs", "1", "--hidden-features", "4", "--no-progress"]) == 0
    assert ": held-out NLL " in capsys.readouterr().out
    assert load_flow(tmp_path / "m.pt").features == 2


@pytest.mark.parametrize("mmap", [False, True])
def test_fit_gaussian_start(tmp_path, mmap, capsys):
    """--start gaussian: the saved flow (barely trained) has the data's Gaussian NLL."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 3)) @ np.array([[2.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 1.0, 1.0]])
    np.save(tmp_path / "x.npy", X)
    args = ["fit", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "m.pt")]
    args += ["--start", "gaussian", "--num-blocks", "2", "--hidden-features", "8"]
    args += ["--epochs", "1", "--lr", "1e-6", "--dtype", "float64", "--no-progress"]
    assert main(args + (["--mmap"] if mmap else [])) == 0
    flow = load_flow(tmp_path / "m.pt")
    # --mmap: the last 10 % validate (else a random 10 %, which changes the Gaussian little)
    train = torch.as_tensor(X[:1800] if mmap else X)
    gaussian = torch.distributions.MultivariateNormal(train.mean(0), train.T.cov())
    with torch.no_grad():
        gap = flow.log_prob(train).mean() - gaussian.log_prob(train).mean()
    assert abs(gap.item()) < 0.02


def _write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        np.save(path, content)
    return str(path)


@pytest.mark.parametrize(
    "name, content, extra, message",
    [
        ("x.txt", "1,2\n", [], "data must be a .npy or .csv file; got x.txt"),
        ("x.npy", np.zeros((0, 2)), [], r"x.npy is empty"),
        ("x.npy", np.zeros(5), [], r"x.npy must be a matrix \[N, D\]; got shape \(5,\)"),
        ("x.npy", np.array([["a", "b"]]), [], "must hold real numbers"),
        ("x.csv", "a,b\n1,x\n", [], r"x.csv, line 2, column 2 \(b\): 'x' is not a number"),
        ("x.csv", "a,b\n1,2\n\n3\n", [], r"x.csv, line 4: 1 cells where the header has 2"),
        ("x.csv", "", [], r"x.csv: the file is empty; expected rows of numbers"),
        ("x.csv", "1,2\n3,4\n", ["--mmap"], "only a .npy file can be memory-mapped"),
        ("x.npy", np.zeros(5), ["--mmap"], r"x.npy must be a matrix \[N, D\]"),
        ("x.npy", np.ones((9, 2)), ["--batch-size", "0"], "batch_size must be >= 1"),
    ],
)
def test_fit_errors_are_one_line(tmp_path, capsys, name, content, extra, message):
    data = _write(tmp_path, name, content)
    assert main(["fit", "--data", data, "--out", str(tmp_path / "m.pt"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("otflows fit: error: ")
    assert re.search(message, err[0]), err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for CUDA where there is none")
@pytest.mark.parametrize("command", ["fit", "map"])
def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys, command):
    data = _write(tmp_path, "x.npy", np.ones((9, 2)))
    args = ["--data", data] if command == "fit" else ["--source", data, "--target", data]
    assert main([command, *args, "--out", str(tmp_path / "o.npy"), "--device", "cuda"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"otflows {command}: error: device is 'cuda', but CUDA is not available on this machine"
    )


@pytest.mark.parametrize("command", ["demo", "fit", "map", "color-transfer"])
def test_help_is_plain_text_with_defaults(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "``" not in text and ":class:" not in text and ":math:" not in text
    assert "(default: float32)" in text  # --dtype shows its default
    if command in ("map", "color-transfer"):
        assert f"(default: {BrenierMap().max_iter})" in text  # the estimator's own default
        # the settings that follow the data's size say so, not "None"
        assert "(default: by the training rows per dimension)" in " ".join(text.split())
        assert "(default: None)" not in text


def test_bench_help_is_plain_text(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "logdet", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "``" not in text and "side by side in one run." in text


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["fit", "--data", "{data}", "--out", "{missing}/m.pt"], "--out"),
        (["map", "--source", "{data}", "--target", "{data}", "--out", "{missing}/o.npy"], "--out"),
        (
            [
                "map",
                "--source",
                "{data}",
                "--target",
                "{data}",
                "--out",
                "{tmp}/o.npy",
                "--save",
                "{missing}/m.pt",
            ],
            "--save",
        ),
    ],
)
def test_output_folders_are_checked_before_any_work(tmp_path, capsys, argv, flag):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(50, 2)))
    paths = {"data": tmp_path / "x.npy", "missing": tmp_path / "nowhere", "tmp": tmp_path}
    assert main([a.format(**paths) for a in argv]) == 2
    err = capsys.readouterr().err
    assert f"error: {flag} " in err and "does not exist" in err
    assert not (tmp_path / "o.npy").exists()


def test_threads_sets_torchs_threads_and_the_fits(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(64, 2)))
    args = ["fit", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "m.pt")]
    assert main([*args, "--epochs", "1", "--threads", "3", "--no-progress"]) == 0
    assert torch.get_num_threads() == 3 and threads_for(1.0) == 3  # a small fit's too


def test_fit_keeps_the_gaussian_when_training_only_makes_it_worse(tmp_path, capsys):
    """A learning rate that wrecks the flow: the saved flow is the Gaussian of the rows (never
    worse on the held-out rows), and the summary says so."""
    X = np.random.default_rng(0).normal(size=(300, 2)) * [3.0, 0.5]
    np.save(tmp_path / "x.npy", X)
    args = ["fit", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "m.pt")]
    args += ["--hidden-features", "8", "--max-iter", "20", "--lr", "1", "--dtype", "float64"]
    for start in ("random", "gaussian"):
        assert main([*args, "--start", start, "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert "\nkept the Gaussian of the data: held-out NLL " in out  # its start, or the last
        assert re.search(
            r"; (no trained weights scored lower|the best trained weights \(step \d+\) are not "
            r"significantly better \(difference [+-][\d.e+-]+ ± [\d.e+-]+ nats\))\n",
            out,
        ), out
        flow = load_flow(tmp_path / "m.pt")
        X64 = torch.as_tensor(X)
        gaussian = torch.distributions.MultivariateNormal(X64.mean(0), X64.T.cov())
        with torch.no_grad():
            assert abs((flow.log_prob(X64) - gaussian.log_prob(X64)).mean().item()) < 0.02


def test_fit_states_a_warning_on_one_line_naming_the_command(tmp_path, capsys):
    """Counts are fitted, with one line saying what such a density does and what to do."""
    X = np.random.default_rng(0).poisson(3.0, size=(200, 2)).astype(float)
    args = ["fit", "--data", _write(tmp_path, "x.npy", X), "--out", str(tmp_path / "m.pt")]
    assert main([*args, "--hidden-features", "4", "--max-iter", "2", "--no-progress"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "otflows fit: warning: every value of X is a whole number (counts or pixel levels?): a "
        "continuous density fitted to them grows without bound at the integers, held-out rows "
        "included; dequantise them first (X + uniform noise in [0, 1)), score the "
        "dequantised values, and give the flow their range (BrenierFlow(..., bounds=(low, "
        "high + 1)))"
    ]
