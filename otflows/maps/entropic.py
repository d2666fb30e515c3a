r"""``EntropicMap``: the entropic optimal transport map estimator (Pooladian & Niles-Weed).

The baseline to beat where samples are few: it needs no training, and on small samples in low
dimension it is often the most accurate map there is. Its bias grows with the dimension and
with :math:`\varepsilon`. It is the gradient of a convex function
(:class:`otflows.nets.EntropicPotential`), though not a strictly monotone one:
:meth:`EntropicMap.as_transform` adds :math:`\gamma x` and makes it an invertible flow step.
"""

from __future__ import annotations

import math
from typing import Any, overload

import numpy as np
import torch
from torch import Tensor

from otflows.nets.entropic import EntropicPotential
from otflows.training.threads import fit_threads
from otflows.transforms.brenier import BrenierTransform
from otflows.validation import as_samples

__all__ = ["RELATIVE_EPSILON", "EntropicMap", "SinkhornError", "sinkhorn_potentials"]

RELATIVE_EPSILON = 0.05  # ε as a share of the mean squared distance between the two samples


class SinkhornError(RuntimeError):
    r"""Sinkhorn's iterations did not reach their tolerance."""


def sinkhorn_potentials(
    Xs: Tensor, Xt: Tensor, epsilon: float, max_iter: int = 10_000, tol: float = 1e-4
) -> tuple[Tensor, Tensor, int]:
    r"""The dual potentials :math:`(f, g)` of entropic OT between the uniform empirical
    measures of ``Xs [N, D]`` and ``Xt [M, D]`` for the cost :math:`\|x - y\|^2`, by
    log-domain Sinkhorn iterations,

    .. math:: f_i = -\varepsilon \log \textstyle\sum_j b_j e^{(g_j - C_{ij})/\varepsilon},
        \quad g_j = -\varepsilon \log \textstyle\sum_i a_i e^{(f_i - C_{ij})/\varepsilon},

    until the plan's source marginal is within ``tol`` of uniform in L1 (checked every ten
    iterations). Returns ``f [N]``, ``g [M]`` and the iterations run; raises
    :class:`SinkhornError` where ``max_iter`` did not reach ``tol``.

    Example:
        >>> X = torch.randn(50, 2, dtype=torch.float64)
        >>> f, g, _ = sinkhorn_potentials(X, X + 1, epsilon=0.1)
        >>> f.shape, g.shape
        (torch.Size([50]), torch.Size([50]))
    """
    C = torch.cdist(Xs, Xt).square()  # [N, M]
    log_a = torch.full((len(Xs),), -math.log(len(Xs)), dtype=C.dtype, device=C.device)
    log_b = torch.full((len(Xt),), -math.log(len(Xt)), dtype=C.dtype, device=C.device)
    f, g = torch.zeros_like(log_a), torch.zeros_like(log_b)
    for iteration in range(1, max_iter + 1):
        f = -epsilon * torch.logsumexp((g - C) / epsilon + log_b, dim=1)
        g = -epsilon * torch.logsumexp((f[:, None] - C) / epsilon + log_a[:, None], dim=0)
        if iteration % 10 == 0:
            log_plan = (f[:, None] + g - C) / epsilon + log_a[:, None] + log_b
            error = (torch.logsumexp(log_plan, dim=1).exp() - log_a.exp()).abs().sum()
            if float(error) < tol:
                return f, g, iteration
    raise SinkhornError(
        f"Sinkhorn did not reach its tolerance {tol} in max_iter={max_iter} iterations "
        f"(epsilon {epsilon:.3g}); raise max_iter or epsilon"
    )


