"""The command line: the demo's numbers, fitting a user's file, one-line errors."""

import subprocess
import sys

import numpy as np
import pytest

from otflows.checkpoint import load_flow
from otflows.cli import main


def test_demo_prints_scores_and_saves_the_figure(tmp_path, capsys):
    out = tmp_path / "coupling.png"
    assert (
        main(["demo", "--steps", "300", "--samples", "5000", "--out", str(out), "--no-progress"])
        == 0
    )
    text = capsys.readouterr().out
    assert out.stat().st_size > 10_000
    rows = {
        line.split("|")[1].strip(): line.split("|")[2]
        for line in text.splitlines()
        if line.startswith("| ") and "metric" not in line
    }
    kl = float(rows["KL = E[log mu - log p] (nats)"])
    uvp = float(rows["L2-UVP vs Brenier map (%)"])
    assert 0 <= kl < 0.05 and 0 <= uvp < 5  # a short run; `otflows demo` itself goes further


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
    assert "best validation NLL" in capsys.readouterr().out
    assert load_flow(model).config["net"] == "icgn"


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
        f"otflows fit: error: --data {tmp_path / 'nan.npy'} contains 1 NaN or Inf value(s); "
        "expected finite numbers"
    ]
