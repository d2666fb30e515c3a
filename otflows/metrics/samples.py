r"""Distances between two samples: exact W2², the debiased Sinkhorn divergence, the maximum
mean discrepancy, the paired W2² difference of two maps' images, and how far a map moves rows
off the data."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from otflows.metrics.inputs import Array, as_float64

__all__ = [
    "debiased_sinkhorn",
    "extrapolation_ratio",
    "maximum_mean_discrepancy",
    "sinkhorn_divergence",
    "w2_difference",
    "wasserstein2_squared",
]


def debiased_sinkhorn(X: Array, Y: Array, epsilon: float, max_iter: int, tol: float) -> Array:
    r""":math:`S_\varepsilon(X, Y)` by POT's ``empirical_sinkhorn_divergence`` (log-domain
    Sinkhorn) on the inputs' own backend, a 0-dim value: the entropic plans' transport costs
    without their entropy terms, debiased and clamped at 0
    (:class:`otflows.maps.SinkhornDivergence`); on torch, differentiable in ``X`` through the
    Sinkhorn iterations.

    Example:
        >>> round(float(debiased_sinkhorn(np.zeros((3, 2)), np.ones((3, 2)), 0.1, 100, 1e-9)), 6)
        2.0
    """
    import ot

    value = ot.bregman.empirical_sinkhorn_divergence(
        X, Y, epsilon, method="sinkhorn_log", numIterMax=max_iter, stopThr=tol, warn=False
    )
    return value.reshape(())


def sinkhorn_divergence(X: Array, Y: Array, reg: float = 0.05) -> float:
    r"""The debiased Sinkhorn loss :math:`S_\varepsilon` between two point clouds
    (squared-Euclidean cost, uniform weights; :func:`debiased_sinkhorn`), with
    :math:`\varepsilon` = ``reg`` times the total variance of ``Y`` — the same scale-free blur
    as :class:`otflows.maps.SinkhornDivergence`. It is 0 for identical clouds.

    Example:
        >>> Y = np.random.default_rng(0).normal(size=(200, 2))
        >>> sinkhorn_divergence(Y, Y) < 1e-9 < sinkhorn_divergence(Y + 1, Y)
        True
    """
    X = torch.as_tensor(as_float64(X, "X"))  # torch: POT's fastest CPU backend
    Y = torch.as_tensor(as_float64(Y, "Y", X.shape[1]))
    epsilon = reg * float(Y.var(0, unbiased=False).sum())
    return float(debiased_sinkhorn(X, Y, epsilon, 500, 1e-6))


def wasserstein2_squared(X: Array, Y: Array) -> float:
    r"""The exact :math:`W_2^2` between the empirical measures of two point clouds ``X [N, D]``
    and ``Y [M, D]`` (uniform weights, squared-Euclidean cost), by POT's network simplex
    (``ot.emd2``) in float64: :math:`O(N M)` memory, about a second at N = M = 2000.

    Between two samples of one measure it is not 0 but the sampling floor, which falls like
    :math:`N^{-2/D}` (slowly at large ``D``); it ranks maps by how far :math:`T_\#\mu` lies from
    :math:`\nu` in :math:`W_2` itself.

    Example:
        >>> X = np.array([[0.0, 0.0], [1.0, 0.0]])
        >>> wasserstein2_squared(X, X + [0.0, 2.0])
        4.0
    """
    import ot

    X = as_float64(X, "X")
    Y = as_float64(Y, "Y", X.shape[1])
    return float(ot.emd2([], [], ot.dist(X, Y), numItermax=10**7))


def maximum_mean_discrepancy(X: Array, Y: Array, bandwidths: Sequence[float]) -> float:
    r"""The squared maximum mean discrepancy between the measures of two samples ``X [N, D]``
    and ``Y [M, D]`` for the sum of Gaussian kernels
    :math:`k(x, y) = \sum_h \exp(-\|x - y\|^2 / 2h^2)` over ``bandwidths`` :math:`h`
    (Gretton et al. 2012), unbiased (U-statistics within each sample), in float64:

    .. math:: \mathrm{MMD}^2(\mu, \nu) = \mathbb E\,k(X, X') + \mathbb E\,k(Y, Y')
        - 2\,\mathbb E\,k(X, Y) \ge 0,

    zero only for :math:`\mu = \nu`. Its self terms take off what two samples of one measure
    are apart, so, unlike the :math:`W_2^2` of a few dozen rows, it does not reward a map that
    shrinks its image towards the target's mean, and its estimate (a mean over all pairs, not
    one matching) is far less noisy. Bandwidths below the data's scale weigh the shape of each
    cluster, which a distance-based score such as the energy distance (whose far pairs weigh
    most) barely sees. Between two samples of one measure its estimate is 0 in expectation (it
    can be negative). :math:`O((N + M)^2)` memory.

    Example:
        >>> X, Y = np.random.default_rng(0).normal(size=(2, 2000, 1))
        >>> round(maximum_mean_discrepancy(X, Y + 2.0, [1.0]), 2)  # 2/√3 (1 − e^(−2/3))
        0.56
    """
    X = torch.as_tensor(as_float64(X, "X"), dtype=torch.float64)
    Y = torch.as_tensor(as_float64(Y, "Y", X.shape[1]), dtype=torch.float64)
    if len(X) < 2 or len(Y) < 2:
        raise ValueError(f"X and Y need 2 rows or more each; got {len(X)} and {len(Y)}")
    if len(bandwidths) == 0 or not all(math.isfinite(h) and h > 0 for h in bandwidths):
        raise ValueError(f"bandwidths must be positive and finite, at least one; got {bandwidths}")
    Z = torch.cat([X, Y])
    squared = torch.cdist(Z, Z).square()  # [N + M, N + M]
    K = torch.stack([torch.exp(-squared / (2 * h * h)) for h in bandwidths]).sum(0)
    N = len(X)

    def within(block: Tensor) -> Tensor:
        return (block.sum() - block.diagonal().sum()) / (len(block) * (len(block) - 1))

    return float(within(K[:N, :N]) + within(K[N:, N:]) - 2 * K[:N, N:].mean())


def w2_difference(
    A: Array, B: Array, Y: Array, replicates: int = 25, seed: int = 0
) -> tuple[float, float]:
    r"""How much nearer two maps' images ``A [N, D]`` and ``B [N, D]`` of the same rows lie to
    the samples ``Y [M, D]``: :math:`\Delta = W_2^2(A, Y) - W_2^2(B, Y)` (exact, as
    :func:`wasserstein2_squared`), and its bootstrap standard error over ``replicates``
    resamplings of both sides' rows, each drawn once for both maps (paired), so that a few
    dozen held-out rows do not pass noise for a difference.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X, Y = rng.normal(size=(40, 2)), rng.normal(size=(40, 2))
        >>> delta, se = w2_difference(X, X + 3.0, Y)  # A is the nearer: Δ < 0, far beyond se
        >>> bool(delta < -5 * se < 0)
        True
    """
    import ot

    A = as_float64(A, "A")
    B = as_float64(B, "B", A.shape[1])
    Y = as_float64(Y, "Y", A.shape[1])
    if len(A) != len(B):
        raise ValueError(f"A and B must map the same rows; got {len(A)} and {len(B)}")
    costs = ot.dist(A, Y), ot.dist(B, Y)
    rng = np.random.default_rng(seed)

    def delta(a: np.ndarray, b: np.ndarray) -> float:
        return float(ot.emd2(a, b, costs[0], numItermax=10**7)) - float(
            ot.emd2(a, b, costs[1], numItermax=10**7)
        )

    full = delta(np.full(len(A), 1 / len(A)), np.full(len(Y), 1 / len(Y)))
    draws = [
        delta(
            rng.multinomial(len(A), np.full(len(A), 1 / len(A))) / len(A),
            rng.multinomial(len(Y), np.full(len(Y), 1 / len(Y))) / len(Y),
        )
        for _ in range(replicates)
    ]
    return full, float(np.std(draws, ddof=1))


def extrapolation_ratio(
    X: Array, R_X: Array, P: Array, R_P: Array, neighbours: int = 10
) -> np.ndarray:
    r"""How far a residual field grows off the rows it was fitted on: for each probe row
    :math:`p` of ``P [Q, D]``, :math:`\|R(p)\|` over the largest :math:`\|R(x)\|` among its
    ``neighbours`` nearest rows :math:`x` of ``X [N, D]``, given the residuals ``R_X [N, D]``
    and ``R_P [Q, D]`` (e.g. a fitted map minus the Bures map). About 1 (or below) where a
    probe a little outside the rows is mapped about as far from the reference as the rows near
    it; far above 1 where the residual blows up off them. Returns ``[Q]``.

    Example:
        >>> X = np.linspace(-1, 1, 101)[:, None]
        >>> P = np.array([[1.2], [-1.2]])  # a little outside the rows
        >>> bool(extrapolation_ratio(X, 0.5 * X, P, 0.5 * P).max() < 1.3)  # linear growth
        True
        >>> bool(extrapolation_ratio(X, X**9, P, P**9).min() > 4)  # a blow-up
        True
    """
    X = as_float64(X, "X")
    R_X = as_float64(R_X, "R_X", X.shape[1])
    P = as_float64(P, "P", X.shape[1])
    R_P = as_float64(R_P, "R_P", X.shape[1])
    if len(R_X) != len(X) or len(R_P) != len(P):
        raise ValueError(
            f"R_X and R_P must hold a residual per row of X and P; got {len(R_X)} for "
            f"{len(X)} and {len(R_P)} for {len(P)}"
        )
    if not 1 <= neighbours <= len(X):
        raise ValueError(f"neighbours must be in [1, {len(X)}] (rows of X); got {neighbours}")
    import ot

    near = np.argpartition(ot.dist(P, X), neighbours - 1, axis=1)[:, :neighbours]  # [Q, k]
    size = np.linalg.norm(R_X, axis=1)
    return np.linalg.norm(R_P, axis=1) / np.maximum(size[near].max(1), np.finfo(float).tiny)
