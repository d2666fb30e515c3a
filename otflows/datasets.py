r"""Built-in data: the Gaussian coupling of the MGN and CP-Flow papers, 2-D toys, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import ot
import scipy.stats
import torch
from torch import Tensor

from otflows.metrics import gaussian_entropy, gaussian_w2_squared

__all__ = ["GaussianCoupling", "load_array", "two_moons"]


class GaussianCoupling:
    r"""Data :math:`\mathcal N(m, C)` to be transported onto :math:`\mathcal N(0, I)`.

    Everything about this problem is closed-form: the density, the entropy
    :math:`\frac12\log\det(2\pi e C)`, the optimal cost
    :math:`W_2^2 = \|m\|^2 + \operatorname{tr}(C + I - 2C^{1/2})` and the Brenier map
    :math:`T^*(x) = A(x - m)`, :math:`A = C^{-1/2}` (POT's ``bures_wasserstein_mapping``).

    Arguments:
        mean: :math:`m`, ``[D]``.
        cov: :math:`C`, ``[D, D]``, symmetric positive definite.

    Example:
        >>> problem = GaussianCoupling.mgn_2d()
        >>> round(problem.w2_squared, 2), round(problem.entropy, 2)
        (3.71, 2.14)
    """

    def __init__(self, mean: np.ndarray, cov: np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.cov = np.asarray(cov, dtype=np.float64)
        d = self.mean.shape[0]
        if self.cov.shape != (d, d):
            raise ValueError(f"cov must have shape ({d}, {d}); got {self.cov.shape}")
        self._chol = np.linalg.cholesky(self.cov)
        A, b = ot.gaussian.bures_wasserstein_mapping(self.mean, np.zeros(d), self.cov, np.eye(d))
        self.map_matrix, self.map_offset = A, b.reshape(d)

    @classmethod
    def mgn_2d(cls) -> GaussianCoupling:
        r"""The :math:`d = 2` problem of the MGN paper: :math:`m = (1.5, 1)`,
        :math:`C = [[0.9, -0.75], [-0.75, 0.9]]`."""
        return cls(np.array([1.5, 1.0]), np.array([[0.9, -0.75], [-0.75, 0.9]]))

    @classmethod
    def random(cls, d: int, seed: int = 0) -> GaussianCoupling:
        r"""CP-Flow's protocol: :math:`m \sim \mathcal N(0, I)`, :math:`C \sim
        \operatorname{Wishart}(d + 1, I)`, drawn from ``seed``."""
        rng = np.random.default_rng(seed)
        mean = rng.standard_normal(d)
        cov = scipy.stats.wishart(df=d + 1, scale=np.eye(d)).rvs(random_state=rng)
        return cls(mean, np.atleast_2d(cov))

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @property
    def entropy(self) -> float:
        r"""The differential entropy of the data, in nats."""
        return gaussian_entropy(self.cov)

    @property
    def w2_squared(self) -> float:
        r""":math:`W_2^2(\mathcal N(m, C), \mathcal N(0, I))`."""
        return gaussian_w2_squared(self.mean, self.cov, np.zeros(self.dim), np.eye(self.dim))

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        r"""``n`` samples ``[n, D]``."""
        z = np.random.default_rng(seed).standard_normal((n, self.dim))
        return self.mean + z @ self._chol.T

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        r"""The data's log-density ``[n]``."""
        return scipy.stats.multivariate_normal(self.mean, self.cov).logpdf(x).reshape(-1)

    def brenier_map(self, x: np.ndarray | Tensor) -> np.ndarray | Tensor:
        r"""The optimal map :math:`T^*(x) = A x + b` ``[n, D]`` onto :math:`\mathcal N(0, I)`
        (NumPy in, NumPy out; torch in, torch out)."""
        if isinstance(x, Tensor):
            A, b = (
                torch.as_tensor(a, dtype=x.dtype, device=x.device)
                for a in (self.map_matrix, self.map_offset)
            )
            return x @ A.T + b
        return x @ self.map_matrix.T + self.map_offset


def two_moons(n: int, noise: float = 0.1, seed: int | None = None) -> np.ndarray:
    r"""The two-moons toy distribution, ``[n, 2]``, centred near the origin.

    Example:
        >>> two_moons(100, seed=0).shape
        (100, 2)
    """
    rng = np.random.default_rng(seed)
    upper = rng.random(n) < 0.5
    angle = np.pi * rng.random(n)
    x = np.where(upper, np.cos(angle), 1.0 - np.cos(angle))
    y = np.where(upper, np.sin(angle), 0.5 - np.sin(angle))
    points = np.stack([x - 0.5, y - 0.25], axis=1)
    return points + noise * rng.standard_normal((n, 2))


def load_array(path: str | Path) -> np.ndarray:
    r"""Reads samples ``[N, D]`` from a ``.npy`` file or a numeric ``.csv`` (one row each).

    A CSV may have one header line; every other cell must be a number.

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
    if path.suffix == ".npy":
        X = np.load(path, allow_pickle=False)
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
