r"""Two-dimensional toy distributions (the FFJORD / CP-Flow density-estimation toys)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "TOYS",
    "checkerboard",
    "domain_adaptation",
    "eight_gaussians",
    "swiss_roll",
    "two_circles",
    "two_moons",
]


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


def eight_gaussians(n: int, scale: float = 2.0, std: float = 0.1, seed: int | None = None):
    r"""An equal mixture of 8 isotropic Gaussians (std ``std``) on a circle of radius ``scale``.

    Example:
        >>> X = eight_gaussians(1000, seed=0)
        >>> X.shape, bool(abs(np.linalg.norm(X, axis=1).mean() - 2.0) < 0.05)
        ((1000, 2), True)
    """
    rng = np.random.default_rng(seed)
    angle = 2.0 * np.pi * rng.integers(0, 8, size=n) / 8.0
    centres = scale * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return centres + std * rng.standard_normal((n, 2))


def checkerboard(n: int, seed: int | None = None) -> np.ndarray:
    r"""Uniform on the 8 dark squares of a 4×4 checkerboard over :math:`[-2, 2]^2`, ``[n, 2]``.

    Its density is :math:`1/8` on the dark squares, so its entropy is :math:`\log 8` nats.

    Example:
        >>> X = checkerboard(1000, seed=0)
        >>> bool(np.all(np.abs(X) <= 2.0)), bool(np.all((np.floor(X).sum(1) % 2) == 0))
        (True, True)
    """
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(-2.0, 2.0, size=n)
    x2 = rng.uniform(0.0, 1.0, size=n) + rng.integers(-2, 2, size=n)
    x2 = x2 + (np.floor(x1) + np.floor(x2)) % 2  # onto the dark square of the same column pair
    x2 = np.where(x2 >= 2.0, x2 - 4.0, x2)
    return np.stack([x1, x2], axis=1)


def two_circles(n: int, factor: float = 0.5, noise: float = 0.05, seed: int | None = None):
    r"""Two concentric circles of radii 1 and ``factor`` (half the points each), with Gaussian
    noise of std ``noise``, ``[n, 2]`` (scikit-learn's ``make_circles``, drawn at random).

    Example:
        >>> X = two_circles(1000, noise=0.0, seed=0)
        >>> sorted(set(np.round(np.linalg.norm(X, axis=1), 6).tolist()))
        [0.5, 1.0]
    """
    rng = np.random.default_rng(seed)
    radius = np.where(rng.random(n) < 0.5, 1.0, factor)
    angle = 2.0 * np.pi * rng.random(n)
    points = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return points + noise * rng.standard_normal((n, 2))


def swiss_roll(n: int, noise: float = 0.25, seed: int | None = None) -> np.ndarray:
    r"""The 2-D swiss roll: :math:`t (\cos t, \sin t)/5` with
    :math:`t = 1.5\pi(1 + 2u)`, :math:`u \sim U(0, 1)`, plus Gaussian noise of std
    ``noise / 5`` (FFJORD's ``swissroll`` toy, in the same units), ``[n, 2]``.

    Example:
        >>> X = swiss_roll(1000, noise=0.0, seed=0)
        >>> bool(np.all(np.linalg.norm(X, axis=1) <= 4.5 * np.pi / 5 + 1e-12))
        True
    """
    rng = np.random.default_rng(seed)
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n))
    points = t[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)
    return (points + noise * rng.standard_normal((n, 2))) / 5.0


def domain_adaptation(kind: str, n: int, seed: int) -> np.ndarray:
    r"""``n`` rows ``[n, 2]`` of POT's domain-adaptation set ``kind`` (``"3gauss"``,
    ``"3gauss2"`` or ``"gaussrot"``: ``ot.datasets.make_data_classif`` with noise 0.5 and
    rotation π/4), seeded by ``seed``, without their labels.

    Example:
        >>> domain_adaptation("gaussrot", 100, seed=0).shape
        (100, 2)
    """
    import ot

    return ot.datasets.make_data_classif(kind, n, nz=0.5, theta=np.pi / 4, random_state=seed)[0]


TOYS: dict[str, Callable[..., np.ndarray]] = {
    "two_moons": two_moons,
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "two_circles": two_circles,
    "swiss_roll": swiss_roll,
}
