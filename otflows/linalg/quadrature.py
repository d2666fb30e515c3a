r"""Gauss–Legendre quadrature on [0, 1]."""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

__all__ = ["gauss_legendre"]


@functools.lru_cache(maxsize=32)
def _nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    xi, w = np.polynomial.legendre.leggauss(n)
    return (xi + 1.0) / 2.0, w / 2.0


def gauss_legendre(
    n: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    r"""Nodes and weights of the ``n``-point Gauss–Legendre rule on :math:`[0, 1]`.

    The rule integrates polynomials of degree :math:`2n - 1` exactly. For a function analytic
    inside the Bernstein ellipse :math:`E_\rho` of :math:`[0, 1]` and bounded there by
    :math:`M`, the error is at most :math:`\frac{64}{15} \frac{M \rho^{-2n}}{\rho^2 - 1}`
    (Trefethen, *Approximation Theory and Approximation Practice*, Thm. 19.3).

    Arguments:
        n: The number of nodes, ``n >= 1``.
        dtype: The dtype of the returned tensors.
        device: Their device.

    Returns:
        The nodes ``[n]`` in :math:`(0, 1)` and the weights ``[n]``, which sum to 1.

    Example:
        >>> s, w = gauss_legendre(3, dtype=torch.float64)
        >>> abs(float((w * s**5).sum()) - 1 / 6) < 1e-15  # ∫₀¹ s⁵ ds, exact for n = 3
        True
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}")
    s, w = _nodes(n)
    return torch.as_tensor(s, dtype=dtype, device=device), torch.as_tensor(
        w, dtype=dtype, device=device
    )
