"""Validation at the public edge names the argument and what was expected."""

import numpy as np
import pytest
import torch

from otflows.validation import as_samples


@pytest.mark.parametrize(
    "X, kwargs, error, message",
    [
        (np.zeros(3), {}, ValueError, r"X must be a matrix \[N, D\]; got shape \(3,\)"),
        (np.zeros((0, 2)), {}, ValueError, "X is empty"),
        (np.zeros((2, 2)), {"features": 3}, ValueError, "X must have 3 features"),
        (np.array([[1.0, np.inf]]), {}, ValueError, "X contains 1 NaN or Inf"),
        (np.array([["a", "b"]]), {}, TypeError, "X must hold real numbers"),
        (torch.zeros(2, 2, dtype=torch.long), {}, TypeError, "floating-point tensor"),
        (
            torch.zeros(2, 2, dtype=torch.float32),
            {"dtype": torch.float64},
            TypeError,
            "the model expects torch.float64",
        ),
        ("x", {}, TypeError, "got str"),
    ],
)
def test_bad_samples(X, kwargs, error, message):
    with pytest.raises(error, match=message):
        as_samples(X, "X", **kwargs)


def test_arrays_are_cast_to_the_models_dtype_and_tensors_kept():
    assert as_samples(np.ones((2, 2), dtype=np.int64), dtype=torch.float32).dtype == torch.float32
    X = torch.ones(2, 2, dtype=torch.float64)
    assert as_samples(X, dtype=torch.float64) is X
