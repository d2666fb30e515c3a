r"""Scores of flows and maps: likelihood (:mod:`~otflows.metrics.likelihood`), transport cost
and errors against a known map (:mod:`~otflows.metrics.maps`), Gaussian closed forms
(:mod:`~otflows.metrics.gaussian`) and distances between samples
(:mod:`~otflows.metrics.samples`). POT (which loads scikit-learn) is imported where used, so
``import otflows`` stays light."""

from otflows.metrics.gaussian import gaussian_entropy, gaussian_w2_squared
from otflows.metrics.likelihood import kl_divergence, log_prob, nll
from otflows.metrics.maps import l2_uvp, map_cosine, transport_cost
from otflows.metrics.samples import (
    debiased_sinkhorn,
    extrapolation_ratio,
    maximum_mean_discrepancy,
    sinkhorn_divergence,
    w2_difference,
    wasserstein2_squared,
)

__all__ = [
    "debiased_sinkhorn",
    "extrapolation_ratio",
    "gaussian_entropy",
    "gaussian_w2_squared",
    "kl_divergence",
    "l2_uvp",
    "log_prob",
    "map_cosine",
    "maximum_mean_discrepancy",
    "nll",
    "sinkhorn_divergence",
    "transport_cost",
    "w2_difference",
    "wasserstein2_squared",
]
