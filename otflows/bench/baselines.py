r"""The published baselines, built from their own packages: CP-Flow (``cpflows``), IAF, MAF and
the rational-quadratic neural spline flow (``nflows``), zuko's neural spline flow (``zuko``), and
the closed-form whitening flow.

Each is a density with ``log_prob(x) -> [B]`` and a map ``transport(x) -> [B, D]`` (data →
noise), so :func:`otflows.fit_flow` trains them and :mod:`otflows.metrics` scores them exactly as
it scores a :class:`otflows.BrenierFlow`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from nflows.distributions import StandardNormal
from nflows.flows import Flow
from nflows.transforms import (
    CompositeTransform,
    InverseTransform,
    MaskedAffineAutoregressiveTransform,
    MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
    RandomPermutation,
    ReversePermutation,
)
from torch import Tensor, nn

from otflows.linalg import DenseCholesky

__all__ = [
    "CPFlow",
    "Whitening",
    "ZukoFlow",
    "autoregressive_flow",
    "spline_flow",
    "standard_normal_log_prob",
]

# CP-Flow's train_ot.py configuration of its ICNN3 (Huang et al. 2021)
CPFLOW_ICNN = dict(dimh=64, num_hidden_layers=5)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    r""":math:`\log\mathcal N(z; 0, I)`, ``[B, D] -> [B]``.

    Example:
        >>> standard_normal_log_prob(torch.zeros(1, 2))
        tensor([-1.8379])
    """
    return -0.5 * z.square().sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


class CPFlow(nn.Module):
    r"""A convex potential flow from the published ``cpflows`` package: ``num_blocks``
    ``DeepConvexFlow`` blocks on ICNN3 potentials (the ``train_ot.py`` configuration), each
    after an ``ActNorm`` when there are several.

    Training (``train()`` mode) uses the brute-force log-det with ``bruteforce=True`` (as
    ``train_ot.py``), otherwise the package's conjugate-gradient surrogate, whose value is not
    the NLL. In ``eval()`` mode ``log_prob`` is exact: the brute-force Hessian of each potential,
    factored by Cholesky (the package's ``torch.slogdet`` goes through LU). Call
    :meth:`initialize` on a batch first (``ActNorm``'s data-dependent initialisation).

    Arguments:
        features: The dimension ``D``.
        num_blocks: The number of convex potential blocks.
        bruteforce: Train with the exact log-det (``D`` extra backward passes per block).

    Example:
        >>> flow = CPFlow(2)
        >>> flow.initialize(torch.randn(128, 2))
        >>> flow.log_prob(torch.randn(5, 2)).shape
        torch.Size([5])
    """

    layers: Any  # cpflows' untyped blocks and ActNorms, in an nn.ModuleList

    def __init__(self, features: int, num_blocks: int = 1, bruteforce: bool = True) -> None:
        super().__init__()
        try:
            from cpflows.flows import ActNorm, DeepConvexFlow
            from cpflows.icnn import ICNN3
        except ImportError as error:
            raise ImportError(
                "the CP-Flow baseline needs the cpflows package: pip install --no-deps cpflows"
            ) from error
        if not hasattr(torch, "symeig") or torch.symeig.__module__.startswith("torch"):
            # removed from torch (a stub that raises); cpflows' eval-mode Lanczos still calls it
            torch.symeig = lambda A, eigenvectors=True: torch.linalg.eigh(A)  # type: ignore
        layers: list[nn.Module] = []
        for _ in range(num_blocks):
            if num_blocks > 1:
                layers.append(ActNorm(features))
            icnn = ICNN3(
                features,
                symm_act_first=False,
                softplus_type="gaussian_softplus",
                zero_softplus=True,
                **CPFLOW_ICNN,
            )
            layers.append(DeepConvexFlow(icnn, features, unbiased=False, bias_w1=-0.0))
        self.layers = nn.ModuleList(layers)
        self.features = features
        self.bruteforce = bruteforce

    def initialize(self, x: Tensor) -> None:
        """``ActNorm``'s data-dependent initialisation on a batch ``[B, D]``."""
        mode = self.training
        self.eval()
        self.log_prob(x)
        self.train(mode)

    def transport(self, x: Tensor) -> Tensor:
        r"""The map data → noise, ``[B, D] -> [B, D]`` (one block: :math:`\nabla F(x)`)."""
        for layer in self.layers:
            x = layer(x) if hasattr(layer, "get_potential") else layer.forward_transform(x)[0]
        return x.detach()

    def _convex(self, block: Any, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not self.bruteforce:
            return block.forward_transform_stochastic(x, torch.zeros(len(x)).to(x))
        with torch.enable_grad():
            if not self.training:
                x = x.detach().requires_grad_(True)
            elif not x.requires_grad:
                x = x.requires_grad_(True)
            f = torch.autograd.grad(block.get_potential(x).sum(), x, create_graph=True)[0]
            H = torch.stack(
                [
                    torch.autograd.grad(
                        f[:, i].sum(), x, create_graph=self.training, retain_graph=True
                    )[0]
                    for i in range(self.features)
                ],
                dim=1,
            )
        logdet = DenseCholesky(0.5 * (H + H.mT).double()).logdet().to(x.dtype)
        return (f, logdet) if self.training else (f.detach(), logdet.detach())

    def log_prob(self, x: Tensor) -> Tensor:
        r"""The log-density ``[B]`` (see the class notes on train and eval modes)."""
        logdet = torch.zeros(len(x), dtype=x.dtype, device=x.device)
        for layer in self.layers:
            if hasattr(layer, "get_potential"):
                x, step = self._convex(layer, x)
                logdet = logdet + step
            else:
                x, logdet = layer.forward_transform(x, logdet)
        return standard_normal_log_prob(x) + logdet


class Whitening(nn.Module):
    r"""The closed-form whitening flow :math:`z = L^{-1}(x - m)` with :math:`LL^\top` the
    Cholesky factor of the sample covariance: the maximum-likelihood Gaussian, as a flow.

    It maps the data onto :math:`\mathcal N(0, I)` but is not the optimal map (that is
    :math:`C^{-1/2}(x - m)`); the MGN paper's baseline.

    Arguments:
        X: Training samples ``[N, D]``.

    Example:
        >>> A = torch.tensor([[2.0, 0], [1, 1]], dtype=torch.float64)
        >>> X = torch.randn(1000, 2, dtype=torch.float64) @ A
        >>> z = Whitening(X).transport(X)
        >>> bool(torch.allclose(torch.cov(z.T), torch.eye(2, dtype=torch.float64), atol=1e-10))
        True
    """

    m: Tensor  # the mean [D] and the Cholesky factor [D, D] of the covariance, as buffers
    L: Tensor

    def __init__(self, X: Tensor) -> None:
        super().__init__()
        self.features = X.shape[1]
        self.register_buffer("m", X.mean(0))
        self.register_buffer("L", torch.linalg.cholesky(torch.cov(X.T).reshape(X.shape[1], -1)))

    def transport(self, x: Tensor) -> Tensor:
        r"""``[B, D] -> [B, D]``."""
        return torch.linalg.solve_triangular(self.L, (x - self.m).T, upper=False).T

    def log_prob(self, x: Tensor) -> Tensor:
        r"""``[B, D] -> [B]``."""
        logdet = -torch.log(torch.diagonal(self.L)).sum()
        return standard_normal_log_prob(self.transport(x)) + logdet


class _Autoregressive(Flow):
    """An nflows flow data → noise with the ``transport`` map the benchmarks score."""

    def transport(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self._transform(x, context)[0].detach()


def autoregressive_flow(
    features: int,
    kind: str = "iaf",
    num_layers: int = 1,
    hidden_features: int = 64,
    context_features: int | None = None,
) -> Flow:
    r"""An affine autoregressive flow built from nflows' ``MaskedAffineAutoregressiveTransform``.

    ``"maf"`` uses it data → noise (one pass to evaluate, :math:`D` passes to sample); ``"iaf"``
    uses it in the inverse direction, noise → data, as the IAF of the MGN and CP-Flow papers
    (:math:`D` passes to evaluate the density, one to sample). Layers are separated by random
    permutations. Each MADE's output layer starts at zero, so every layer starts as the same
    elementwise scaling (as Glow's zero initialisation): from a random start, the IAF's
    :math:`D` sequential divisions by scales down to nflows' floor 1e-3 overflow at d = 64.
    With ``context_features``, each MADE also takes the context: a conditional flow
    :math:`p(x \mid c)` (nflows' conditional MAF/IAF).

    Example:
        >>> flow = autoregressive_flow(3, "iaf", num_layers=2, hidden_features=8)
        >>> flow.log_prob(torch.randn(4, 3)).shape
        torch.Size([4])
    """
    if kind not in ("iaf", "maf"):
        raise ValueError(f"kind must be 'iaf' or 'maf'; got {kind!r}")
    layers: list[nn.Module] = []
    for i in range(num_layers):
        if i > 0:
            layers.append(RandomPermutation(features))
        layer = MaskedAffineAutoregressiveTransform(
            features, hidden_features, context_features=context_features
        )
        nn.init.zeros_(layer.autoregressive_net.final_layer.weight)
        nn.init.zeros_(layer.autoregressive_net.final_layer.bias)
        layers.append(InverseTransform(layer) if kind == "iaf" else layer)
    flow = _Autoregressive(CompositeTransform(layers), StandardNormal([features]))
    flow.features = features
    return flow


class ZukoFlow(nn.Module):
    r"""A flow of the ``zuko`` package (its lazy distribution, data → noise) as a density with
    ``log_prob(x) -> [B]`` and the ``transport`` map ``[B, D] -> [B, D]``.

    Example:
        >>> import zuko
        >>> flow = ZukoFlow(zuko.flows.NSF(2, transforms=1, hidden_features=[8]), 2)
        >>> flow.log_prob(torch.randn(5, 2)).shape
        torch.Size([5])
    """

    def __init__(self, flow: nn.Module, features: int) -> None:
        super().__init__()
        self.flow, self.features = flow, features

    def log_prob(self, x: Tensor) -> Tensor:
        r"""``[B, D] -> [B]``."""
        return self.flow().log_prob(x)

    def transport(self, x: Tensor) -> Tensor:
        r"""``[B, D] -> [B, D]``."""
        return self.flow().transform(x).detach()


def spline_flow(
    features: int, package: str = "zuko", num_layers: int = 3, hidden_features: int = 64
) -> nn.Module:
    r"""A neural spline flow (Durkan et al. 2019) as its authors' examples set it up:
    ``num_layers`` monotone rational-quadratic spline transforms, each coordinate's spline
    conditioned autoregressively on the others by a MADE of two hidden layers of
    ``hidden_features``.

    ``package`` ``"zuko"``: ``zuko.flows.NSF`` (8 bins on [-5, 5], the identity outside;
    needs ``pip install zuko``); ``"nflows"``: nflows'
    ``MaskedPiecewiseRationalQuadraticAutoregressiveTransform`` (8 bins on [-3, 3], linear
    tails, residual MADE), layers separated by reversals, as in its authors' experiments.

    Example:
        >>> flow = spline_flow(3, "nflows", num_layers=2, hidden_features=8)
        >>> flow.log_prob(torch.randn(4, 3)).shape
        torch.Size([4])
    """
    if package == "zuko":
        try:
            import zuko
        except ImportError as error:
            raise ImportError("the NSF baseline needs zuko: pip install zuko") from error
        hidden = [hidden_features] * 2
        return ZukoFlow(
            zuko.flows.NSF(features, transforms=num_layers, hidden_features=hidden), features
        )
    if package != "nflows":
        raise ValueError(f"package must be 'zuko' or 'nflows'; got {package!r}")
    layers: list[nn.Module] = []
    for i in range(num_layers):
        if i > 0:
            layers.append(ReversePermutation(features))
        layers.append(
            MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                features,
                hidden_features,
                num_bins=8,
                tails="linear",
                tail_bound=3.0,
                num_blocks=2,
            )
        )
    flow = _Autoregressive(CompositeTransform(layers), StandardNormal([features]))
    flow.features = features
    return flow


def parameter_count(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
