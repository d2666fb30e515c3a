r"""Samples from files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["ARRAY_SUFFIXES", "check_array_path", "load_array", "save_array"]

ARRAY_SUFFIXES = (".npy", ".csv")  # what load_array reads and save_array writes


def load_array(path: str | Path, mmap: bool = False) -> np.ndarray:
    r"""Reads samples ``[N, D]`` from a ``.npy`` file or a numeric ``.csv`` (one row each).

    A CSV may have one header line; every other cell must be a number. With ``mmap`` a
    ``.npy`` file is memory-mapped (a read-only ``np.memmap``) instead of read: data larger
    than memory, which :func:`otflows.fit_flow` reads one minibatch at a time.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "x.csv")
        >>> _ = open(path, "w").write("a,b\n1,2\n3,4\n")
        >>> load_array(path)
        array([[1., 2.],
               [3., 4.]])
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    if mmap and path.suffix != ".npy":
        raise ValueError(f"only a .npy file can be memory-mapped; got {path.name}")
    if path.suffix == ".npy":
        X = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    elif path.suffix == ".csv":
        with open(path) as f:
            first = f.readline()
        try:
            [float(cell) for cell in first.split(",")]
            skip = 0
        except ValueError:
            skip = 1
        try:
            X = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
        except ValueError as error:
            raise ValueError(f"{path}: every cell after the header must be a number") from error
    else:
        raise ValueError(f"data must be a .npy or .csv file; got {path.name}")
    return X


def check_array_path(path: str | Path, name: str, ndim: int = 2) -> Path:
    r"""``path`` as a :class:`~pathlib.Path` when :func:`save_array` can write an array of
    ``ndim`` axes there (``.npy`` any, ``.csv`` two); else a one-line error naming ``name`` (a
    flag or an argument). Check before the work whose result is to be written.

    Example:
        >>> check_array_path("mapped.txt", "--out")
        Traceback (most recent call last):
        ...
        ValueError: --out mapped.txt: write a .npy or .csv file (the suffix names the format)
    """
    path = Path(path)
    if path.suffix not in ARRAY_SUFFIXES:
        raise ValueError(f"{name} {path}: write a .npy or .csv file (the suffix names the format)")
    if path.suffix == ".csv" and ndim != 2:
        raise ValueError(f"{name} {path}: an array of {ndim} axes needs a .npy file")
    return path


def save_array(path: str | Path, X: np.ndarray, name: str = "path") -> Path:
    r"""Writes ``X`` to ``path`` in the format its suffix names: ``.npy`` (any shape), or
    ``.csv`` (``[N, D]``, one row a line, every digit of each number, as :func:`load_array`
    reads it); returns the path written, which is ``path`` itself.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "y.csv")
        >>> save_array(path, np.array([[0.1, 2.0]])).name
        'y.csv'
        >>> load_array(path)
        array([[0.1, 2. ]])
    """
    path = check_array_path(path, name, np.ndim(X))
    if path.suffix == ".npy":
        with open(path, "wb") as f:  # a file object: np.save adds no second suffix
            np.save(f, X, allow_pickle=False)
    else:
        np.savetxt(path, X, delimiter=",", fmt="%.17g")
    return path
