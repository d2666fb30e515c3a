r"""The Gaussian coupling of the MGN and CP-Flow papers: everything in closed form."""

from __future__ import annotations

# POT (which loads scikit-learn) and scipy.stats are imported where used: `import otflows`
# stays light
from typing import overload

import numpy as np
import torch
from torch import Tensor

from otflows.metrics import gaussian_entropy, gaussian_w2_squared

__all__ = ["GaussianCoupling"]


class GaussianCoupling:
    r"""Data :math:`\mu = \mathcal N(m, C)` to be transported onto
    :math:`\nu = \mathcal N(m_\nu, C_\nu)`, by default :math:`\mathcal N(0, I)`.

    Everything about this problem is closed-form: the density, the entropy
    :math:`\frac12\log\det(2\pi e C)`, the optimal cost :math:`W_2^2 = \|m - m_\nu\|^2 +
    \operatorname{tr}(C + C_\nu - 2(C^{1/2} C_\nu C^{1/2})^{1/2})` and the Brenier map
    :math:`T^*(x) = A(x - m) + m_\nu` with :math:`A = C^{-1/2}(C^{1/2} C_\nu
    C^{1/2})^{1/2} C^{-1/2}` (POT's ``bures_wasserstein_mapping``).

    Arguments:
        mean: :math:`m`, ``[D]``.
        cov: :math:`C`, ``[D, D]``, symmetric positive definite.
        target_mean: :math:`m_\nu`, ``[D]`` (default 0).
        target_cov: :math:`C_\nu`, ``[D, D]`` (default :math:`I`).

    Example:
        >>> problem = GaussianCoupling.mgn_2d()
        >>> round(problem.w2_squared, 2), round(problem.entropy, 2)
        (3.71, 2.14)
    """

    def __init__(
        self,
        mean: np.ndarray,
        cov: np.ndarray,
        target_mean: np.ndarray | None = None,
        target_cov: np.ndarray | None = None,
    ):
        import ot

        self.mean = np.asarray(mean, dtype=np.float64)
        d = self.mean.shape[0]
        self.cov = np.asarray(cov, dtype=np.float64)
        self.target_mean = np.zeros(d) if target_mean is None else np.asarray(target_mean, float)
        self.target_cov = np.eye(d) if target_cov is None else np.asarray(target_cov, float)
        for name, C in (("cov", self.cov), ("target_cov", self.target_cov)):
            if C.shape != (d, d):
                raise ValueError(f"{name} must have shape ({d}, {d}); got {C.shape}")
        self._chol = np.linalg.cholesky(self.cov)
        self._target_chol = np.linalg.cholesky(self.target_cov)
        A, b = ot.gaussian.bures_wasserstein_mapping(
            self.mean, self.target_mean, self.cov, self.target_cov
        )
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
        import scipy.stats

        rng = np.random.default_rng(seed)
        mean = rng.standard_normal(d)
        cov = scipy.stats.wishart(df=d + 1, scale=np.eye(d)).rvs(random_state=rng)
        return cls(mean, np.atleast_2d(cov))

    @classmethod
    def random_pair(cls, d: int, seed: int = 0) -> GaussianCoupling:
        r"""Two random Gaussians: means :math:`\sim \mathcal N(0, I)` and covariances
        :math:`\sim \operatorname{Wishart}(2d, I/2d)` (of mean :math:`I`), drawn from ``seed``.

        Example:
            >>> problem = GaussianCoupling.random_pair(8, seed=1)
            >>> problem.sample_target(5, seed=0).shape
            (5, 8)
        """
        import scipy.stats

        rng = np.random.default_rng(seed)
        wishart = scipy.stats.wishart(df=2 * d, scale=np.eye(d) / (2 * d))
        m, mt = rng.standard_normal((2, d))
        C, Ct = (np.atleast_2d(wishart.rvs(random_state=rng)) for _ in range(2))
        return cls(m, C, mt, Ct)

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @property
    def entropy(self) -> float:
        r"""The differential entropy of the data, in nats."""
        return gaussian_entropy(self.cov)

    @property
    def w2_squared(self) -> float:
        r""":math:`W_2^2(\mu, \nu)`."""
        return gaussian_w2_squared(self.mean, self.cov, self.target_mean, self.target_cov)

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        r"""``n`` samples of :math:`\mu`, ``[n, D]``."""
        z = np.random.default_rng(seed).standard_normal((n, self.dim))
        return self.mean + z @ self._chol.T

    def sample_target(self, n: int, seed: int | None = None) -> np.ndarray:
        r"""``n`` samples of :math:`\nu`, ``[n, D]``."""
        z = np.random.default_rng(seed).standard_normal((n, self.dim))
        return self.target_mean + z @ self._target_chol.T

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        r"""The data's log-density ``[n]``."""
        import scipy.stats

        return scipy.stats.multivariate_normal(self.mean, self.cov).logpdf(x).reshape(-1)

    @overload
    def brenier_map(self, x: np.ndarray) -> np.ndarray: ...

    @overload
    def brenier_map(self, x: Tensor) -> Tensor: ...

    def brenier_map(self, x: np.ndarray | Tensor) -> np.ndarray | Tensor:
        r"""The optimal map :math:`T^*(x) = A x + b` ``[n, D]`` from :math:`\mu` onto
        :math:`\nu` (NumPy in, NumPy out; torch in, torch out)."""
        if isinstance(x, Tensor):
            A, b = (
                torch.as_tensor(a, dtype=x.dtype, device=x.device)
                for a in (self.map_matrix, self.map_offset)
            )
            return x @ A.T + b
        return x @ self.map_matrix.T + self.map_offset
