"""Test options: ``--dtype`` (default float64) and ``--device`` (default cpu); hypothesis
runs derandomised (the same examples every run) unless ``HYPOTHESIS_PROFILE=explore``."""

import os

import pytest
import torch
from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


def pytest_addoption(parser):
    parser.addoption("--dtype", default="float64", choices=["float32", "float64"])
    parser.addoption("--device", default="cpu")


@pytest.fixture(autouse=True)
def _default_dtype_and_device(request):
    dtype = getattr(torch, request.config.getoption("--dtype"))
    device = torch.device(request.config.getoption("--device"))
    previous = torch.get_default_dtype(), torch.get_default_device()
    torch.set_default_dtype(dtype)
    # a default device other than the CPU routes every torch call through a Python mode:
    # set it only when asked for one
    moved = device != previous[1]
    if moved:
        torch.set_default_device(device)
    yield
    torch.set_default_dtype(previous[0])
    if moved:
        torch.set_default_device(previous[1])


@pytest.fixture
def dtype():
    return torch.get_default_dtype()


@pytest.fixture
def tol(dtype):
    """A relative tolerance for comparisons of computed quantities in this dtype."""
    return 1e-9 if dtype == torch.float64 else 1e-4


@pytest.fixture
def float64():
    """Float64 for this test whatever ``--dtype`` says: for tolerances float32 cannot meet."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
