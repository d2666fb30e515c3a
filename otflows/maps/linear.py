r"""The Gaussian (Bures) map of two data sets, and starting a Brenier transform from it."""

from __future__ import annotations

import numpy as np
import ot
import torch
from torch import Tensor

from otflows.transforms import BrenierTransform

__all__ = ["bures_map", "set_affine"]


def bures_map(Xs: Tensor, Xt: Tensor, reg: float = 1e-6) -> tuple[Tensor, Tensor]:
    r"""The :math:`W_2`-optimal affine map :math:`x \mapsto A x + b` between the Gaussians
    fitted to ``Xs [N, D]`` and ``Xt [M, D]`` (POT's ``bures_wasserstein_mapping``):

    .. math:: A = \Sigma_s^{-1/2}(\Sigma_s^{1/2}\Sigma_t\Sigma_s^{1/2})^{1/2}\Sigma_s^{-1/2},
        \quad b = m_t - A m_s,

    computed in float64 with ``reg`` times the mean variance added to each covariance's
    diagonal. Returns ``A [D, D]`` (symmetric positive definite) and ``b [D]`` in ``Xs``'s
    dtype and device.

    Example:
        >>> A, b = bures_map(torch.randn(500, 2), 3 * torch.randn(500, 2) + 1)
        >>> A.shape, b.shape
        (torch.Size([2, 2]), torch.Size([2]))
    """
    xs, xt = (X.detach().cpu().double().numpy() for X in (Xs, Xt))
    d = xs.shape[1]
    covs = []
    for X in (xs, xt):
        C = np.atleast_2d(np.cov(X, rowvar=False)) if len(X) > 1 else np.zeros((d, d))
        covs.append(C + reg * max(float(np.trace(C)) / d, 1e-12) * np.eye(d))
    A, b = ot.gaussian.bures_wasserstein_mapping(xs.mean(0), xt.mean(0), *covs)
    A = 0.5 * (A + A.T)
    A, b = (torch.as_tensor(a, dtype=Xs.dtype, device=Xs.device) for a in (A, b.reshape(d)))
    return A, b


@torch.no_grad()
def set_affine(T: BrenierTransform, A: Tensor, b: Tensor) -> None:
    r"""Sets the quadratic term of ``T``'s network so that its affine part is
    :math:`x \mapsto A x + b` (``A [D, D]`` symmetric, ``b [D]``).

    With the normalisation :math:`\tilde x = (x - \mu)/s`, the quadratic term gives
    :math:`a + V^\top V\tilde x + \gamma x`; so :math:`V^\top V = s(A - \gamma I)` (its
    eigenvalues clamped at 0, and its top ``rank`` of them kept) and
    :math:`a = b + (A - \gamma I)\mu`. The network's other terms are left as they are.

    Example:
        >>> from otflows import MMGN
        >>> T = BrenierTransform(MMGN(2, 4), gamma=0.1)
        >>> set_affine(T, 2 * torch.eye(2), torch.ones(2))
        >>> T.net.quadratic.a
        Parameter containing:
        tensor([1., 1.], requires_grad=True)
    """
    quadratic = T.net.quadratic
    eye = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
    shifted = A - T.gamma.detach() * eye
    eigenvalues, Q = torch.linalg.eigh(T.scale * shifted)
    rank = quadratic.V.shape[0]
    top = eigenvalues.argsort(descending=True)[:rank]
    quadratic.V.copy_(eigenvalues[top].clamp_min(0).sqrt()[:, None] * Q[:, top].T)
    quadratic.a.copy_(b + shifted @ T.shift)
