r"""Scores of a density: its log-likelihood of samples, and the KL divergence from a known
density."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from nflows.flows import Flow
from torch import Tensor

from otflows.metrics.inputs import Array, as_float64, model_spec
from otflows.validation import as_samples

__all__ = ["kl_divergence", "log_prob", "nll"]


def log_prob(flow: Flow, X: Array, batch_size: int = 4096, context: Array | None = None) -> Tensor:
    r"""The flow's log-density at each sample, in eval mode without gradients, ``[N]``.

    Exact unless a block uses ``logdet="stochastic"``: then it warns that the values are
    estimates.

    Arguments:
        flow: A flow (its log-determinants are exact in eval mode).
        X: Samples ``[N, D]``.
        batch_size: Samples per forward pass.
        context: The samples' contexts ``[N, C]``, for a conditional flow.

    Example:
        >>> from otflows import BrenierFlow
        >>> log_prob(BrenierFlow(2, hidden_features=4), np.zeros((3, 2))).shape
        torch.Size([3])
    """
    X = as_samples(X, "X", **model_spec(flow))
    contexts: list[Tensor | None] = [None] * len(X.split(batch_size))
    if context is not None:
        context = as_samples(context, "context", **model_spec(flow))
        if len(context) != len(X):
            raise ValueError(
                f"context must have one row per sample ({len(X)}); got {len(context)}"
            )
        contexts = list(context.split(batch_size))
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
            batches = zip(X.split(batch_size), contexts, strict=True)
            return torch.cat([_log_prob(flow, x, c) for x, c in batches])
    finally:
        flow.train(mode)


def _log_prob(flow: Flow, x: Tensor, context: Tensor | None) -> Tensor:
    r"""``flow.log_prob(x)``, with ``context=`` only when there is one (so that models without
    a context argument, like the baselines, are called as they expect)."""
    return flow.log_prob(x) if context is None else flow.log_prob(x, context=context)


def nll(flow: Flow, X: Array, batch_size: int = 4096, context: Array | None = None) -> float:
    r"""The negative log-likelihood :math:`-\frac1N\sum_n \log p(x_n)` (given ``context``
    ``[N, C]``, :math:`-\frac1N\sum_n \log p(x_n \mid c_n)`) in nats per sample.

    Example:
        >>> from otflows import BrenierFlow
        >>> bool(np.isfinite(nll(BrenierFlow(2, hidden_features=4), np.zeros((3, 2)))))
        True
    """
    return float(-log_prob(flow, X, batch_size, context).mean())


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
    X = as_float64(X, "X", getattr(flow, "features", None))
    model = log_prob(flow, X, batch_size).double().cpu().numpy()
    return float(np.mean(log_density(X) - model))
