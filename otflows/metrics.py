r"""Scores of flows and maps: likelihood, transport cost, and Gaussian closed forms."""

from __future__ import annotations

# POT (which loads scikit-learn) is imported where used: `import otflows` stays light
import itertools
import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from nflows.flows import Flow
from torch import Tensor

from otflows.validation import as_samples

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

Array = Tensor | np.ndarray


def _samples(a: Array, name: str, features: int | None = None) -> np.ndarray:
    """Validated samples ``[N, D]`` (see :func:`as_samples`) as a float64 NumPy array."""
    dtype = torch.float64 if isinstance(a, np.ndarray) else None  # tensors keep their dtype
    X = as_samples(a, name, features=features, dtype=dtype)
    return X.detach().cpu().double().numpy()


def _gaussian(m: Array | None, C: Array, suffix: str) -> tuple[np.ndarray | None, np.ndarray]:
    """A validated mean ``[D]`` (if given) and covariance ``[D, D]`` as float64 NumPy arrays."""
    C = _samples(C, f"C{suffix}")
    if C.shape[0] != C.shape[1]:
        raise ValueError(f"C{suffix} must be a square covariance [D, D]; got shape {C.shape}")
    if m is None:
        return None, C
    if getattr(m, "ndim", None) != 1:
        shape = tuple(getattr(m, "shape", ()))
        raise ValueError(f"m{suffix} must be a mean vector [{C.shape[0]}]; got shape {shape}")
    return _samples(m[None], f"m{suffix}", C.shape[1])[0], C


