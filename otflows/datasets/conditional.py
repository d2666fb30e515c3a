r"""Conditional Gaussians :math:`x \mid c \sim \mathcal N(m(c), S(c)^2)`: densities and optimal
maps in closed form for every context, for conditional flows and conditional OT maps."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ConditionalGaussian"]


class ConditionalGaussian:
    r"""Data :math:`x \mid c \sim \mathcal N(m(c), S(c)^2)` with :math:`S(c)` symmetric positive
    definite, and a distribution of contexts :math:`c`.

    Closed forms for every ``c``: the log-density, the Brenier map onto :math:`\mathcal N(0, I)`,
    :math:`x \mapsto S(c)^{-1}(x - m(c))` (the W2-optimal map between Gaussians, symmetric
    linear part), and the one from :math:`\mathcal N(0, I)` onto it, :math:`z \mapsto S(c) z +
    m(c)`. Build one with :meth:`smooth` (mean and covariance that vary smoothly with ``c``,
    eigenvectors included) or :meth:`linear_gaussian_posterior` (a simulation-based-inference
    posterior).

    Arguments:
        mean: :math:`c` ``[N, C]`` -> :math:`m(c)` ``[N, D]``.
        root: :math:`c` ``[N, C]`` -> :math:`S(c)` ``[N, D, D]``.
        sample_context: ``(n, rng)`` -> contexts ``[n, C]`` drawn from their distribution.

    Example:
        >>> problem = ConditionalGaussian.smooth(3, 2, seed=0)
        >>> c, x = problem.sample(5, seed=1)
        >>> c.shape, x.shape, problem.log_prob(x, c).shape
        ((5, 2), (5, 3), (5,))
    """

    def __init__(self, mean, root, sample_context):
        self.mean, self.root, self.sample_context = mean, root, sample_context

    @classmethod
    def smooth(cls, features: int, context_features: int, seed: int = 0) -> ConditionalGaussian:
        r"""Contexts uniform on :math:`[-1, 1]^C`; :math:`m(c) = W c + \sin(W' c)` and
        :math:`S(c) = \exp\!\big(\tfrac12(K_0 + \sum_i c_i K_i)\big)` (matrix exponential),
        with random :math:`W, W'` and symmetric :math:`K_i` (eigenvalues of
        :math:`K_{i \ge 1}` about :math:`\pm 0.5`), so scales and axes both turn with ``c``.
        """
        rng = np.random.default_rng(seed)
        D, C = features, context_features
        W, W2 = rng.normal(size=(C, D)), rng.normal(size=(C, D))

        def symmetric(scale: float) -> np.ndarray:
            A = rng.normal(size=(D, D))
            return scale * (A + A.T) / (2 * math.sqrt(D))

        K = [symmetric(1.0)] + [symmetric(0.5) for _ in range(C)]

        def root(c: np.ndarray) -> np.ndarray:
            log_cov = K[0] + np.einsum("nc,cij->nij", c, np.stack(K[1:]))
            eigenvalues, V = np.linalg.eigh(log_cov)
            return (V * np.exp(0.5 * eigenvalues)[:, None, :]) @ V.transpose(0, 2, 1)

        return cls(
            lambda c: c @ W + np.sin(c @ W2),
            root,
            lambda n, rng: rng.uniform(-1.0, 1.0, size=(n, C)),
        )

    @classmethod
    def linear_gaussian_posterior(
        cls, features: int, observations: int, noise: float = 0.5, seed: int = 0
    ) -> ConditionalGaussian:
        r"""The posterior :math:`p(\theta \mid x)` of :math:`\theta \sim \mathcal N(0, I_D)`
        observed as :math:`x = A\theta + \sigma\varepsilon` (``observations`` values,
        :math:`\varepsilon \sim \mathcal N(0, I)`, random :math:`A`): the context is the
        observation, drawn from its marginal :math:`\mathcal N(0, AA^\top + \sigma^2 I)`, and

        .. math:: \theta \mid x \sim \mathcal N(\Sigma A^\top x / \sigma^2,\ \Sigma), \quad
            \Sigma = (I + A^\top A / \sigma^2)^{-1}.
        """
        rng = np.random.default_rng(seed)
        A = rng.normal(size=(observations, features)) / math.sqrt(features)
        posterior = np.linalg.inv(np.eye(features) + A.T @ A / noise**2)
        eigenvalues, V = np.linalg.eigh(posterior)
        S = (V * np.sqrt(eigenvalues)) @ V.T
        marginal = np.linalg.cholesky(A @ A.T + noise**2 * np.eye(observations))
        return cls(
            lambda x: x @ (posterior @ A.T / noise**2).T,
            lambda x: np.broadcast_to(S, (len(x), features, features)),
            lambda n, rng: rng.normal(size=(n, observations)) @ marginal.T,
        )

    def sample(
        self, n: int, seed: int | None = None, context: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        r"""Contexts ``[n, C]`` (drawn, or the given ``context``) and one :math:`x \mid c`
        each ``[n, D]``."""
        rng = np.random.default_rng(seed)
        c = self.sample_context(n, rng) if context is None else context
        z = rng.normal(size=(len(c), self.root(c[:1]).shape[-1]))
        return c, self.from_normal(z, c)

    def log_prob(self, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        r""":math:`\log p(x \mid c)` ``[N]``."""
        S = self.root(c)
        z = self.to_normal(x, c)
        logdet = np.linalg.slogdet(S)[1]
        return -0.5 * np.square(z).sum(-1) - logdet - 0.5 * x.shape[-1] * math.log(2 * math.pi)

    def to_normal(self, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        r"""The Brenier map onto :math:`\mathcal N(0, I)`: :math:`S(c)^{-1}(x - m(c))`."""
        return np.linalg.solve(self.root(c), (x - self.mean(c))[..., None])[..., 0]

    def from_normal(self, z: np.ndarray, c: np.ndarray) -> np.ndarray:
        r"""The Brenier map from :math:`\mathcal N(0, I)`: :math:`S(c) z + m(c)`."""
        return np.einsum("nij,nj->ni", self.root(c), z) + self.mean(c)
