"""Doctest namespace shared by every module's examples; the repository's ``benchmarks/``
scripts (the studies and the report) importable by name, as each script imports the others."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    doctest_namespace["torch"] = torch
    doctest_namespace["np"] = np


@pytest.fixture(autouse=True)
def _threads_as_they_were():
    """torch's threads and every fit's (a benchmark's or the command line's ``--threads`` sets
    both for the process) as they were before each test."""
    from otflows.training.threads import chosen_threads, set_fit_threads

    threads, chosen = torch.get_num_threads(), chosen_threads()
    yield
    set_fit_threads(chosen)
    torch.set_num_threads(threads)
