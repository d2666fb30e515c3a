r"""Scores of flows and maps: likelihood, transport cost, and Gaussian closed forms."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import ot
import torch
from nflows.flows import Flow
from torch import Tensor

from otflows.validation import as_samples

__all__ = [
    "gaussian_entropy",
    "gaussian_w2_squared",
    "kl_divergence",
    "l2_uvp",
    "log_prob",
    "nll",
    "transport_cost",
]

Array = Tensor | np.ndarray


def _numpy(a: Array) -> np.ndarray:
    return np.asarray(a.detach().cpu() if isinstance(a, Tensor) else a, dtype=np.float64)


def _model_spec(model: torch.nn.Module) -> dict:
    parameter = next(model.parameters())
    return {"dtype": parameter.dtype, "device": parameter.device}


def log_prob(flow: Flow, X: Array, batch_size: int = 4096) -> Tensor:
    r"""The flow's log-density at each sample, in eval mode without gradients, ``[N]``.

    Exact unless a block uses ``logdet="stochastic"``: then it warns that the values are
    estimates.

    Arguments:
        flow: A flow (its log-determinants are exact in eval mode).
        X: Samples ``[N, D]``.
        batch_size: Samples per forward pass.

    Example:
        >>> from otflows import BrenierFlow
        >>> log_prob(BrenierFlow(2, hidden_features=4), np.zeros((3, 2))).shape
        torch.Size([3])
    """
    X = as_samples(X, "X", **_model_spec(flow))
    stochastic = [m for m in flow.modules() if getattr(m, "method", None) == "stochastic"]
    if stochastic:
        options = stochastic[0].stochastic_options
        warnings.warn(
            f"log_prob/nll: {len(stochastic)} block(s) use logdet='stochastic', so these are "
            f"stochastic estimates (SLQ with {options['probes']} probe(s) and "
            f"{options['lanczos_steps']} Lanczos steps), not exact log-likelihoods",
            stacklevel=2,
        )
    mode = flow.training
    flow.eval()
    try:
        with torch.no_grad():
            return torch.cat([flow.log_prob(batch) for batch in X.split(batch_size)])
    finally:
        flow.train(mode)


def nll(flow: Flow, X: Array, batch_size: int = 4096) -> float:
    r"""The negative log-likelihood :math:`-\frac1N\sum_n \log p(x_n)` in nats per sample.

    Example:
        >>> from otflows import BrenierFlow
        >>> bool(np.isfinite(nll(BrenierFlow(2, hidden_features=4), np.zeros((3, 2)))))
        True
    """
    return float(-log_prob(flow, X, batch_size).mean())


def kl_divergence(
    flow: Flow, X: Array, log_density: Callable[[np.ndarray], np.ndarray], batch_size: int = 4096
) -> float:
    r""":math:`\mathrm{KL}(\mu \| p) = \mathbb E_\mu[\log\mu(x) - \log p(x)]` on samples of a
    known density :math:`\mu`.

    This is NLL − entropy(μ) with the Monte-Carlo noise of the entropy term cancelled sample by
    sample: its standard error vanishes as :math:`p \to \mu`, where NLL − entropy keeps the
    sampling noise of :math:`\log\mu` (about :math:`\sqrt{D/2N}` nats).

    Arguments:
        flow: The model :math:`p`.
        X: Samples of :math:`\mu`, ``[N, D]``.
        log_density: :math:`\log\mu`, ``[N, D] -> [N]`` on NumPy arrays.

    Example:
        >>> from otflows import BrenierFlow
        >>> from otflows.datasets import GaussianCoupling
        >>> problem = GaussianCoupling.mgn_2d()
        >>> flow = BrenierFlow(2, hidden_features=4)
        >>> kl_divergence(flow, problem.sample(100, seed=0), problem.log_prob) > 0
        True
    """
    X = _numpy(X)
    model = log_prob(flow, X, batch_size).double().cpu().numpy()
    return float(np.mean(log_density(X) - model))


def transport_cost(T: Callable[[Tensor], Tensor], X: Array, batch_size: int = 4096) -> float:
    r"""The transport cost :math:`\mathbb E\|x - T(x)\|^2` of a map on samples.

    Arguments:
        T: The map (e.g. :meth:`BrenierFlow.transport`), ``[B, D] -> [B, D]``.
        X: Samples ``[N, D]``; arrays are cast to the map's dtype when it is a module.

    Example:
        >>> transport_cost(lambda x: 2 * x, torch.ones(4, 3))
        3.0
    """
    owner = getattr(T, "__self__", T)
    spec = _model_spec(owner) if isinstance(owner, torch.nn.Module) else {}
    X = as_samples(X, "X", **spec)
    with torch.no_grad():
        costs = [(batch - T(batch)).square().sum(-1) for batch in X.split(batch_size)]
    return float(torch.cat(costs).mean())


def gaussian_w2_squared(m1: Array, C1: Array, m2: Array, C2: Array) -> float:
    r"""The squared Wasserstein-2 distance between two Gaussians, by POT.

    .. math:: W_2^2 = \|m_1 - m_2\|^2 + \operatorname{tr}\left(C_1 + C_2 -
        2 (C_1^{1/2} C_2 C_1^{1/2})^{1/2}\right)

    POT's ``bures_wasserstein_distance`` returns :math:`W_2`; this squares it.

    Example:
        >>> gaussian_w2_squared(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2))
        4.0
    """
    return float(ot.gaussian.bures_wasserstein_distance(*map(_numpy, (m1, m2, C1, C2)))) ** 2


def gaussian_entropy(C: Array) -> float:
    r"""The differential entropy :math:`\frac12\log\det(2\pi e C)` of :math:`\mathcal N(m, C)`.

    Example:
        >>> round(gaussian_entropy(np.eye(2)), 4)  # log(2πe)
        2.8379
    """
    C = np.atleast_2d(_numpy(C))
    sign, logdet = np.linalg.slogdet(2 * np.pi * np.e * C)
    if sign <= 0:
        raise ValueError("C must be symmetric positive definite")
    return 0.5 * float(logdet)


def l2_uvp(pred: Array, true: Array) -> float:
    r"""The unexplained variance percentage of a map,
    :math:`100\,\mathbb E\|\hat T(x) - T^*(x)\|^2 / \operatorname{tr}\operatorname{Cov}(T^*(x))`.

    Arguments:
        pred: :math:`\hat T(x)` on samples, ``[N, D]``.
        true: :math:`T^*(x)` on the same samples, ``[N, D]``.

    Example:
        >>> true = np.array([[0.0, 0.0], [2.0, 2.0]])
        >>> l2_uvp(true + 0.1, true)  # 100 · 0.02 / 2
        1.0000000000000009
    """
    pred, true = _numpy(pred), _numpy(true)
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have the same shape; got {pred.shape}, {true.shape}")
    return float(100.0 * np.square(pred - true).sum(-1).mean() / true.var(axis=0).sum())