class EntropicMap:
    r"""The entropic OT map from source to target samples, out of sample by its dual
    potential (Pooladian & Niles-Weed 2021):

    .. math:: T_\varepsilon(x) = \frac{\sum_j y_j\, e^{(g_j - \|x - y_j\|^2)/\varepsilon}}
        {\sum_j e^{(g_j - \|x - y_j\|^2)/\varepsilon}},

    the barycentre of the target rows :math:`y_j` under the entropic plan's conditional at
    :math:`x`, with :math:`g` the target potential of Sinkhorn between the training samples
    (:func:`sinkhorn_potentials`). It needs no training and maps any point, seen or not; it is
    biased towards the target's mean by :math:`\varepsilon`, increasingly so with the
    dimension. It is the gradient of the convex log-sum-exp potential
    :class:`otflows.nets.EntropicPotential`, monotone but not strictly (far from the target rows
    it tends to a constant), so not invertible; :meth:`as_transform` adds :math:`\gamma(x - m)`
    and gives an invertible :class:`otflows.BrenierTransform` with an exact log-determinant.
    Memory is :math:`O(NM)`.

    The rule for :math:`\varepsilon`: ``epsilon`` where given, else ``relative_epsilon``
    times the mean squared distance between the source and target training rows (a
    scale-free choice: the same map for data in any unit).

    Conventions are :class:`otflows.BrenierMap`'s and POT's: ``fit(Xs=, Xt=)``,
    ``transform(Xs=)``; NumPy in gives NumPy out, torch in gives torch out; computed in
    float64 on the device of torch input.

    Arguments:
        epsilon: The entropic regularisation :math:`\varepsilon` (``None``: the rule above).
        relative_epsilon: :math:`\varepsilon` as a share of the mean squared distance.
        max_iter: Sinkhorn iterations at most.
        tol: Sinkhorn's tolerance on the source marginal (L1: the share of the mass
            misplaced).
        threads: CPU threads of the fit (``None``: one where an iteration's work, ``N M``, is
            small, else torch's threads: :func:`otflows.training.threads.threads_for`).

    Attributes:
        epsilon_: The :math:`\varepsilon` used.
        Xt_: The target training rows ``[M, D]``.
        g_: The target potential ``[M]``.
        source_mean_: The source training rows' mean ``[D]``.
        n_iter_: Sinkhorn iterations run.
        n_features_in_: The dimension ``D``.

    References:
        | Entropic estimation of optimal transport maps
        | Pooladian, Niles-Weed, 2021 (https://arxiv.org/abs/2109.12004)

    Example:
        >>> rng = np.random.default_rng(0)
        >>> Xs, Xt = rng.normal(size=(300, 2)), 2 * rng.normal(size=(300, 2)) + 1
        >>> Y = EntropicMap().fit(Xs=Xs, Xt=Xt).transform(Xs=Xs[:4])
        >>> Y.shape, Y.dtype
        ((4, 2), dtype('float64'))
    """

    def __init__(
        self,
        epsilon: float | None = None,
        relative_epsilon: float = RELATIVE_EPSILON,
        max_iter: int = 10_000,
        tol: float = 1e-4,
        threads: int | None = None,
    ):
        self.epsilon = epsilon
        self.relative_epsilon = relative_epsilon
        self.max_iter = max_iter
        self.tol = tol
        self.threads = threads

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        r"""The constructor's arguments (scikit-learn's convention)."""
        names = ("epsilon", "relative_epsilon", "max_iter", "tol", "threads")
        return {name: getattr(self, name) for name in names}

    def fit(self, Xs: Tensor | np.ndarray, Xt: Tensor | np.ndarray) -> EntropicMap:
        r"""Solves entropic OT between ``Xs [N, D]`` and ``Xt [M, D]`` (unpaired samples) and
        keeps the target potential. Returns the estimator."""
        Xs = _float64(Xs, "Xs")
        Xt = _float64(Xt, "Xt", Xs.shape[1], Xs.device)
        for name, value in (
            ("epsilon", self.epsilon),
            ("relative_epsilon", self.relative_epsilon),
        ):
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be a positive number; got {value!r}")
        # the mean of ‖x − y‖² over all pairs, without the [N, M] matrix Sinkhorn forms anyway
        mean = Xs.mean(0) - Xt.mean(0)
        scale = float(
            Xs.var(0, unbiased=False).sum() + Xt.var(0, unbiased=False).sum() + mean @ mean
        )
        self.epsilon_ = float(self.epsilon or self.relative_epsilon * scale)
        with fit_threads(len(Xs) * len(Xt), self.threads, Xs.device):
            _, self.g_, self.n_iter_ = sinkhorn_potentials(
                Xs, Xt, self.epsilon_, self.max_iter, self.tol
            )
        self.Xt_ = Xt
        self.source_mean_ = Xs.mean(0)
        self.n_features_in_ = Xs.shape[1]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "g_"):
            raise RuntimeError("EntropicMap is not fitted: call fit(Xs=, Xt=) first")

    @torch.no_grad()
    def as_transform(self, gamma: float) -> BrenierTransform:
        r"""The entropic map as an invertible flow step: the :class:`otflows.BrenierTransform`
        :math:`T(x) = T_\varepsilon(x) + \gamma (x - m)`, ``m`` the source training rows' mean
        (so the map moves the source's mean as :math:`T_\varepsilon` does), whose network is
        the :class:`otflows.nets.EntropicPotential` of the target rows, :math:`\tau =
        \varepsilon/2` and :math:`c_j = \langle y_j, m\rangle + (g_j - \|y_j\|^2)/2` (it sees
        :math:`x - m`). Float64, on the device of the fitted rows; in eval mode.

        Example:
            >>> rng = np.random.default_rng(0)
            >>> Xs, Xt = rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + 1
            >>> entropic = EntropicMap().fit(Xs=Xs, Xt=Xt)
            >>> T = entropic.as_transform(gamma=1e-2)
            >>> x = torch.as_tensor(Xs[:3])
            >>> m = entropic.source_mean_
            >>> bool(torch.allclose(T.transport(x), entropic.transform(x) + 1e-2 * (x - m)))
            True
        """
        self._check_fitted()
        Y, m = self.Xt_, self.source_mean_
        net = EntropicPotential(self.n_features_in_, atoms=len(Y))
        T = BrenierTransform(net, gamma=gamma).to(dtype=Y.dtype, device=Y.device)
        T.shift.copy_(m)
        T.initialized.fill_(True)
        net.Y.copy_(Y)
        net.tau.fill_(self.epsilon_ / 2)
        net.c.copy_(Y @ m + (self.g_ - Y.square().sum(1)) / 2)
        net.quadratic.V.zero_()
        net.quadratic.a.copy_(-gamma * m)
        return T.eval()

    @overload
    def transform(self, Xs: np.ndarray) -> np.ndarray: ...
    @overload
    def transform(self, Xs: Tensor) -> Tensor: ...
    def transform(self, Xs: Tensor | np.ndarray) -> Tensor | np.ndarray:
        r"""The entropic map of ``Xs [N, D]`` (any rows: it is defined everywhere), in the
        type of ``Xs``."""
        self._check_fitted()
        X = _float64(Xs, "Xs", self.n_features_in_, self.Xt_.device)
        mapped = torch.cat(
            [
                torch.softmax((self.g_ - torch.cdist(x, self.Xt_).square()) / self.epsilon_, 1)
                @ self.Xt_
                for x in X.split(4096)
            ]
        )
        if isinstance(Xs, Tensor):
            return mapped.to(dtype=Xs.dtype, device=Xs.device)
        return mapped.cpu().numpy()


def _float64(
    X: Tensor | np.ndarray,
    name: str,
    features: int | None = None,
    device: torch.device | None = None,
) -> Tensor:
    r"""Checked samples ``[N, D]`` (:func:`otflows.validation.as_samples`) in float64: an
    array placed on ``device``, a tensor required there (by default, where it is)."""
    dtype = X.dtype if isinstance(X, Tensor) else torch.float64
    return as_samples(X, name, features=features, dtype=dtype, device=device).to(torch.float64)
