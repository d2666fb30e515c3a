r"""The scores' inputs, checked once: samples and Gaussian parameters as float64 NumPy arrays,
and a model's dtype and device."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from otflows.validation import as_samples

__all__ = ["Array", "as_float64", "gaussian_parameters", "model_spec"]

Array = Tensor | np.ndarray


def as_float64(a: Array, name: str, features: int | None = None) -> np.ndarray:
    """Validated samples ``[N, D]`` (:func:`otflows.validation.as_samples`, errors naming
    ``name``) as a float64 NumPy array.

    Example:
        >>> as_float64(torch.zeros(3, 2), "X").dtype
        dtype('float64')
    """
    dtype = torch.float64 if isinstance(a, np.ndarray) else None  # tensors keep their dtype
    X = as_samples(a, name, features=features, dtype=dtype)
    return X.detach().cpu().double().numpy()


def gaussian_parameters(
    m: Array | None, C: Array, suffix: str
) -> tuple[np.ndarray | None, np.ndarray]:
    """A validated mean ``[D]`` (if given) and covariance ``[D, D]`` as float64 NumPy arrays,
    errors naming ``m`` and ``C`` with ``suffix``.

    Example:
        >>> gaussian_parameters(np.zeros(2), np.eye(2), "1")[1].shape
        (2, 2)
    """
    C = as_float64(C, f"C{suffix}")
    if C.shape[0] != C.shape[1]:
        raise ValueError(f"C{suffix} must be a square covariance [D, D]; got shape {C.shape}")
    if m is None:
        return None, C
    if getattr(m, "ndim", None) != 1:
        shape = tuple(getattr(m, "shape", ()))
        raise ValueError(f"m{suffix} must be a mean vector [{C.shape[0]}]; got shape {shape}")
    return as_float64(m[None], f"m{suffix}", C.shape[1])[0], C


def model_spec(model: torch.nn.Module) -> dict:
    """The dtype and device of a model's first parameter (or buffer, for closed-form models).

    Example:
        >>> model_spec(torch.nn.Linear(2, 2).double())["dtype"]
        torch.float64
    """
    tensor = next(itertools.chain(model.parameters(), model.buffers()))
    return {"dtype": tensor.dtype, "device": tensor.device}
