r"""The continuous Wasserstein-2 benchmark pairs (Mix3 → Mix10) of Korotin et al. (2021).

Each pair has a known Brenier map: the gradient of a released convex potential, so a solver
that sees only unpaired samples of :math:`P` and :math:`Q` is scored against the truth.
The weights are read from a folder the user gives (the ``.npz`` conversion described in that
folder's README); nothing is downloaded or shipped here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otflows.nets.functional import quadratic_icnn

__all__ = ["DenseQuadraticICNN", "GaussianMixture", "W2BenchmarkPair"]

FILE = "mix3tomix10_d{dim:03d}_v{version}.npz"


class DenseQuadraticICNN(nn.Module):
    r"""The benchmark's convex potential :math:`\psi`, rebuilt from its released weights.

    .. math:: z_0 = q_0(x), \quad z_{j+1} = \operatorname{celu}(C_j z_j + q_{j+1}(x)),
        \quad \psi(x) = w^\top z_2 + \tfrac{0.01}{2}\|x\|^2,

    with quadratic layers :math:`q_i(x) = \sum_r (x^\top A_{i,r})^{\odot 2} + W_i x + b_i`
    (:math:`A_i` ``[D, r, h_i]``) and :math:`C_j, w \ge 0`, so :math:`\psi` is convex.

    References:
        | Do Neural Optimal Transport Solvers Work? A Continuous Wasserstein-2 Benchmark
        | Korotin, Li, Genevay, Solomon, Filippov, Burnaev, NeurIPS 2021
          (https://arxiv.org/abs/2106.01954)

    Arguments:
        arrays: The released arrays by name (``quadratic_layers.{i}.quadratic_decomposed``,
            ``.weight``, ``.bias``; ``convex_layers.{j}.weight``; ``final_layer.weight``).

    Example:
        >>> D, h = 2, 4
        >>> arrays = {f"quadratic_layers.{i}.{k}": v for i in range(3) for k, v in (
        ...     ("quadratic_decomposed", np.ones((D, 1, h))), ("weight", np.ones((h, D))),
        ...     ("bias", np.zeros(h)))}
        >>> arrays |= {"convex_layers.0.weight": np.ones((h, h)),
        ...     "convex_layers.1.weight": np.ones((h, h)), "final_layer.weight": np.ones((1, h))}
        >>> DenseQuadraticICNN(arrays).gradient(torch.zeros(3, D, dtype=torch.float64)).shape
        torch.Size([3, 2])
    """

    C0: Tensor  # the convex layers' weights and the output weights, as buffers
    C1: Tensor
    w: Tensor

    def __init__(self, arrays: dict[str, np.ndarray]):
        super().__init__()

        def tensor(key: str) -> Tensor:
            if key not in arrays:
                raise ValueError(f"the potential's weights lack the array {key!r}")
            return torch.as_tensor(np.asarray(arrays[key], dtype=np.float64))

        for i in range(3):
            self.register_buffer(f"A{i}", tensor(f"quadratic_layers.{i}.quadratic_decomposed"))
            self.register_buffer(f"W{i}", tensor(f"quadratic_layers.{i}.weight"))
            self.register_buffer(f"b{i}", tensor(f"quadratic_layers.{i}.bias"))
        self.register_buffer("C0", tensor("convex_layers.0.weight"))
        self.register_buffer("C1", tensor("convex_layers.1.weight"))
        self.register_buffer("w", tensor("final_layer.weight").reshape(-1))
        if min(float(self.C0.min()), float(self.C1.min()), float(self.w.min())) < 0:
            raise ValueError("the potential's convex and final weights must be non-negative")

    def forward(self, x: Tensor) -> Tensor:
        r""":math:`\psi(x)`, ``[B, D] -> [B]``."""
        quadratics = [tuple(getattr(self, f"{k}{i}") for k in "AWb") for i in range(3)]
        return quadratic_icnn(
            x, quadratics, [self.C0, self.C1], self.w, F.celu
        ) + 0.005 * x.square().sum(-1)

    def gradient(self, x: Tensor) -> Tensor:
        r""":math:`\nabla\psi(x)`, ``[B, D] -> [B, D]``."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            return torch.autograd.grad(self(x).sum(), x)[0]


class GaussianMixture:
    r"""The benchmark's input measure :math:`P`: an equal-weight mixture of Gaussians
    :math:`\mathcal N(c_k, \sigma^2 M_k M_k^\top)` built as the paper's code builds it.

    Centres take, per coordinate, a random permutation of :math:`0, \dots, n - 1` (times
    ``dist``), shifted by :math:`-\text{dist}\,(n - 1)/2`; the maps :math:`M_k` have i.i.d.
    normal entries with unit-norm rows; both are divided by
    :math:`\sqrt{(\overline{\|c_k\|^2} + D\sigma^2)/D}` so each coordinate has unit mean square.
    The construction draws from NumPy's legacy generator seeded with ``seed``.

    Arguments:
        dim: The dimension ``D``.
        components: The number :math:`n` of components.
        std: :math:`\sigma`.
        dist: The spacing of the centres.
        seed: The seed of the construction (0 in the benchmark).

    Example:
        >>> GaussianMixture(4).sample(10, seed=0).shape
        (10, 4)
    """

    def __init__(
        self, dim: int, components: int = 3, std: float = 0.4, dist: float = 1.0, seed: int = 0
    ):
        rng = np.random.RandomState(seed)
        centers = np.zeros((components, dim), dtype=np.float32)
        for coordinate in range(dim):
            centers[:, coordinate] += dist * rng.choice(range(components), components, False)
        centers -= dist * (components - 1) / 2
        maps = rng.normal(size=(components, dim, dim)).astype(np.float32)
        maps /= np.sqrt(np.square(maps).sum(axis=2, keepdims=True))
        mult = np.sqrt(np.square(centers).sum(axis=1).mean() + dim * std**2) / np.sqrt(dim)
        self.centers = (centers / mult).astype(np.float64)
        self.maps = (maps / mult).astype(np.float64)
        self.std = std
        self.dim = dim

    def sample(
        self, n: int, seed: int | None = None, weights: np.ndarray | None = None
    ) -> np.ndarray:
        r"""``n`` samples ``[n, D]``; with ``weights`` ``[n, K]`` (rows summing to 1) row
        :math:`i` comes from the mixture reweighted by ``weights[i]``, as a conditional
        source whose weights depend on a condition.

        Example:
            >>> P = GaussianMixture(2)
            >>> X = P.sample(1000, seed=0, weights=np.tile([1.0, 0.0, 0.0], (1000, 1)))
            >>> bool(np.allclose(X.mean(0), P.centers[0], atol=0.05))
            True
        """
        rng = np.random.default_rng(seed)
        if weights is None:
            k = rng.integers(len(self.centers), size=n)
        else:
            weights = np.asarray(weights, dtype=np.float64)
            if weights.shape != (n, len(self.centers)):
                raise ValueError(
                    f"weights must have shape {(n, len(self.centers))}; got {weights.shape}"
                )
            if (weights < 0).any() or not np.allclose(weights.sum(1), 1.0):
                raise ValueError("weights must be non-negative with rows summing to 1")
            u = rng.random(n)[:, None]
            k = np.minimum((u > weights.cumsum(1)).sum(1), len(self.centers) - 1)
        eps = rng.standard_normal((n, self.dim))
        X = self.centers[k]
        for j, M in enumerate(self.maps):  # per component: no [n, D, D] stack of maps
            rows = k == j
            X[rows] += self.std * eps[rows] @ M.T
        return X


class W2BenchmarkPair:
    r"""One Mix3 → Mix10 pair of the continuous :math:`W_2` benchmark, with its true map.

    :math:`T^*(x) = (\nabla\psi_1(x) + \nabla\psi_2(x) - m)/s`, with :math:`m` and
    :math:`s^2` the mean and the mean per-coordinate variance of
    :math:`\nabla\psi_1 + \nabla\psi_2` over :math:`2^{14}` samples of :math:`P`;
    :math:`Q = T^*_\# P`. Being the gradient of a convex function, :math:`T^*` is the
    :math:`W_2`-optimal map from :math:`P` to :math:`Q`.

    Arguments:
        folder: The folder holding ``mix3tomix10_dDDD_v1.npz`` and ``..._v2.npz``.
        dim: The dimension ``D`` (2, 4, …, 128 in the release).
        seed: Seeds the :math:`2^{14}` samples that standardise :math:`T^*`.
        mixture_seed: Seeds the construction of :math:`P` (:class:`GaussianMixture`; 0 in
            the benchmark). Another seed gives a pair that no setting was tuned on: the same
            potentials, so :math:`T^*` is still optimal, from another input mixture.

    Example:
        >>> import os
        >>> folder = os.path.join(os.path.dirname(__file__), "no-such-folder")
        >>> W2BenchmarkPair.available(folder)
        []
    """

    def __init__(self, folder: str | Path, dim: int, seed: int = 0, mixture_seed: int = 0):
        folder = Path(folder)
        paths = [folder / FILE.format(dim=dim, version=v) for v in (1, 2)]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"W2 benchmark weights not found: {path}")
        self.potentials: list[DenseQuadraticICNN] = []
        for path in paths:
            with np.load(path, allow_pickle=False) as arrays:
                self.potentials.append(DenseQuadraticICNN(dict(arrays)))
        self.dim = dim
        self.source = GaussianMixture(dim, seed=mixture_seed)
        g = self._gradient_sum(torch.as_tensor(self.source.sample(2**14, seed=seed)))
        self.shift = g.mean(0)
        self.scale = g.var(0, unbiased=False).mean().sqrt()

    @staticmethod
    def available(folder: str | Path) -> list[int]:
        r"""The dimensions whose two potentials are present in ``folder`` (sorted)."""
        found: dict[int, set[str]] = {}
        for path in Path(folder).glob("mix3tomix10_d*_v*.npz"):
            match = re.fullmatch(r"mix3tomix10_d(\d+)_v([12])\.npz", path.name)
            if match:
                found.setdefault(int(match[1]), set()).add(match[2])
        return sorted(d for d, versions in found.items() if versions == {"1", "2"})

    def _gradient_sum(self, x: Tensor) -> Tensor:
        return torch.stack([psi.gradient(x) for psi in self.potentials]).sum(0)

    @overload
    def brenier_map(self, x: np.ndarray) -> np.ndarray: ...

    @overload
    def brenier_map(self, x: Tensor) -> Tensor: ...

    def brenier_map(self, x: np.ndarray | Tensor) -> np.ndarray | Tensor:
        r"""The true map :math:`T^*(x)`, ``[n, D]`` (NumPy in, NumPy out; torch in, torch
        out, computed in float64)."""
        X = torch.as_tensor(x, dtype=torch.float64, device="cpu")
        Y = (self._gradient_sum(X) - self.shift) / self.scale
        if isinstance(x, Tensor):
            return Y.to(dtype=x.dtype, device=x.device)
        return Y.numpy()

    def sample_source(
        self, n: int, seed: int | None = None, weights: np.ndarray | None = None
    ) -> np.ndarray:
        r"""``n`` samples of :math:`P`, ``[n, D]`` (with mixture ``weights`` ``[n, 3]``
        per row: see :meth:`GaussianMixture.sample`)."""
        return self.source.sample(n, seed, weights)

    def sample_target(
        self, n: int, seed: int | None = None, weights: np.ndarray | None = None
    ) -> np.ndarray:
        r"""``n`` samples of :math:`Q = T^*_\# P`, ``[n, D]`` (independent of
        :meth:`sample_source` draws with other seeds). Reweighting :math:`P`'s components
        keeps :math:`T^*` optimal, being the gradient of a convex function."""
        return np.asarray(self.brenier_map(self.source.sample(n, seed, weights)))
