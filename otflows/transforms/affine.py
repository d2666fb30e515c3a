r"""Affine starts of Brenier transforms: the Gaussian (Bures) map between two data sets, the
whitening map of one, and setting a transform's affine part or the whole transform to it."""

from __future__ import annotations

# POT (which loads scikit-learn) is imported where used: `import otflows` stays light
import numpy as np
import torch
from torch import Tensor

from otflows.transforms.brenier import BrenierTransform

__all__ = [
    "RIDGE",
    "bures_map",
    "check_contractible",
    "set_affine",
    "start_affine",
    "whitening_map",
]

# the ridge of a fitted Gaussian: this times each feature's variance added to the covariance's
# diagonal, so that data with collinear features still have a (degenerate) Gaussian
RIDGE = 1e-6


def _gaussian(X: Tensor, reg: float) -> tuple[np.ndarray, np.ndarray]:
    r"""The mean ``[D]`` and covariance ``[D, D]`` of ``X [N, D]`` in float64, with ``reg``
    times each feature's variance added to the covariance's diagonal (a ridge that rescales
    with each feature, so features of very different scales keep their Gaussian; a constant
    feature gets ``reg`` times the mean variance)."""
    x = X.detach().cpu().double().numpy()
    d = x.shape[1]
    C = np.atleast_2d(np.cov(x, rowvar=False)) if len(x) > 1 else np.zeros((d, d))
    variance = np.diag(C)
    floor = max(float(variance.mean()), 1e-12)
    return x.mean(0), C + reg * np.diag(np.where(variance > 0, variance, floor))


def _affine(A: np.ndarray, b: np.ndarray, like: Tensor) -> tuple[Tensor, Tensor]:
    r"""``A`` symmetrised and ``b`` as tensors of ``like``'s dtype and device."""
    A = 0.5 * (A + A.T)
    A_t, b_t = (
        torch.as_tensor(a, dtype=like.dtype, device=like.device) for a in (A, b.reshape(-1))
    )
    return A_t, b_t


def bures_map(Xs: Tensor, Xt: Tensor, reg: float = RIDGE) -> tuple[Tensor, Tensor]:
    r"""The :math:`W_2`-optimal affine map :math:`x \mapsto A x + b` between the Gaussians
    fitted to ``Xs [N, D]`` and ``Xt [M, D]`` (POT's ``bures_wasserstein_mapping``):

    .. math:: A = \Sigma_s^{-1/2}(\Sigma_s^{1/2}\Sigma_t\Sigma_s^{1/2})^{1/2}\Sigma_s^{-1/2},
        \quad b = m_t - A m_s,

    computed in float64 with ``reg`` times each feature's variance added to each covariance's
    diagonal. Returns ``A [D, D]`` (symmetric positive definite) and ``b [D]`` in ``Xs``'s
    dtype and device.

    Example:
        >>> A, b = bures_map(torch.randn(500, 2), 3 * torch.randn(500, 2) + 1)
        >>> A.shape, b.shape
        (torch.Size([2, 2]), torch.Size([2]))
    """
    import ot

    (ms, Cs), (mt, Ct) = _gaussian(Xs, reg), _gaussian(Xt, reg)
    A, b = ot.gaussian.bures_wasserstein_mapping(ms, mt, Cs, Ct)
    return _affine(A, b, Xs)


def whitening_map(X: Tensor, reg: float = RIDGE) -> tuple[Tensor, Tensor]:
    r"""The :math:`W_2`-optimal affine map from the Gaussian fitted to ``X [N, D]`` onto
    :math:`\mathcal N(0, I)`: :math:`A = \Sigma^{-1/2}`, :math:`b = -A m` (symmetric
    whitening, the gradient of a convex quadratic), with ``reg`` as in :func:`bures_map`.

    Example:
        >>> X = torch.randn(1000, 2) @ torch.tensor([[2.0, 0.0], [1.0, 1.0]]) + 3
        >>> A, b = whitening_map(X)
        >>> Z = X @ A + b
        >>> bool(torch.allclose(Z.T.cov(), torch.eye(2), atol=1e-3))
        True
    """
    m, C = _gaussian(X, reg)
    eigenvalues, Q = np.linalg.eigh(C)
    A = (Q / np.sqrt(eigenvalues)) @ Q.T
    return _affine(A, -A @ m, X)


def check_contractible(A: Tensor, gamma: Tensor | float) -> None:
    r"""Raises when the whitening map ``A [D, D]`` contracts a direction below ``gamma``: a
    block :math:`T(x) = G(x) + \gamma x` has :math:`J_T \succeq \gamma I`, so it cannot map data
    of standard deviation above :math:`1/\gamma` to unit scale, at the start or ever.

    Example:
        >>> check_contractible(torch.diag(torch.tensor([1.0, 0.001])), 0.01)
        Traceback (most recent call last):
        ...
        ValueError: X has a direction of standard deviation 1000, more than 1/gamma = 100: ...
    """
    lowest = float(torch.linalg.eigvalsh(A).min())
    if lowest < float(gamma):
        raise ValueError(
            f"X has a direction of standard deviation {1 / lowest:.4g}, more than 1/gamma = "
            f"{1 / float(gamma):.4g}: a Brenier block T(x) = G(x) + gamma x cannot contract it "
            "to unit scale. Standardise X, or build the flow with actnorm=True (an ActNorm "
            "before each block) or a smaller gamma"
        )


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


@torch.no_grad()
def start_affine(
    T: BrenierTransform, A: Tensor, b: Tensor, X: Tensor, shrink: float = 1e-3
) -> None:
    r"""Starts ``T`` at the affine map :math:`x \mapsto A x + b` (``A [D, D]`` symmetric
    positive definite, ``b [D]``) on every input, not only near the data ``X [N, D]``.

    The network's non-quadratic terms are shrunk (:meth:`MonotoneGradientNet.shrink_`) to a
    constant plus :math:`O(\text{shrink}^2)`, its quadratic term is set to the map
    (:func:`set_affine`), and that constant, measured on ``X``, is taken off the offset
    :math:`a`. ``T``'s normalisation is initialised from ``X`` first if it was not.

    Example:
        >>> from otflows import MMGN
        >>> _ = torch.manual_seed(0)
        >>> T = BrenierTransform(MMGN(2, 8), gamma=0.1)
        >>> start_affine(T, 2 * torch.eye(2), torch.ones(2), torch.randn(256, 2))
        >>> far = 100 * torch.randn(5, 2)
        >>> bool(torch.allclose(T.transport(far), 2 * far + 1, rtol=1e-4))
        True
    """
    if not T.initialized:
        T.initialize(X)
    T.net.shrink_(shrink)
    set_affine(T, A, b)
    T.net.quadratic.a.sub_((T.transport(X) - (X @ A + b)).mean(0))
