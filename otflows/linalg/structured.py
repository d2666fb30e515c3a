r"""Exact log-determinants and solves for a shared matrix plus a per-sample low-rank term."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.linalg import cholesky, solve_triangular

from otflows.linalg.dense import DenseCholesky, logdet_spd

__all__ = ["LowRankUpdate", "RidgeFactors", "factorize"]


@dataclass
class RidgeFactors:
    r"""The Jacobian of a sum of ridge functions, :math:`U^\top \operatorname{diag}(d)\, U +
    E E^\top`.

    Attributes:
        U: The ridge directions ``[k, D]``, shared by the batch.
        d: Their non-negative curvatures ``[B, k]``.
        E: An optional per-sample low-rank factor ``[B, D, K]``.
    """

    U: Tensor
    d: Tensor
    E: Tensor | None = None

    @property
    def rank(self) -> int:
        r"""The rank bound :math:`m = k + K`."""
        return self.U.shape[0] + (0 if self.E is None else self.E.shape[-1])

    def assemble(self, A0: Tensor) -> Tensor:
        r"""The dense :math:`A_0 + U^\top \operatorname{diag}(d)\, U + E E^\top`,
        ``[B, D, D]``, in :math:`O(D^2 m)` per sample."""
        k, D = self.U.shape
        if A0.dim() == 0:
            A0 = A0 * torch.eye(D, dtype=self.U.dtype, device=self.U.device)
        # Σ_k d_k u_k u_kᵀ as one [B, k] × [k, D²] product, without a [B, D, k] intermediate
        outer = (self.U[:, :, None] * self.U[:, None, :]).reshape(k, D * D)
        J = torch.addmm(A0.reshape(1, D * D), self.d, outer).view(-1, D, D)
        return J if self.E is None else torch.baddbmm(J, self.E, self.E.mT)


class LowRankUpdate:
    r""":math:`J = A_0 + U^\top \operatorname{diag}(d)\, U + E E^\top`, factorised through
    Sylvester's determinant identity and the Woodbury formula.

    With :math:`A_0 = L_0 L_0^\top` (shared by the batch) and
    :math:`\tilde F = L_0^{-1} [U^\top \operatorname{diag}\sqrt d,\ E]` (``[B, D, m]``),

    .. math:: J = L_0 (I + \tilde F \tilde F^\top) L_0^\top, \quad
        \log\det J = \log\det A_0 + \log\det(I_m + \tilde F^\top \tilde F),

    .. math:: J^{-1} r = L_0^{-\top}\left(I - \tilde F (I_m + \tilde F^\top\tilde F)^{-1}
        \tilde F^\top\right) L_0^{-1} r.

    :math:`G = U A_0^{-1} U^\top` is computed once per batch, so each sample costs
    :math:`O(k^2 + D^2 K + m^3)` instead of the :math:`O(D^3)` of a dense factorisation; all
    operations are differentiable.

    Arguments:
        A0: The shared symmetric positive definite part ``[D, D]``, or a positive scalar
            ``c`` for :math:`A_0 = cI` (then nothing is :math:`O(D^3)`).
        factors: The :class:`RidgeFactors` of the per-sample part.

    Example:
        >>> U, d = torch.randn(3, 5), torch.rand(4, 3)
        >>> factor = LowRankUpdate(torch.eye(5), RidgeFactors(U, d))
        >>> J = torch.eye(5) + U.T @ torch.diag_embed(d) @ U
        >>> torch.allclose(factor.logdet(), torch.linalg.slogdet(J)[1], atol=1e-5)
        True
    """

    def __init__(self, A0: Tensor, factors: RidgeFactors):
        if A0.dim() == 0:  # A₀ = c·I: L₀ = √c·I, no factorisation
            self.L0 = A0.sqrt()
            self._logdet0 = factors.U.shape[1] * A0.log()
        else:
            self.L0 = cholesky(A0)  # [D, D]
            self._logdet0 = logdet_spd(A0, self.L0)
        self.P = self._lower(factors.U.T)  # L₀⁻¹Uᵀ [D, k]
        self.sqrt_d = factors.d.clamp_min(torch.finfo(factors.d.dtype).tiny).sqrt()  # [B, k]
        M = self.sqrt_d[:, :, None] * (self.P.T @ self.P) * self.sqrt_d[:, None, :]  # [B, k, k]
        self.E = None
        if factors.E is not None:
            B, D, K = factors.E.shape
            # one solve with the batch in the columns: broadcasting L₀ over the batch would make
            # its backward materialise a [B, D, D] gradient
            E = self._lower(factors.E.permute(1, 0, 2).reshape(D, B * K))
            self.E = E.reshape(D, B, K).permute(1, 0, 2)  # L₀⁻¹E [B, D, K]
            C = self.sqrt_d[:, :, None] * (self.P.T @ self.E)  # [B, k, K]
            M = torch.cat(
                [torch.cat([M, C], dim=-1), torch.cat([C.mT, self.E.mT @ self.E], dim=-1)],
                dim=-2,
            )
        self.M = M + torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
        self.LM = cholesky(self.M)

    def _lower(self, X: Tensor) -> Tensor:
        r""":math:`L_0^{-1} X`, ``[D, n]``."""
        if self.L0.dim() == 0:
            return X / self.L0
        return solve_triangular(self.L0, X, upper=False)

    def _upper(self, X: Tensor) -> Tensor:
        r""":math:`L_0^{-\top} X`, ``[D, n]``."""
        if self.L0.dim() == 0:
            return X / self.L0
        return solve_triangular(self.L0.T, X, upper=True)

    def logdet(self) -> Tensor:
        r""":math:`\log\det J`, ``[B]``."""
        return self._logdet0 + logdet_spd(self.M, self.LM)

    def solve(self, r: Tensor) -> Tensor:
        r""":math:`J^{-1} r`, ``[B, D] -> [B, D]``."""
        k = self.P.shape[1]
        r = self._lower(r.T).T  # L₀⁻¹r [B, D]
        Fr = self.sqrt_d * (r @ self.P)  # [B, k]
        if self.E is not None:  # (matmuls broadcast a single factored point over r's rows)
            Fr = torch.cat([Fr, (r.unsqueeze(1) @ self.E).squeeze(1)], dim=-1)
        w = torch.cholesky_solve(Fr.unsqueeze(-1), self.LM).squeeze(-1)  # [B, m]
        Fw = (self.sqrt_d * w[:, :k]) @ self.P.T
        if self.E is not None:
            Fw = Fw + (self.E @ w[:, k:].unsqueeze(-1)).squeeze(-1)
        return self._upper((r - Fw).T).T


def factorize(A0: Tensor, factors: RidgeFactors) -> LowRankUpdate | DenseCholesky:
    r"""Factorises :math:`J = A_0 + U^\top \operatorname{diag}(d)\, U + E E^\top` exactly, the
    cheaper way: through :class:`LowRankUpdate` when the rank :math:`m` is below :math:`D`,
    else by assembling :math:`J` (:math:`O(D^2 m)`) and :class:`DenseCholesky`.

    Arguments:
        A0: The shared symmetric positive definite part ``[D, D]``, or a scalar ``c`` (``cI``).
        factors: The per-sample :class:`RidgeFactors`.

    Example:
        >>> factors = RidgeFactors(torch.randn(2, 4), torch.rand(3, 2))
        >>> type(factorize(torch.eye(4), factors)).__name__
        'LowRankUpdate'
    """
    if factors.rank < factors.U.shape[1]:
        return LowRankUpdate(A0, factors)
    return DenseCholesky(factors.assemble(A0))