def _model_spec(model: torch.nn.Module) -> dict:
    """The dtype and device of a model's first parameter (or buffer, for closed-form models)."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()))
    return {"dtype": tensor.dtype, "device": tensor.device}


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
    X = as_samples(X, "X", **_model_spec(flow))
    contexts: list[Tensor | None] = [None] * len(X.split(batch_size))
    if context is not None:
        context = as_samples(context, "context", **_model_spec(flow))
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
    X = _samples(X, "X", getattr(flow, "features", None))
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
    import ot

    (mean1, cov1), (mean2, cov2) = _gaussian(m1, C1, "1"), _gaussian(m2, C2, "2")
    if cov1.shape != cov2.shape:
        raise ValueError(f"C1 and C2 must have the same shape; got {cov1.shape}, {cov2.shape}")
    return float(ot.gaussian.bures_wasserstein_distance(mean1, mean2, cov1, cov2)) ** 2


def gaussian_entropy(C: Array) -> float:
    r"""The differential entropy :math:`\frac12\log\det(2\pi e C)` of :math:`\mathcal N(m, C)`.

    Example:
        >>> round(gaussian_entropy(np.eye(2)), 4)  # log(2πe)
        2.8379
    """
    _, C = _gaussian(None, C, "")
    if not np.allclose(C, C.T, rtol=1e-10, atol=0):
        raise ValueError("C must be symmetric positive definite; it is not symmetric")
    eigenvalues = np.linalg.eigvalsh(C)
    if eigenvalues.min() <= 0:
        raise ValueError(
            "C must be symmetric positive definite; its smallest eigenvalue is "
            f"{eigenvalues.min():.3g}"
        )
    return 0.5 * float(np.sum(np.log(2 * np.pi * np.e * eigenvalues)))


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
    pred = _samples(pred, "pred")
    true = _samples(true, "true", pred.shape[1])
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have the same shape; got {pred.shape}, {true.shape}")
    return float(100.0 * np.square(pred - true).sum(-1).mean() / true.var(axis=0).sum())


def map_cosine(x: Array, pred: Array, true: Array) -> float:
    r"""The cosine between a map's and the true map's displacements (Korotin et al., 2021),

    .. math:: \cos(\hat T) = \frac{\mathbb E\langle \hat T(x) - x, T^*(x) - x\rangle}
        {\sqrt{\mathbb E\|\hat T(x) - x\|^2\,\mathbb E\|T^*(x) - x\|^2}}.

    Arguments:
        x: Samples ``[N, D]``.
        pred: :math:`\hat T(x)`, ``[N, D]``.
        true: :math:`T^*(x)`, ``[N, D]``.

    Example:
        >>> x = np.zeros((2, 2))
        >>> map_cosine(x, np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[2.0, 0.0], [0.0, 2.0]]))
        1.0
    """
    x = _samples(x, "x")
    pred, true = _samples(pred, "pred", x.shape[1]), _samples(true, "true", x.shape[1])
    if not x.shape == pred.shape == true.shape:
        raise ValueError(
            f"x, pred and true must have the same shape; got {x.shape}, {pred.shape}, {true.shape}"
        )
    u, v = pred - x, true - x
    inner = (u * v).sum(-1).mean()
    return float(inner / np.sqrt(np.square(u).sum(-1).mean() * np.square(v).sum(-1).mean()))


def debiased_sinkhorn(X: Array, Y: Array, epsilon: float, max_iter: int, tol: float) -> Array:
    r""":math:`S_\varepsilon(X, Y)` by POT's ``empirical_sinkhorn_divergence`` (log-domain
    Sinkhorn) on the inputs' own backend, a 0-dim value: the entropic plans' transport costs
    without their entropy terms, debiased and clamped at 0
    (:class:`otflows.maps.SinkhornDivergence`); on torch, differentiable in ``X`` through the
    Sinkhorn iterations.

    Example:
        >>> round(float(debiased_sinkhorn(np.zeros((3, 2)), np.ones((3, 2)), 0.1, 100, 1e-9)), 6)
        2.0
    """
    import ot

    value = ot.bregman.empirical_sinkhorn_divergence(
        X, Y, epsilon, method="sinkhorn_log", numIterMax=max_iter, stopThr=tol, warn=False
    )
    return value.reshape(())


def sinkhorn_divergence(X: Array, Y: Array, reg: float = 0.05) -> float:
    r"""The debiased Sinkhorn loss :math:`S_\varepsilon` between two point clouds
    (squared-Euclidean cost, uniform weights; :func:`debiased_sinkhorn`), with
    :math:`\varepsilon` = ``reg`` times the total variance of ``Y`` — the same scale-free blur
    as :class:`otflows.maps.SinkhornDivergence`. It is 0 for identical clouds.

    Example:
        >>> Y = np.random.default_rng(0).normal(size=(200, 2))
        >>> sinkhorn_divergence(Y, Y) < 1e-9 < sinkhorn_divergence(Y + 1, Y)
        True
    """
    X = torch.as_tensor(_samples(X, "X"))  # torch: POT's fastest CPU backend
    Y = torch.as_tensor(_samples(Y, "Y", X.shape[1]))
    epsilon = reg * float(Y.var(0, unbiased=False).sum())
    return float(debiased_sinkhorn(X, Y, epsilon, 500, 1e-6))


def wasserstein2_squared(X: Array, Y: Array) -> float:
    r"""The exact :math:`W_2^2` between the empirical measures of two point clouds ``X [N, D]``
    and ``Y [M, D]`` (uniform weights, squared-Euclidean cost), by POT's network simplex
    (``ot.emd2``) in float64: :math:`O(N M)` memory, about a second at N = M = 2000.

    Between two samples of one measure it is not 0 but the sampling floor, which falls like
    :math:`N^{-2/D}` (slowly at large ``D``); it ranks maps by how far :math:`T_\#\mu` lies from
    :math:`\nu` in :math:`W_2` itself.

    Example:
        >>> X = np.array([[0.0, 0.0], [1.0, 0.0]])
        >>> wasserstein2_squared(X, X + [0.0, 2.0])
        4.0
    """
    import ot

    X = _samples(X, "X")
    Y = _samples(Y, "Y", X.shape[1])
    return float(ot.emd2([], [], ot.dist(X, Y), numItermax=10**7))


def maximum_mean_discrepancy(X: Array, Y: Array, bandwidths: Sequence[float]) -> float:
    r"""The squared maximum mean discrepancy between the measures of two samples ``X [N, D]``
    and ``Y [M, D]`` for the sum of Gaussian kernels
    :math:`k(x, y) = \sum_h \exp(-\|x - y\|^2 / 2h^2)` over ``bandwidths`` :math:`h`
    (Gretton et al. 2012), unbiased (U-statistics within each sample), in float64:

    .. math:: \mathrm{MMD}^2(\mu, \nu) = \mathbb E\,k(X, X') + \mathbb E\,k(Y, Y')
        - 2\,\mathbb E\,k(X, Y) \ge 0,

    zero only for :math:`\mu = \nu`. Its self terms take off what two samples of one measure
    are apart, so, unlike the :math:`W_2^2` of a few dozen rows, it does not reward a map that
    shrinks its image towards the target's mean, and its estimate (a mean over all pairs, not
    one matching) is far less noisy. Bandwidths below the data's scale weigh the shape of each
    cluster, which a distance-based score such as the energy distance (whose far pairs weigh
    most) barely sees. Between two samples of one measure its estimate is 0 in expectation (it
    can be negative). :math:`O((N + M)^2)` memory.

    Example:
        >>> X, Y = np.random.default_rng(0).normal(size=(2, 2000, 1))
        >>> round(maximum_mean_discrepancy(X, Y + 2.0, [1.0]), 2)  # 2/√3 (1 − e^(−2/3))
        0.56
    """
    X = torch.as_tensor(_samples(X, "X"), dtype=torch.float64)
    Y = torch.as_tensor(_samples(Y, "Y", X.shape[1]), dtype=torch.float64)
    if len(X) < 2 or len(Y) < 2:
        raise ValueError(f"X and Y need 2 rows or more each; got {len(X)} and {len(Y)}")
    if len(bandwidths) == 0 or not all(math.isfinite(h) and h > 0 for h in bandwidths):
        raise ValueError(f"bandwidths must be positive and finite, at least one; got {bandwidths}")
    Z = torch.cat([X, Y])
    squared = torch.cdist(Z, Z).square()  # [N + M, N + M]
    K = torch.stack([torch.exp(-squared / (2 * h * h)) for h in bandwidths]).sum(0)
    N = len(X)

    def within(block: Tensor) -> Tensor:
        return (block.sum() - block.diagonal().sum()) / (len(block) * (len(block) - 1))

    return float(within(K[:N, :N]) + within(K[N:, N:]) - 2 * K[:N, N:].mean())


def w2_difference(
    A: Array, B: Array, Y: Array, replicates: int = 25, seed: int = 0
) -> tuple[float, float]:
    r"""How much nearer two maps' images ``A [N, D]`` and ``B [N, D]`` of the same rows lie to
    the samples ``Y [M, D]``: :math:`\Delta = W_2^2(A, Y) - W_2^2(B, Y)` (exact, as
    :func:`wasserstein2_squared`), and its bootstrap standard error over ``replicates``
    resamplings of both sides' rows, each drawn once for both maps (paired), so that a few
    dozen held-out rows do not pass noise for a difference.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X, Y = rng.normal(size=(40, 2)), rng.normal(size=(40, 2))
        >>> delta, se = w2_difference(X, X + 3.0, Y)  # A is the nearer: Δ < 0, far beyond se
        >>> bool(delta < -5 * se < 0)
        True
    """
    import ot

    A = _samples(A, "A")
    B = _samples(B, "B", A.shape[1])
    Y = _samples(Y, "Y", A.shape[1])
    if len(A) != len(B):
        raise ValueError(f"A and B must map the same rows; got {len(A)} and {len(B)}")
    costs = ot.dist(A, Y), ot.dist(B, Y)
    rng = np.random.default_rng(seed)

    def delta(a: np.ndarray, b: np.ndarray) -> float:
        return float(ot.emd2(a, b, costs[0], numItermax=10**7)) - float(
            ot.emd2(a, b, costs[1], numItermax=10**7)
        )

    full = delta(np.full(len(A), 1 / len(A)), np.full(len(Y), 1 / len(Y)))
    draws = [
        delta(
            rng.multinomial(len(A), np.full(len(A), 1 / len(A))) / len(A),
            rng.multinomial(len(Y), np.full(len(Y), 1 / len(Y))) / len(Y),
        )
        for _ in range(replicates)
    ]
    return full, float(np.std(draws, ddof=1))


def extrapolation_ratio(
    X: Array, R_X: Array, P: Array, R_P: Array, neighbours: int = 10
) -> np.ndarray:
    r"""How far a residual field grows off the rows it was fitted on: for each probe row
    :math:`p` of ``P [Q, D]``, :math:`\|R(p)\|` over the largest :math:`\|R(x)\|` among its
    ``neighbours`` nearest rows :math:`x` of ``X [N, D]``, given the residuals ``R_X [N, D]``
    and ``R_P [Q, D]`` (e.g. a fitted map minus the Bures map). About 1 (or below) where a
    probe a little outside the rows is mapped about as far from the reference as the rows near
    it; far above 1 where the residual blows up off them. Returns ``[Q]``.

    Example:
        >>> X = np.linspace(-1, 1, 101)[:, None]
        >>> P = np.array([[1.2], [-1.2]])  # a little outside the rows
        >>> bool(extrapolation_ratio(X, 0.5 * X, P, 0.5 * P).max() < 1.3)  # linear growth
        True
        >>> bool(extrapolation_ratio(X, X**9, P, P**9).min() > 4)  # a blow-up
        True
    """
    X = _samples(X, "X")
    R_X = _samples(R_X, "R_X", X.shape[1])
    P = _samples(P, "P", X.shape[1])
    R_P = _samples(R_P, "R_P", X.shape[1])
    if len(R_X) != len(X) or len(R_P) != len(P):
        raise ValueError(
            f"R_X and R_P must hold a residual per row of X and P; got {len(R_X)} for "
            f"{len(X)} and {len(R_P)} for {len(P)}"
        )
    if not 1 <= neighbours <= len(X):
        raise ValueError(f"neighbours must be in [1, {len(X)}] (rows of X); got {neighbours}")
    import ot

    near = np.argpartition(ot.dist(P, X), neighbours - 1, axis=1)[:, :neighbours]  # [Q, k]
    size = np.linalg.norm(R_X, axis=1)
    return np.linalg.norm(R_P, axis=1) / np.maximum(size[near].max(1), np.finfo(float).tiny)
