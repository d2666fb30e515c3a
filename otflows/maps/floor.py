r"""The Bures floor: a fitted map ends at its network only where that is clearly better than
the Bures (linear) map it starts from, on held-out rows and a little off them."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor

from otflows.affine import bures_map, start_affine
from otflows.maps.objectives import SemiDual
from otflows.maps.problem import chunked
from otflows.metrics import extrapolation_ratio, w2_difference, wasserstein2_squared
from otflows.transforms import BrenierTransform

__all__ = [
    "EXTRAPOLATION_LIMIT",
    "FLOOR_SIGNIFICANCE",
    "NEIGHBOUR_ROWS",
    "PROBE_STRETCH",
    "bures_floor",
    "semidual_difference",
]

# standard errors by which the network must beat the Bures map on the held-out rows: more than
# a paired test's two, since validation chose the network's weights on those same rows
FLOOR_SIGNIFICANCE = 3.0
# Off the rows: probes are the held-out source rows moved this much further from the training
# rows' mean (a little outside them); the network is kept only if, at the 90th percentile of
# the probes, it maps them at most EXTRAPOLATION_LIMIT times as far from the Bures map as it
# maps their ten nearest training rows (`otflows.metrics.extrapolation_ratio`). The networks
# kept on the W2 pair at d = 8 and on N(0, I) → two moons (2000 rows per side) score 1.16, 0.97.
PROBE_STRETCH = 1.25
EXTRAPOLATION_LIMIT = 2.0
NEIGHBOUR_ROWS = 8192  # training rows among which the probes' neighbours are sought


@torch.no_grad()
def bures_floor(
    T: BrenierTransform,
    bures: tuple[Tensor, Tensor],
    Xs: Tensor,
    Xt: Tensor,
    Xs_val: Tensor,
    Xt_val: Tensor,
    seed: int,
    apply: bool = True,
) -> tuple[dict[str, Any], tuple[Tensor, Tensor]]:
    r"""The Bures map as the last candidate beside the fitted network ``T``. The network is
    kept only where it is both

    - better: it beats the Bures map ``bures`` (``A [D, D]``, ``b [D]``) of the training rows
      ``Xs``, ``Xt`` on the held-out rows ``Xs_val``, ``Xt_val`` by more than
      :data:`FLOOR_SIGNIFICANCE` standard errors of a paired difference, in either of two
      scores: the exact :math:`W_2^2` between the mapped and the target held-out rows
      (:func:`otflows.metrics.w2_difference`, bootstrap resampled with ``seed``), or the
      semi-dual objective of the two potentials (:func:`semidual_difference`, every
      conjugate solved). The first is what users get, but between a few dozen mapped rows
      and a few dozen target rows it is mostly the sampling noise of so few rows; the second
      scores each row by a term of its own (the map's error in the semi-dual's metric), so it
      tells a better network from the Bures map on a few dozen rows, while on a few hundred
      the first is the sharper;
    - sane off the rows: probes a little outside them (the held-out source rows moved
      :data:`PROBE_STRETCH` times as far from the training rows' mean) are mapped about as far
      from the Bures map as their nearest training rows are (the 90th percentile of
      :func:`otflows.metrics.extrapolation_ratio` at most :data:`EXTRAPOLATION_LIMIT`).

    Otherwise (the verdict ``"bures"``) ``T`` is set exactly to the Bures map of all the rows,
    training and held-out (its network's other terms zeroed by
    :func:`otflows.affine.start_affine` with ``shrink=0``, so it holds far off the data too):
    the simpler answer the fit starts from. Without ``apply``, ``T`` keeps its network
    whatever the verdict. Returns what was kept and the verdict, both maps' held-out
    :math:`W_2^2` and the difference's bootstrap error, the semi-dual difference and its
    error, the conjugates left unconverged and the probes' growth ratio; and the Bures map
    ``T`` ends at or holds (``bures`` where the network is kept).

    Example:
        >>> from otflows import MMGN
        >>> X = torch.randn(400, 2)
        >>> T = BrenierTransform(MMGN(2, 4), gamma=0.1)
        >>> A, b = torch.eye(2), torch.ones(2)
        >>> record, _ = bures_floor(T, (A, b), X[:300], X[:300] + 1, X[300:], X[300:] + 1, 0)
        >>> record["kept"]  # an untrained network maps no nearer than the Bures map
        'bures'
    """
    A, b = bures
    network = chunked(T.transport, Xs_val)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    rows = Xs[torch.randperm(len(Xs), generator=generator)[:NEIGHBOUR_ROWS].to(Xs.device)]
    mean = Xs.mean(0)
    probes = mean + PROBE_STRETCH * (Xs_val - mean)
    ratio = extrapolation_ratio(
        rows,
        chunked(T.transport, rows) - (rows @ A + b),
        probes,
        chunked(T.transport, probes) - (probes @ A + b),
        neighbours=min(10, len(rows)),
    )
    extrapolation = float(np.quantile(ratio, 0.9))
    trained = copy.deepcopy(T.state_dict())
    network_terms = _semidual_terms(T, Xs_val, Xt_val)
    start_affine(T, A, b, Xs, shrink=0.0)
    linear = chunked(T.transport, Xs_val)
    delta, se = w2_difference(network, linear, Xt_val, seed=seed)
    sd_delta, sd_se, unconverged = semidual_difference(
        network_terms, _semidual_terms(T, Xs_val, Xt_val)
    )
    better = delta + FLOOR_SIGNIFICANCE * se < 0 or (
        sd_delta + FLOOR_SIGNIFICANCE * sd_se < 0 and unconverged == 0
    )
    verdict = "network" if better and extrapolation <= EXTRAPOLATION_LIMIT else "bures"
    kept = verdict if apply else "network"
    if kept == "network":
        T.load_state_dict(trained)
    else:
        bures = bures_map(torch.cat([Xs, Xs_val]), torch.cat([Xt, Xt_val]))
        start_affine(T, *bures, Xs, shrink=0.0)
    w2_bures = wasserstein2_squared(linear, Xt_val)
    record = {
        "kept": kept,
        "verdict": verdict,
        "w2_network": w2_bures + delta,
        "w2_bures": w2_bures,
        "difference_se": se,
        "semidual_difference": sd_delta,
        "semidual_se": sd_se,
        "unconverged": unconverged,
        "extrapolation": extrapolation,
    }
    return record, bures


def _semidual_terms(T: BrenierTransform, Xs: Tensor, Xt: Tensor) -> tuple[Tensor, Tensor, int]:
    r"""The semi-dual's per-row terms of ``T``'s potential, :math:`\varphi(x)` ``[N]`` and
    :math:`\varphi^*(y)` ``[M]`` (conjugates to the inverse's tolerance), and how many
    conjugates missed it."""
    objective = SemiDual(rtol=None)
    objective.setup(T, Xs, Xt)
    index = torch.arange(len(Xt), device=Xt.device)
    phi, conjugate = objective.terms(T, Xs, Xt, index)
    return phi, conjugate, int(objective.unconverged)


def semidual_difference(
    first: tuple[Tensor, Tensor, int], second: tuple[Tensor, Tensor, int]
) -> tuple[float, float, int]:
    r"""The paired difference of the semi-dual objective
    :math:`L(\varphi) = \mathbb E_\mu\varphi + \mathbb E_\nu\varphi^*` between two potentials
    on the same held-out rows, given as their per-row terms ``(φ(x) [N], φ*(y) [M],
    unconverged)``: the mean of the source rows' differences plus the mean of the target rows'
    differences, its standard error (the two sides independent, each row paired with itself),
    and the conjugates unconverged in either. :math:`L(\varphi) - L(\varphi_{\text{opt}})` is
    the map's error :math:`\mathbb E\,D_{\varphi^*}(T^*(x), T(x))
    \approx \tfrac12\mathbb E\langle\delta T, J_T^{-1}\delta T\rangle`
    (:func:`otflows.maps.fenchel_young_gap`), so a negative difference is the first map the
    nearer to the optimal one. A potential's additive constant cancels.

    Example:
        >>> phi, conjugate = torch.arange(10.0), torch.arange(8.0)
        >>> semidual_difference((phi, conjugate, 0), (phi + 5, conjugate - 5, 0))  # a constant
        (0.0, 0.0, 0)
        >>> semidual_difference((phi, conjugate, 0), (phi, conjugate + 1, 2))
        (-1.0, 0.0, 2)
    """
    source = (first[0] - second[0]).double()
    target = (first[1] - second[1]).double()
    difference = float(source.mean() + target.mean())
    se = float((source.var() / len(source) + target.var() / len(target)).sqrt())
    return difference, se, first[2] + second[2]
