r"""Samples from files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["load_array"]


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
