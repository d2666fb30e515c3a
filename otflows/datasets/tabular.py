r"""The tabular density-estimation sets of MAF (Papamakarios et al. 2017), read from a local
folder (never downloaded): POWER, GAS, HEPMASS, MINIBOONE and BSDS300.

``root`` is the folder of the MAF release (zenodo record 1161203, ``data/``), with the raw files
``power/data.npy``, ``gas/ethylene_CO.pickle``, ``hepmass/1000_{train,test}.csv``,
``miniboone/data.npy`` and ``BSDS300/BSDS300.hdf5``; these are split and normalised exactly as
MAF's code does. A folder ``root/<name>/`` holding already processed ``train.npy``,
``val.npy`` and ``test.npy`` is read as is. GAS needs pandas, BSDS300 h5py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["TABULAR", "load_tabular"]

TABULAR = ("power", "gas", "hepmass", "miniboone", "bsds300")
_FOLDERS = {"bsds300": "BSDS300"}


def _split(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MAF's split: the last 10 % test, then the last 10 % of the rest validation."""
    n_test = int(0.1 * len(data))
    test, rest = data[len(data) - n_test :], data[: len(data) - n_test]
    n_val = int(0.1 * len(rest))
    return rest[: len(rest) - n_val], rest[len(rest) - n_val :], test


def _normalise(train, val, test, reference):
    mean, std = reference.mean(0), reference.std(0)
    return tuple((x - mean) / std for x in (train, val, test))


def _power(folder: Path):
    data = np.load(folder / "data.npy")
    rng = np.random.RandomState(42)
    rng.shuffle(data)
    n = len(data)
    data = np.delete(np.delete(data, 3, axis=1), 1, axis=1)
    noise = np.hstack(
        (0.001 * rng.rand(n, 1), 0.01 * rng.rand(n, 1), rng.rand(n, 3), np.zeros((n, 1)))
    )
    train, val, test = _split(data + noise)
    return _normalise(train, val, test, np.vstack((train, val)))


def _gas(folder: Path):
    try:
        import pandas as pd
    except ImportError as error:
        raise ImportError("reading GAS's ethylene_CO.pickle needs pandas") from error
    frame = pd.read_pickle(folder / "ethylene_CO.pickle").drop(columns=["Meth", "Eth", "Time"])
    while True:  # drop the first of any pair of columns correlated above 0.98
        correlated = (frame.corr() > 0.98).to_numpy().sum(axis=1)
        if not np.any(correlated > 1):
            break
        frame = frame.drop(columns=frame.columns[np.argmax(correlated > 1)])
    data = ((frame - frame.mean()) / frame.std()).to_numpy()
    return _split(data)


def _hepmass(folder: Path):
    train = np.loadtxt(folder / "1000_train.csv", delimiter=",", skiprows=1, ndmin=2)
    test = np.loadtxt(folder / "1000_test.csv", delimiter=",", skiprows=1, ndmin=2)
    train = train[train[:, 0] == 1][:, 1:]  # the signal class, without its label
    test = test[test[:, 0] == 1][:, 1:-1]  # the test file carries one more column
    mean, std = train.mean(0), train.std(0, ddof=1)
    train, test = (train - mean) / std, (test - mean) / std
    # MAF drops the features whose smallest value occurs more than 5 times (the mass columns)
    keep = [i for i in range(train.shape[1]) if np.sum(train[:, i] == train[:, i].min()) <= 5]
    train, test = train[:, keep], test[:, keep]
    n_val = int(0.1 * len(train))
    return train[: len(train) - n_val], train[len(train) - n_val :], test


def _miniboone(folder: Path):
    train, val, test = _split(np.load(folder / "data.npy"))
    return _normalise(train, val, test, np.vstack((train, val)))


def _bsds300(folder: Path):
    try:
        import h5py
    except ImportError as error:
        raise ImportError("reading BSDS300.hdf5 needs h5py") from error
    with h5py.File(folder / "BSDS300.hdf5", "r") as file:
        return tuple(np.asarray(file[key]) for key in ("train", "validation", "test"))


def load_tabular(name: str, root: str | Path) -> dict[str, np.ndarray]:
    r"""The ``train``, ``val`` and ``test`` splits ``[N, D]`` (float64) of a MAF data set.

    Arguments:
        name: ``"power"``, ``"gas"``, ``"hepmass"``, ``"miniboone"`` or ``"bsds300"``.
        root: The folder holding ``<name>/`` (see the module notes).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "miniboone").mkdir()
        >>> data = np.random.default_rng(0).normal(size=(100, 3))
        >>> np.save(root / "miniboone" / "data.npy", data)
        >>> {k: v.shape for k, v in load_tabular("miniboone", root).items()}
        {'train': (81, 3), 'val': (9, 3), 'test': (10, 3)}
    """
    if name not in TABULAR:
        raise ValueError(f"name must be one of {TABULAR}; got {name!r}")
    folder = Path(root) / _FOLDERS.get(name, name)
    if not folder.is_dir():
        raise FileNotFoundError(f"{name}: no folder {folder} (give the MAF data folder as root)")
    if all((folder / f"{split}.npy").is_file() for split in ("train", "val", "test")):
        splits = [np.load(folder / f"{split}.npy") for split in ("train", "val", "test")]
    else:
        reader = {
            "power": _power,
            "gas": _gas,
            "hepmass": _hepmass,
            "miniboone": _miniboone,
            "bsds300": _bsds300,
        }[name]
        try:
            splits = reader(folder)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{name}: {error.filename} is missing") from error
    return {
        key: np.asarray(x, dtype=np.float64)
        for key, x in zip(("train", "val", "test"), splits, strict=True)
    }
