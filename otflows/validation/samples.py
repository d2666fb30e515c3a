r"""Samples at the public edge: validated and cast once, then trusted inside."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

__all__ = ["MappedSamples", "as_device", "as_samples", "check_density_data", "check_finite"]


def as_device(device: str | torch.device, name: str = "device") -> torch.device:
    r"""``device`` as a :class:`torch.device` this machine has, else a one-line error naming
    ``name``: an unknown device string, CUDA where it is absent, a GPU index past the last.
    Nothing falls back to the CPU.

    Example:
        >>> as_device("cpu")
        device(type='cpu')
        >>> as_device("cdua")
        Traceback (most recent call last):
        ...
        ValueError: device must be a torch device such as 'cpu', 'cuda' or 'cuda:1'; got 'cdua'
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"{name} must be a torch device such as 'cpu', 'cuda' or 'cuda:1'; got {device!r}"
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{name} is {str(device)!r}, but CUDA is not available on this machine"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"{name} is {str(device)!r}, but this machine has "
                f"{torch.cuda.device_count()} GPU(s)"
            )
    return resolved


def check_finite(x: Tensor, name: str) -> Tensor:
    r"""Raises a :class:`ValueError` naming ``name`` when ``x`` holds NaN or Inf.

    Example:
        >>> check_finite(torch.ones(2), "x")
        tensor([1., 1.])
    """
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        where = ""
        if x.ndim == 2:
            where = f" in rows {(~finite).any(-1).nonzero()[:5, 0].tolist()}"
        raise ValueError(
            f"{name} contains {bad} NaN or Inf value(s){where}; expected finite numbers"
        )
    return x


# rows of the data whose covariance decides whether it is singular (as the Gaussian start reads)
DENSITY_CHECK_ROWS = 5000


def check_density_data(X: Tensor, name: str = "X") -> Tensor:
    r"""What a density fit of the samples ``X [N, D]`` needs: an error for data without a
    density, a warning saying what a fit of degenerate data does. Returns ``X``.

    - A constant column: a :class:`ValueError` naming it (the data lie on a lower-dimensional
      set, where no density exists).
    - A singular covariance (fewer rows than columns, or columns that are linear combinations
      of others; read on the first :data:`DENSITY_CHECK_ROWS` rows): a warning that the
      Gaussian of the data (the flow's start and fallback) adds a ridge of
      :data:`otflows.transforms.affine.RIDGE` times each column's variance to its diagonal, so its
      log-densities are large and set by that ridge.
    - Whole numbers only (counts, pixel levels): a warning that a continuous density of them
      grows without bound at the integers, held-out rows included, and how to dequantise them.

    Example:
        >>> check_density_data(torch.randn(100, 3)).shape
        torch.Size([100, 3])
        >>> check_density_data(torch.ones(100, 3))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: X's columns [0, 1, 2] are constant (column 0 is 1 in every row): data ...
    """
    from otflows.transforms.affine import RIDGE

    N, D = X.shape
    constant = (X.amax(0) == X.amin(0)).nonzero()[:, 0].tolist()
    if constant:
        value = f"{float(X[0, constant[0]]):g} in every row"
        which = (
            f"columns {constant[:10]} are constant (column {constant[0]} is {value})"
            if len(constant) > 1
            else f"column {constant[0]} is constant ({value})"
        )
        raise ValueError(
            f"{name}'s {which}: data on a lower-dimensional set have no density; drop "
            f"{'them' if len(constant) > 1 else 'it'}"
        )
    if bool((X == X.round()).all()):
        warnings.warn(
            f"every value of {name} is a whole number (counts or pixel levels?): a continuous "
            "density fitted to them grows without bound at the integers, held-out rows "
            f"included; dequantise them first ({name} + uniform noise in [0, 1)), score "
            "the dequantised values, and give the flow their range "
            "(BrenierFlow(..., bounds=(low, high + 1)))",
            UserWarning,
            stacklevel=4,  # fit_flow's caller
        )
    rows = X[:DENSITY_CHECK_ROWS].double()
    z = (rows - rows.mean(0)) / rows.std(0)
    eigenvalues = torch.linalg.eigvalsh(z.T @ z / max(len(z) - 1, 1))
    if len(rows) <= D or float(eigenvalues[0]) < 1e-10 * float(eigenvalues[-1]):
        why = (
            f"{N} rows for {D} columns"
            if N <= D
            else "some columns are linear combinations of others"
        )
        warnings.warn(
            f"{name}'s covariance is singular ({why}): its density is degenerate. The "
            f"Gaussian of {name} (the flow's start and fallback) adds {RIDGE:g} times each "
            "column's variance to its diagonal, so its log-densities are large and set by "
            "that ridge; drop the redundant columns for a density of the rest",
            UserWarning,
            stacklevel=4,  # fit_flow's caller
        )
    return X


