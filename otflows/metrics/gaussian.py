r"""Closed forms of Gaussians: the W2 distance between two, and the entropy of one."""

from __future__ import annotations

import numpy as np

from otflows.metrics.inputs import Array, gaussian_parameters

__all__ = ["gaussian_entropy", "gaussian_w2_squared"]


def gaussian_w2_squared(m1: Array, C1: Array, m2: Array, C2: Array) -> float:
    r"""The squared Wasserstein-2 distance between two Gaussians, by POT.

    .. math:: W_2^2 = \|m_1 - m_2\|^2 + \operatorname{tr}\left(C_1 + C_2 -
        2 (C_1^{1/2} C_2 C_1^{1/2})^{1/2}\right)

    POT's ``bures_wasserstein_distance`` returns :math:`W_2`; this squares it.

    Example:
        >>> gaussian_w2_squared(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2))
        4.0
    """
    import ot

    (mean1, cov1), (mean2, cov2) = (
        gaussian_parameters(m1, C1, "1"),
        gaussian_parameters(m2, C2, "2"),
    )
    if cov1.shape != cov2.shape:
        raise ValueError(f"C1 and C2 must have the same shape; got {cov1.shape}, {cov2.shape}")
    return float(ot.gaussian.bures_wasserstein_distance(mean1, mean2, cov1, cov2)) ** 2


def gaussian_entropy(C: Array) -> float:
    r"""The differential entropy :math:`\frac12\log\det(2\pi e C)` of :math:`\mathcal N(m, C)`.

    Example:
        >>> round(gaussian_entropy(np.eye(2)), 4)  # log(2πe)
        2.8379
    """
    _, C = gaussian_parameters(None, C, "")
    if not np.allclose(C, C.T, rtol=1e-10, atol=0):
        raise ValueError("C must be symmetric positive definite; it is not symmetric")
    eigenvalues = np.linalg.eigvalsh(C)
    if eigenvalues.min() <= 0:
        raise ValueError(
            "C must be symmetric positive definite; its smallest eigenvalue is "
            f"{eigenvalues.min():.3g}"
        )
    return 0.5 * float(np.sum(np.log(2 * np.pi * np.e * eigenvalues)))
