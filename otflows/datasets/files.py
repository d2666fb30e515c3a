r"""Samples from files, and samples to files: ``.npy`` and ``.csv``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

__all__ = ["ARRAY_SUFFIXES", "check_array_path", "csv_columns", "load_array", "save_array"]

ARRAY_SUFFIXES = (".npy", ".csv")  # what load_array reads and save_array writes


def load_array(path: str | Path, mmap: bool = False) -> np.ndarray:
    r"""Reads samples ``[N, D]`` from a ``.npy`` file or a numeric ``.csv`` (one row each).

    A CSV may have one header line (its column names, :func:`csv_columns`); every other cell
    must be a finite number, every row as long as the first. Blank lines are passed over.
    Where a cell or a row is not, the error names the file, the line as an editor numbers it
    and the column. With ``mmap`` a ``.npy`` file is memory-mapped (a read-only ``np.memmap``)
    instead of read: data larger than memory, which :func:`otflows.fit_flow` reads one
    minibatch at a time.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "x.csv")
        >>> _ = open(path, "w").write("a,b\n1,2\n3,4\n")
        >>> load_array(path)
        array([[1., 2.],
               [3., 4.]])
        >>> _ = open(path, "w").write("a,b\n1,2\n3,four\n")
        >>> load_array(path)
        Traceback (most recent call last):
        ...
        ValueError: ...x.csv, line 3, column 2 (b): 'four' is not a number
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    if mmap and path.suffix != ".npy":
        raise ValueError(f"only a .npy file can be memory-mapped; got {path.name}")
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    if path.suffix == ".csv":
        return _read_csv(path)[1]
    raise ValueError(f"data must be a .npy or .csv file; got {path.name}")


def csv_columns(path: str | Path) -> list[str] | None:
    r"""The column names of a CSV file's header line, or ``None`` where it has none (its first
    line is numbers) or ``path`` is not a CSV file.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "x.csv")
        >>> _ = open(path, "w").write("height, weight\n1,2\n")
        >>> csv_columns(path)
        ['height', 'weight']
    """
    path = Path(path)
    if path.suffix != ".csv":
        return None
    with open(path, newline="") as f:
        return _header_of(next((row for row in csv.reader(f) if row), []))


def _header_of(row: list[str]) -> list[str] | None:
    r"""A CSV file's first row as column names, or ``None`` where it is numbers."""
    return None if all(_is_number(cell) for cell in row) else [cell.strip() for cell in row]


def _read_csv(path: Path) -> tuple[list[str] | None, np.ndarray]:
    r"""A CSV file's header (``None``: none) and its numbers ``[N, D]``, in float64; a
    :class:`ValueError` naming the file, line and column of the first cell or row that is
    not a finite number or not as long as the first."""
    with open(path, newline="") as f:
        lines = [(n, row) for n, row in enumerate(csv.reader(f), start=1) if row]
    if not lines:
        raise ValueError(f"{path}: the file is empty; expected rows of numbers, one sample a line")
    header = _header_of(lines[0][1])
    if header is not None:
        lines = lines[1:]
    if not lines:
        raise ValueError(f"{path}: a header and no rows; expected rows of numbers below it")
    width = len(header) if header is not None else len(lines[0][1])
    names: list[str | None] = list(header) if header is not None else [None] * width
    for n, row in lines:
        if len(row) != width:
            first = "the header has" if header is not None else f"line {lines[0][0]} has"
            raise ValueError(f"{path}, line {n}: {len(row)} cells where {first} {width}")
    try:
        X = np.array([row for _, row in lines], dtype=np.float64)
    except ValueError:
        X = None
    for i, (n, row) in enumerate(lines):
        for j, cell in enumerate(row):
            if X is not None and np.isfinite(X[i, j]):
                continue
            column = f"column {j + 1}" + (f" ({names[j]})" if names[j] else "")
            if not cell.strip():
                raise ValueError(f"{path}, line {n}, {column}: the cell is empty")
            if not _is_number(cell):
                raise ValueError(f"{path}, line {n}, {column}: {cell.strip()!r} is not a number")
            if not np.isfinite(float(cell)):
                raise ValueError(
                    f"{path}, line {n}, {column}: {cell.strip()} is not a finite number"
                )
    if X is None:  # every cell is a number Python reads and NumPy does not (e.g. "1_000")
        X = np.array([[float(cell) for cell in row] for _, row in lines])
    return header, X


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


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


def save_array(
    path: str | Path, X: np.ndarray, name: str = "path", columns: list[str] | None = None
) -> Path:
    r"""Writes ``X`` to ``path`` in the format its suffix names: ``.npy`` (any shape), or
    ``.csv`` (``[N, D]``): a header line, ``columns`` (by default ``x0``, ``x1``…), then one
    row a line, each number in the shortest form that reads back to the same value of ``X``'s
    dtype (a float32 keeps 9 significant digits at most, a float64 17), as :func:`load_array`
    reads it. Returns the path written, which is ``path`` itself.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "y.csv")
        >>> save_array(path, np.array([[0.1, 2.0]], dtype=np.float32)).name
        'y.csv'
        >>> print(open(path).read())
        x0,x1
        0.1,2.0
        <BLANKLINE>
        >>> load_array(path).astype(np.float32)
        array([[0.1, 2. ]], dtype=float32)
    """
    path = check_array_path(path, name, np.ndim(X))
    if path.suffix == ".npy":
        with open(path, "wb") as f:  # a file object: np.save adds no second suffix
            np.save(f, X, allow_pickle=False)
        return path
    X = np.asarray(X)
    header = columns if columns is not None else [f"x{j}" for j in range(X.shape[1])]
    if len(header) != X.shape[1]:
        raise ValueError(f"{name} {path}: {len(header)} column names for {X.shape[1]} columns")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([str(value) for value in row] for row in X)
    return path
