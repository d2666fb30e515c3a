r"""The target's likelihood of the pushed samples: a density fitted to the target (a Gaussian
by default) scores :math:`T_\#\mu`."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from otflows.maps.objectives.base import Density, Objective
from otflows.transforms.brenier import BrenierTransform

__all__ = ["TargetLikelihood"]


class TargetLikelihood(Objective):
    r"""Maximum likelihood of the pushed-forward source under a target density :math:`q`:

    .. math:: L = -\mathbb E_{x\sim\mu}\left[\log q(T(x)) + \log\det J_T(x)\right]
        = \operatorname{KL}(T_\#\mu \,\|\, q) - H(\mu),

    with exact log-determinants. By default :math:`q` is the Gaussian
    :math:`\mathcal N(\bar y, \hat\Sigma_y)` fitted to the target samples (the MGN
    colour-transfer protocol): the fitted map then matches the target's first two moments
    exactly and its other features only through :math:`\mu`'s shape. Give a density fitted to
    the target (e.g. a :class:`otflows.BrenierFlow`) to match everything.

    Arguments:
        target: A :class:`Density` of :math:`\nu`; ``None`` fits a Gaussian to ``Xt``.

    Example:
        >>> from otflows import MMGN, BrenierTransform
        >>> T = BrenierTransform(MMGN(2, 4))
        >>> objective = TargetLikelihood()
        >>> Xs, Xt = torch.randn(64, 2), torch.randn(64, 2) + 3
        >>> objective.setup(T, Xs, Xt)
        >>> objective.loss(T, Xs, Xt, torch.arange(64)).shape
        torch.Size([])
    """

    name = "likelihood"

    def __init__(self, target: Density | None = None):
        self.target = target

    def setup(self, T: BrenierTransform, Xs: Tensor, Xt: Tensor, ct: Tensor | None = None) -> None:
        if self.target is None:
            centred = Xt - Xt.mean(0)
            cov = centred.T @ centred / max(Xt.shape[0] - 1, 1)
            eye = torch.eye(Xt.shape[1], dtype=Xt.dtype, device=Xt.device)
            jitter = 16 * torch.finfo(Xt.dtype).eps * cov.diagonal().mean() * eye  # Cholesky-safe
            self.density: Density = MultivariateNormal(Xt.mean(0), cov + jitter)
        else:
            self.density = self.target

    def terms(
        self,
        T: BrenierTransform,
        xs: Tensor,
        xt: Tensor,
        index_t: Tensor,
        cs: Tensor | None = None,
        ct: Tensor | None = None,
    ) -> tuple[Tensor, ...]:
        r"""``(-log q(T(x)) - log det J_T(x) [B],)``."""
        y, logdet = T(xs)
        return (-(self.density.log_prob(y) + logdet),)
