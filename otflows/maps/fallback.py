r"""The fallback to the simple map: a fitted map ends at its network only where that is
clearly better than the simple map of the same data (the Bures map, or the entropic map where
it cross-validates better), on held-out rows and a little off them."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor

from otflows.maps.entropic import EntropicMap, SinkhornError
from otflows.maps.objectives import SemiDual
from otflows.maps.problem import chunked
from otflows.metrics import (
    extrapolation_ratio,
    maximum_mean_discrepancy,
    w2_difference,
    wasserstein2_squared,
)
from otflows.training.parts import SELECTION_SIGNIFICANCE
from otflows.transforms.affine import bures_map, start_affine
from otflows.transforms.brenier import BrenierTransform

__all__ = ["baseline_choice", "fall_back", "semidual_difference"]

# Off the rows: probes are the held-out source rows moved this much further from the training
# rows' mean (a little outside them); the network is kept only if, at the 90th percentile of
# the probes, it maps them at most _EXTRAPOLATION_LIMIT times as far from the Bures map as it
# maps their ten nearest training rows (`otflows.metrics.extrapolation_ratio`). The networks
# kept on the W2 pair at d = 8 and on N(0, I) → two moons (2000 rows per side) score 1.16, 0.97.
_PROBE_STRETCH = 1.25
_EXTRAPOLATION_LIMIT = 2.0
_NEIGHBOUR_ROWS = 8192  # training rows among which the probes' neighbours are sought
# The entropic map is a candidate up to this many rows per side (training and held-out): its
# Sinkhorn solves cost O(NM) memory and time, and with more rows the network is the better
# map (benchmarks/small_data_study.md).
_ENTROPIC_CANDIDATE_ROWS = 1000
_FOLDS = 4  # the entropic and Bures maps' cross-validation: every row held out once a repeat
_REPEATS = 5  # partitions of the rows into folds, averaged: one partition's estimate is noisy
# the discrepancy's Gaussian kernels, as shares of the median distance between target rows:
# the clusters' shapes, where the entropic map gains, weigh as much as their places
_BANDWIDTHS = (0.125, 0.25, 0.5, 1.0)
# Sinkhorn's tolerance in the folds (the plan's L1 marginal error): the folds rank two maps and
# need not pin a few rows' last 0.1 % of mass, which can take Sinkhorn thousands of iterations
# more where some rows lie far from the others
_CV_TOLERANCE = 1e-3


@torch.no_grad()
def fall_back(
    T: BrenierTransform,
    bures: tuple[Tensor, Tensor],
    Xs: Tensor,
    Xt: Tensor,
    Xs_val: Tensor,
    Xt_val: Tensor,
    seed: int,
    apply: bool = True,
) -> tuple[dict[str, Any], tuple[Tensor, Tensor], BrenierTransform]:
    r"""The simple map of the data as the last candidate beside the fitted network ``T``.

    The simple map (the *baseline*) is the Bures map, or the entropic map where the data have
    at most 1000 rows per side and it cross-validates better
    (:func:`baseline_choice`). The network is kept only where it is both

    - better: it beats the baseline fitted to the training rows ``Xs``, ``Xt`` (the Bures map
      ``bures``, ``A [D, D]``, ``b [D]``, or the entropic map) on the held-out rows ``Xs_val``,
      ``Xt_val`` by more than :data:`otflows.training.parts.SELECTION_SIGNIFICANCE` standard errors
      of a
      paired difference, in either of two scores: the exact :math:`W_2^2` between the mapped and
      the target held-out rows (:func:`otflows.metrics.w2_difference`, bootstrap resampled with
      ``seed``), or, against the Bures map, the semi-dual objective of the two potentials
      (:func:`semidual_difference`, every conjugate solved). The first is what users get, but
      between a few dozen mapped rows and a few dozen target rows it is mostly the sampling noise
      of so few rows; the second scores each row by a term of its own (the map's error in the semi-
      dual's metric), so it tells a better network from the Bures map on a few dozen rows, while on
      a few hundred the first is the sharper. The semi-dual does not judge the entropic map: its
      potential's gradient is the OT map onto a shrunken target, not onto :math:`\nu`, so its semi-
      dual value is high however near its images lie. Against the entropic map the :math:`W_2^2`
      alone decides, which on a few dozen rows leans towards the entropic map's shrunken images: a
      network is kept only where it is clearly better;
    - sane off the rows: probes a little outside them (the held-out source rows moved
      1.25 times as far from the training rows' mean) are mapped about as far
      from the Bures map as their nearest training rows are (the 90th percentile of
      :func:`otflows.metrics.extrapolation_ratio` at most 2; the record keeps the limit).

    Otherwise (the verdict: the baseline's name) the fit ends at the baseline fitted to all the
    rows, training and held-out: the Bures map as ``T`` itself (its network's other terms zeroed
    by :func:`otflows.transforms.affine.start_affine` with ``shrink=0``, so it holds far off the
    data too),
    or the entropic map as a new transform (:meth:`otflows.EntropicMap.as_transform`, with
    ``T``'s :math:`\gamma`). Both are gradients of convex functions, invertible, with exact
    log-determinants. Without ``apply``, ``T`` keeps its network whatever the verdict.

    Returns the record (what was kept and the verdict; whether either paired test put the
    network ahead, ``better``; the baseline, and the cross-validated
    difference of the entropic and Bures maps' held-out discrepancies with its error
    (:func:`baseline_choice`), ``None`` above 1000 rows per side; the network's and
    the baseline's held-out :math:`W_2^2` and the difference's bootstrap error; against the Bures
    map, the semi-dual difference, its error and the conjugates left unconverged, else ``None``;
    the probes' growth ratio), the Bures map the fit ends at or holds, and the transform it ends
    at.

    Example:
        >>> from otflows import MMGN
        >>> X = torch.randn(400, 2)
        >>> T = BrenierTransform(MMGN(2, 4), gamma=0.1)
        >>> A, b = torch.eye(2), torch.ones(2)
        >>> record, _, _ = fall_back(T, (A, b), X[:300], X[:300] + 1, X[300:], X[300:] + 1, 0)
        >>> record["kept"], record["baseline"]  # an untrained network maps no nearer
        ('bures', 'bures')
    """
    A, b = bures
    network = chunked(T.transport, Xs_val)
    extrapolation = _extrapolation(T, bures, Xs, Xs_val, seed)
    name, cv, entropic = baseline_choice(Xs, Xt, Xs_val, Xt_val, seed)
    if entropic is None:
        baseline = copy.deepcopy(T)
        start_affine(baseline, A, b, Xs, shrink=0.0)
    else:
        baseline = _entropic_transform(entropic, T)
    simple = chunked(baseline.transport, Xs_val)
    delta, se = w2_difference(network, simple, Xt_val, seed=seed)
    better = delta + SELECTION_SIGNIFICANCE * se < 0
    semidual: tuple[float | None, float | None, int | None] = (None, None, None)
    if name == "bures":
        semidual = semidual_difference(
            _semidual_terms(T, Xs_val, Xt_val), _semidual_terms(baseline, Xs_val, Xt_val)
        )
        sd_delta, sd_se, unconverged = semidual
        better = better or (sd_delta + SELECTION_SIGNIFICANCE * sd_se < 0 and unconverged == 0)
    verdict = "network" if better and extrapolation <= _EXTRAPOLATION_LIMIT else name
    kept = verdict if apply else "network"
    Xs_all, Xt_all = torch.cat([Xs, Xs_val]), torch.cat([Xt, Xt_val])
    if kept != "network":
        bures = bures_map(Xs_all, Xt_all)
    if kept == "bures":
        start_affine(T, *bures, Xs, shrink=0.0)
    elif kept == "entropic":
        T = _entropic_transform(EntropicMap().fit(Xs=Xs_all, Xt=Xt_all), T)
    w2_baseline = wasserstein2_squared(simple, Xt_val)
    record = {
        "kept": kept,
        "verdict": verdict,
        "baseline": name,
        **cv,
        "w2_network": w2_baseline + delta,
        "w2_baseline": w2_baseline,
        "difference_se": se,
        "semidual_difference": semidual[0],
        "semidual_se": semidual[1],
        "unconverged": semidual[2],
        "better": better,
        "extrapolation": extrapolation,
        "extrapolation_limit": _EXTRAPOLATION_LIMIT,
    }
    return record, bures, T


def _extrapolation(
    T: BrenierTransform, bures: tuple[Tensor, Tensor], Xs: Tensor, Xs_val: Tensor, seed: int
) -> float:
    r"""How far ``T`` maps probes a little outside the training rows from the Bures map, next to
    their nearest training rows: the 90th percentile of
    :func:`otflows.metrics.extrapolation_ratio` over the held-out rows moved 1.25 times as far
    from the training rows' mean."""
    A, b = bures
    generator = torch.Generator(device="cpu").manual_seed(seed)
    rows = Xs[torch.randperm(len(Xs), generator=generator)[:_NEIGHBOUR_ROWS].to(Xs.device)]
    mean = Xs.mean(0)
    probes = mean + _PROBE_STRETCH * (Xs_val - mean)
    ratio = extrapolation_ratio(
        rows,
        chunked(T.transport, rows) - (rows @ A + b),
        probes,
        chunked(T.transport, probes) - (probes @ A + b),
        neighbours=min(10, len(rows)),
    )
    return float(np.quantile(ratio, 0.9))


def baseline_choice(
    Xs: Tensor, Xt: Tensor, Xs_val: Tensor, Xt_val: Tensor, seed: int
) -> tuple[str, dict[str, float | None], EntropicMap | None]:
    r"""The simple map to hold a network to: ``"entropic"`` where the data have at most
    1000 rows per side and the entropic map
    (:class:`otflows.EntropicMap`) maps held-out rows nearer their targets than the Bures map does,
    by more than a standard error, in 4-fold cross-validation over all the rows,
    repeated 5 times; else ``"bures"``.

    The first repeat's folds are the held-out rows ``Xs_val [N', D]``, ``Xt_val [M', D]`` and
    3 random parts (by ``seed``) of the training rows ``Xs [N, D]``,
    ``Xt [M, D]``; the others' are random parts of all the rows. On each fold both maps are
    fitted to the other rows and scored by the maximum mean discrepancy between the fold's
    mapped source rows and its target rows (:func:`otflows.metrics.maximum_mean_discrepancy`,
    Gaussian kernels of 1/8, 1/4, 1/2 and 1 times the median distance between target rows).
    Not by their :math:`W_2^2`: between a few dozen rows it rewards a map that shrinks its image
    towards the target's mean, as the entropic map's does with :math:`\varepsilon`, and it is
    mostly the rows' sampling noise (on Gaussian pairs, whose true map is the Bures map, it
    preferred the entropic map, which then mapped fresh rows worse); nor by the energy
    distance, which weighs far pairs most and missed entropic maps twice as good between
    clusters. The difference is the mean over all folds; its standard error the mean over
    repeats of the folds' spread over :math:`\sqrt{K}` (conservative: the repeats' mean is
    less noisy than one repeat, and the error of :math:`K` folds alone is itself noisy).

    Returns the choice; ``{"cv_difference", "cv_se"}``, the entropic map's mean discrepancy
    minus the Bures map's and its standard error (``None`` where the entropic map was not
    tried: too many rows, or Sinkhorn missed its tolerance); and the entropic map fitted to the
    training rows where it was chosen.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.randn(400, 2, generator=g, dtype=torch.float64)
        >>> Y = torch.cat([X[:200] - 3, X[200:] + 3]) * torch.tensor([1.0, 0.2])  # two clusters
        >>> name, cv, _ = baseline_choice(X[:300], Y[:300], X[300:], Y[300:], seed=0)
        >>> name, cv["cv_difference"] < 0
        ('entropic', True)
    """
    none: dict[str, float | None] = {"cv_difference": None, "cv_se": None}
    Xs_all, Xt_all = torch.cat([Xs, Xs_val]), torch.cat([Xt, Xt_val])
    if max(len(Xs_all), len(Xt_all)) > _ENTROPIC_CANDIDATE_ROWS:
        return "bures", none, None
    scale = float(torch.pdist(Xt_all).median())
    bandwidths = [share * scale for share in _BANDWIDTHS]
    generator = torch.Generator(device="cpu").manual_seed(seed)
    differences, ses, first = [], [], None
    for repeat in range(_REPEATS):
        source = _parts(len(Xs), len(Xs_val), repeat, generator).to(Xs.device)
        target = _parts(len(Xt), len(Xt_val), repeat, generator).to(Xt.device)
        folds = [
            (Xs_all[source != k], Xt_all[target != k], Xs_all[source == k], Xt_all[target == k])
            for k in range(_FOLDS)
        ]
        repeat_differences = []
        for train_s, train_t, test_s, test_t in folds:
            try:
                entropic = EntropicMap(tol=_CV_TOLERANCE).fit(Xs=train_s, Xt=train_t)
            except SinkhornError:
                return "bures", none, None
            first = entropic if first is None else first
            A, b = bures_map(train_s, train_t)
            repeat_differences.append(
                maximum_mean_discrepancy(entropic.transform(test_s), test_t, bandwidths)
                - maximum_mean_discrepancy(test_s @ A + b, test_t, bandwidths)
            )
        differences += repeat_differences
        ses.append(np.std(repeat_differences, ddof=1) / np.sqrt(_FOLDS))
    difference, se = float(np.mean(differences)), float(np.mean(ses))
    cv: dict[str, float | None] = {"cv_difference": difference, "cv_se": se}
    # the first fold's entropic map is the one fitted to the training rows
    return ("entropic", cv, first) if difference + se < 0 else ("bures", cv, None)


def _parts(training: int, held_out: int, repeat: int, generator: torch.Generator) -> Tensor:
    r"""The fold of each of ``training`` rows followed by ``held_out`` rows ``[training +
    held_out]``, on the CPU: in the first ``repeat`` (0) the held-out rows are fold 0 and the
    training rows fall at random in the other folds; in the others all rows fall at
    random in the folds of sizes within one."""
    if repeat == 0:
        parts = 1 + torch.randperm(training, generator=generator) % (_FOLDS - 1)
        return torch.cat([parts, torch.zeros(held_out, dtype=parts.dtype)])
    return torch.randperm(training + held_out, generator=generator) % _FOLDS


def _entropic_transform(entropic: EntropicMap, T: BrenierTransform) -> BrenierTransform:
    r"""``entropic`` as a transform (:meth:`otflows.EntropicMap.as_transform`) with ``T``'s
    :math:`\gamma`, dtype and device."""
    parameter = next(T.parameters())
    transform = entropic.as_transform(float(T.gamma))
    return transform.to(dtype=parameter.dtype, device=parameter.device)


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
