r"""Two-dimensional toy distributions."""

from __future__ import annotations

import numpy as np

__all__ = ["two_moons"]


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
