"""Data parallelism: two gloo processes under torchrun follow the single-process run."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from otflows.flows import load_flow

WORKER = Path(__file__).parent / "workers" / "data_parallel.py"


def _run(command, out):
    out.mkdir()
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*command, str(WORKER), str(out)], check=True, env=environment, timeout=600)
    return [torch.load(path, weights_only=True) for path in sorted(out.glob("rank*.pt"))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    (single,) = _run([sys.executable], root / "single")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    ranks = _run([*torchrun, "--nproc-per-node", "2"], root / "two")
    return single, ranks


def _assert_close(a, b, rtol):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=rtol, atol=rtol, msg=key)


def test_processes_hold_identical_weights(runs):
    _, (rank0, rank1) = runs
    for key in ("flow", "timed", "semidual", "sinkhorn", "likelihood"):
        _assert_close(rank0[key], rank1[key], rtol=0)


@pytest.mark.parametrize("key", ["flow", "semidual", "sinkhorn", "likelihood"])
def test_two_processes_equal_one(runs, key):
    single, (rank0, _) = runs
    torch.testing.assert_close(rank0[f"{key}_loss"], single[f"{key}_loss"], rtol=1e-9, atol=1e-9)
    _assert_close(rank0[key], single[key], rtol=1e-8)
    # the run moved the weights: the comparison is not of two initialisations
    assert (single[f"{key}_loss"][0] - single[f"{key}_loss"][-1]).abs() > 1e-3


def test_the_command_line_under_torchrun(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(300, 2)))
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "torch.distributed.run", "--standalone"),
            *("--nproc-per-node", "2", "-m", "otflows.cli", "fit", "--no-progress"),
            *("--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "m.pt")),
            *("--epochs", "1", "--hidden-features", "4"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.count("trained 3 steps") == 1  # rank 0 alone reports and saves
    assert load_flow(tmp_path / "m.pt").features == 2