def as_samples(
    X: Tensor | np.ndarray,
    name: str = "X",
    *,
    features: int | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Validates a sample matrix ``[N, D]`` and returns it as a tensor.

    A NumPy array is converted to ``dtype`` (the model's); a tensor must already have that
    dtype and device, so nothing is silently cast or moved.

    Arguments:
        X: The samples, ``[N, D]``, real-valued, finite, ``N >= 1``.
        name: The argument's name, used in error messages.
        features: The expected ``D``, if known.
        dtype: The floating dtype the samples must have (default: the tensor's own, or
            torch's default dtype for arrays).
        device: The device the samples must be on (arrays are placed there).

    Returns:
        The samples as a tensor ``[N, D]``.

    Example:
        >>> as_samples(np.zeros((3, 2)), dtype=torch.float64).shape
        torch.Size([3, 2])
        >>> as_samples(np.zeros((3, 2)), features=5)
        Traceback (most recent call last):
        ...
        ValueError: X must have 5 features (shape [N, 5]); got shape (3, 2)
    """
    if isinstance(X, np.ndarray):
        _check_real(X, name)
        X = X if X.flags.writeable else X.copy()  # torch shares memory only with writable arrays
        X = torch.as_tensor(X, dtype=dtype or torch.get_default_dtype(), device=device)
    elif isinstance(X, Tensor):
        if not X.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor; got {X.dtype}")
        if dtype is not None and X.dtype != dtype:
            raise TypeError(f"{name} has dtype {X.dtype}; the model expects {dtype}")
        if device is not None and not _same_device(X.device, torch.device(device)):
            raise ValueError(f"{name} is on {X.device}; the model is on {torch.device(device)}")
    else:
        raise TypeError(
            f"{name} must be a torch.Tensor or a numpy.ndarray; got {type(X).__name__}"
        )
    _check_shape(tuple(X.shape), name, features)
    return check_finite(X, name)


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def _check_real(X: np.ndarray, name: str) -> None:
    if X.dtype == object or not (
        np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)
    ):
        raise TypeError(f"{name} must hold real numbers; got a NumPy array of {X.dtype}")


def _check_shape(shape: tuple[int, ...], name: str, features: int | None) -> None:
    if len(shape) != 2:
        raise ValueError(f"{name} must be a matrix [N, D]; got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"{name} is empty: it needs at least one sample (row)")
    if features is not None and shape[1] != features:
        raise ValueError(
            f"{name} must have {features} features (shape [N, {features}]); got shape {shape}"
        )


class MappedSamples:
    r"""Samples ``[N, D]`` in a NumPy memmap, read a minibatch at a time: data larger than
    memory trains without being loaded whole.

    Shape and dtype are checked at once; values are checked as they are read (each minibatch
    must be finite, or a :class:`ValueError` names the rows), then cast to ``dtype`` on
    ``device``. Indexing with a tensor of row indices ``[B]`` gives the rows ``[B, D]``.

    Arguments:
        X: The memmap (e.g. ``np.load(path, mmap_mode="r")``).
        name: The argument's name, used in error messages.
        features: The expected ``D``, if known.
        dtype: The floating dtype of the rows returned (default: torch's default dtype).
        device: Where the rows go.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
        >>> np.save(path, np.arange(6.0).reshape(3, 2))
        >>> X = MappedSamples(np.load(path, mmap_mode="r"), dtype=torch.float64)
        >>> X.shape, X[torch.tensor([2, 0])]
        ((3, 2), tensor([[4., 5.],
                [0., 1.]], dtype=torch.float64))
    """

    def __init__(
        self,
        X: np.ndarray,
        name: str = "X",
        *,
        features: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ):
        _check_real(X, name)
        _check_shape(tuple(X.shape), name, features)
        self.X, self.name = X, name
        self.dtype, self.device = dtype or torch.get_default_dtype(), device
        self.shape: tuple[int, int] = tuple(X.shape)

    def __getitem__(self, index: Tensor) -> Tensor:
        rows = torch.as_tensor(
            np.asarray(self.X[index.cpu().numpy()]), dtype=self.dtype, device=self.device
        )
        finite = torch.isfinite(rows).all(-1)
        if not bool(finite.all()):
            bad = index.cpu()[~finite.cpu()][:5].tolist()
            raise ValueError(
                f"{self.name} holds NaN or Inf in rows {bad}; expected finite numbers"
            )
        return rows
