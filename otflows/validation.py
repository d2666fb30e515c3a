r"""Checks at the public edge: samples are validated and cast once, then trusted inside."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "MappedSamples",
    "as_device",
    "as_samples",
    "check_density_data",
    "check_finite",
    "deprecated_name",
    "held_out_rows",
    "hold_out",
    "hold_out_with_context",
    "seed_of",
    "split_held_out",
    "with_context",
]


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
      :data:`otflows.affine.RIDGE` times each column's variance to its diagonal, so its
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
    from otflows.affine import RIDGE

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
            f"included; dequantise them first ({name} + uniform noise in [0, 1)) and score "
            "the dequantised values",
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


def held_out_rows(
    rows: int, name: str, fraction: float, *, max_rows: int | None = None, advice: str = ""
) -> int:
    r"""How many of ``rows`` samples ``fraction`` holds out for validation:
    :math:`\operatorname{round}(\text{fraction}\cdot N)`, at most ``max_rows``.

    Raises:
        ValueError: Naming ``name`` when that leaves no row on either side (``advice`` says
            what else the caller can pass).

    Example:
        >>> held_out_rows(1000, "X", 0.1, max_rows=64)
        64
    """
    n = round(fraction * rows)
    if max_rows is not None:
        n = min(n, max_rows)
    if n < 1 or n == rows:
        raise ValueError(
            f"validation_fraction {fraction} of the {rows} rows of {name} leaves {n} for "
            f"validation and {rows - n} for training; give more rows{advice} or "
            "validation_fraction=0"
        )
    return n


def hold_out(
    X: Tensor,
    name: str,
    fraction: float,
    generator: torch.Generator,
    *,
    max_rows: int | None = None,
    advice: str = "",
) -> tuple[Tensor, Tensor]:
    r"""Splits ``X [N, D]`` into training rows ``[N - n, D]`` and random held-out ones
    ``[n, D]``, ``n`` from :func:`held_out_rows` (which raises when a side would be empty).

    Example:
        >>> train, val = hold_out(torch.randn(10, 2), "X", 0.2, torch.Generator().manual_seed(0))
        >>> train.shape, val.shape
        (torch.Size([8, 2]), torch.Size([2, 2]))
    """
    n = held_out_rows(len(X), name, fraction, max_rows=max_rows, advice=advice)
    order = torch.randperm(len(X), generator=generator).to(X.device)
    return X[order[n:]], X[order[:n]]


def with_context(
    X: Tensor | np.ndarray,
    context: Tensor | np.ndarray,
    name: str,
    context_name: str,
    context_features: int | None = None,
    **spec: Any,
) -> tuple[Tensor, Tensor]:
    r"""Samples ``X [N, D]`` (:func:`as_samples` with ``spec``) and their contexts
    ``[N, C]``, one per row of ``X`` (same dtype and device; ``C = context_features`` when
    given).

    Example:
        >>> X, c = with_context(np.zeros((3, 2)), np.ones((3, 1)), "Xs", "cs")
        >>> c.shape
        torch.Size([3, 1])
    """
    X = as_samples(X, name, **spec)
    context = as_samples(context, context_name, **(spec | {"features": context_features}))
    if len(context) != len(X):
        raise ValueError(
            f"{context_name} must have one row per row of {name} ({len(X)}); got {len(context)}"
        )
    return X, context


def hold_out_with_context(
    X: Tensor,
    context: Tensor,
    name: str,
    fraction: float,
    generator: torch.Generator,
    *,
    max_rows: int | None = None,
    advice: str = "",
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r""":func:`hold_out` of rows with their contexts: ``X`` and ``context`` ``[N, C]`` split
    by one draw, as ``(X_train, X_val, context_train, context_val)``.

    Example:
        >>> X, c = torch.randn(10, 2), torch.randn(10, 1)
        >>> parts = hold_out_with_context(X, c, "X", 0.2, torch.Generator().manual_seed(0))
        >>> [tuple(p.shape) for p in parts]
        [(8, 2), (2, 2), (8, 1), (2, 1)]
    """
    joint = torch.cat([X, context], dim=1)
    train, held = hold_out(joint, name, fraction, generator, max_rows=max_rows, advice=advice)
    D = X.shape[1]
    return train[:, :D], held[:, :D], train[:, D:], held[:, D:]


def split_held_out(
    X: Tensor,
    context: Tensor | None,
    X_val: Tensor | np.ndarray | None,
    context_val: Tensor | np.ndarray | None,
    fraction: float,
    generator: torch.Generator,
    *,
    names: tuple[str, str] = ("X", "context"),
    what: str = "contexts",
    max_rows: int | None = None,
    advice: str = "",
    **spec: Any,
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    r"""A data set's training and held-out rows, with their contexts: ``(X, X_val, context,
    context_val)``. The held-out rows are those given (``X_val``, with ``context_val`` where
    ``X`` has a ``context``), checked with ``spec`` (:func:`as_samples`); else a random
    ``fraction`` of the rows drawn with ``generator`` (:func:`hold_out`, at most
    ``max_rows``; :func:`hold_out_with_context`); else none (``fraction`` 0). ``names`` and
    ``what`` name the arguments in errors.

    Example:
        >>> X, c = torch.randn(10, 2), torch.randn(10, 1)
        >>> parts = split_held_out(X, c, None, None, 0.2, torch.Generator().manual_seed(0))
        >>> [tuple(p.shape) for p in parts]
        [(8, 2), (2, 2), (8, 1), (2, 1)]
    """
    name, cname = names
    if X_val is not None:
        if context is None:
            if context_val is not None:
                raise ValueError(f"{cname}_val is given without {cname}")
            return X, as_samples(X_val, f"{name}_val", **spec), None, None
        if context_val is None:
            raise ValueError(f"{cname}_val must be given with {name}_val (their {what})")
        X_val, context_val = with_context(
            X_val, context_val, f"{name}_val", f"{cname}_val", context.shape[1], **spec
        )
        return X, X_val, context, context_val
    if fraction == 0:
        return X, None, context, None
    options: dict[str, Any] = {"max_rows": max_rows, "advice": advice}
    if context is None:
        X, held = hold_out(X, name, fraction, generator, **options)
        return X, held, None, None
    return hold_out_with_context(X, context, name, fraction, generator, **options)


def seed_of(random_state: Any) -> int | None:
    r"""An integer seed from ``random_state``: ``None`` (then ``None``), an int, or one drawn
    from a NumPy ``Generator`` or ``RandomState`` (scikit-learn's convention).

    Example:
        >>> seed_of(7), seed_of(None), seed_of(np.random.default_rng(0)) == seed_of(
        ...     np.random.default_rng(0)
        ... )
        (7, None, True)
    """
    if random_state is None:
        return None
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**62))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**62, dtype=np.int64))
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    raise TypeError(
        "random_state must be None, an int, a numpy.random.Generator or RandomState; got "
        f"{type(random_state).__name__}"
    )


def deprecated_name(new: str, value: Any, old: str, old_value: Any) -> Any:
    r"""The value of the argument ``new``, given under its old name ``old`` or its own (never
    both): the old name works for one release, with a :class:`DeprecationWarning` naming the
    new one. ``None`` is "not given" for either.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     deprecated_name("random_state", None, "seed", 3), str(caught[0].message)
        (3, 'seed is renamed random_state; the old name will be removed in the next release')
    """
    if old_value is None:
        return value
    if value is not None:
        raise TypeError(f"give {new} alone: {old} is its old name")
    warnings.warn(
        f"{old} is renamed {new}; the old name will be removed in the next release",
        DeprecationWarning,
        stacklevel=3,
    )
    return old_value
