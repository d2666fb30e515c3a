r"""The semi-dual :math:`W_2` objective with exact convex conjugates, and the Fenchel–Young gap
that measures a map's error in its metric."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from otflows.linalg import InverseError
from otflows.maps.objectives.base import Objective
from otflows.transforms.brenier import BrenierTransform
from otflows.transforms.inverse import SOLVE_METHODS

__all__ = ["MATRIX_FREE_FEATURES", "SemiDual", "fenchel_young_gap"]

# From this many dimensions SemiDual(solver="auto") solves the conjugates' Newton directions
# matrix-free where the Jacobian would be dense: faster there, slower below (measured on the
# W2 benchmark's pairs; the docs' high-dimension page)
MATRIX_FREE_FEATURES = 128


class SemiDual(Objective):
    r"""The semi-dual :math:`W_2` objective with exact convex conjugates.

    .. math:: L(\varphi) = \mathbb E_{x\sim\mu}[\varphi(x)] + \mathbb E_{y\sim\nu}
        [\varphi^*(y)], \qquad \varphi^*(y) = \langle x^*, y\rangle - \varphi(x^*),
        \quad x^* = T^{-1}(y),

    where :math:`\varphi` is the transform's strongly convex potential
    (:meth:`BrenierTransform.potential`) and :math:`x^*` comes from its damped-Newton inverse
    (L-BFGS where Newton stalls; warm-started from the previous :math:`x^*` of the same target
    sample, first from the linearisation of :math:`T` at the source mean). By the envelope
    theorem :math:`\nabla_\theta\varphi^*(y) = -\nabla_\theta\varphi(x^*)`, so :math:`x^*` is
    held fixed in the graph. The minimum is :math:`\frac12(\mathbb E\|x\|^2 + \mathbb E\|y\|^2
    - W_2^2)`, reached by the Brenier map. Its conjugates are exact (no amortisation error), which
    Amos (2023) found best on the continuous :math:`W_2` benchmark.

    References:
        | On amortizing convex conjugates for optimal transport
        | Amos, ICLR 2023 (https://arxiv.org/abs/2210.12153)
        | Optimal transport mapping via input convex neural networks
        | Makkuva, Taghvaei, Oh, Lee, ICML 2020 (https://arxiv.org/abs/1908.10962)

    Arguments:
        rtol: The residual tolerance :math:`\|T(x^*) - y\| \le \text{rtol}\,(1 + \|y\|)` of
            the conjugates' Newton solves (``None``: the inverse's, :math:`10^{-5}` in float32,
            :math:`10^{-10}` in float64). An error :math:`\epsilon` in :math:`x^*` moves the
            conjugate's value by :math:`O(\epsilon^2)` only (it is a maximum) and its gradient
            by :math:`O(\epsilon)`, far below the minibatch noise: on the :math:`W_2`
            benchmark (d = 8) :math:`10^{-3}` needs a third fewer Newton steps than
            :math:`10^{-5}` and fits the same map.
        solver: ``"auto"``, ``"newton"``, ``"newton-cg"`` or ``"lbfgs"``
            (:meth:`BrenierTransform.solve`). Newton on the factorised Jacobian converges in a
            few steps once the map has left its linear start; matrix-free Newton
            (``"newton-cg"``) assembles no Jacobian, the faster way where the Jacobian would be
            dense and large; L-BFGS needs no Jacobian either and is cheapest while the map is
            nearly affine. ``"auto"``: ``"newton-cg"`` from :data:`MATRIX_FREE_FEATURES`
            dimensions for a transform without low-rank structure, else ``"newton"``, as
            measured on the W2 benchmark's pairs (the docs' high-dimension page).
        masked_iter: Newton's masked steps on every conjugate before its first host read
            (:func:`otflows.linalg.newton_solve`; ``None``: none on the CPU, four on a GPU).

    Attributes:
        x_star: The conjugates' warm starts :math:`x^*` of every target sample ``[M, D]``.
        unconverged: How many conjugates of the last minibatch missed ``rtol`` (a tensor on
            the data's device: reading it waits for the device).

    Example:
        >>> from otflows import MMGN, BrenierTransform
        >>> T = BrenierTransform(MMGN(2, 4), gamma=0.5)
        >>> objective = SemiDual()
        >>> Xs, Xt = torch.randn(64, 2), torch.randn(64, 2) + 3
        >>> objective.setup(T, Xs, Xt)
        >>> objective.loss(T, Xs, Xt, torch.arange(64)).shape
        torch.Size([])
    """

    name = "semidual"
    conditional = True

    def __init__(
        self, rtol: float | None = 1e-3, solver: str = "auto", masked_iter: int | None = None
    ):
        if rtol is not None and not rtol > 0:
            raise ValueError(f"rtol must be > 0; got {rtol}")
        if solver not in ("auto", *SOLVE_METHODS):
            raise ValueError(f"solver must be one of {('auto', *SOLVE_METHODS)}; got {solver!r}")
        if masked_iter is not None and (
            isinstance(masked_iter, bool) or not isinstance(masked_iter, int) or masked_iter < 0
        ):
            raise ValueError(f"masked_iter must be None or an integer >= 0; got {masked_iter!r}")
        self.rtol, self.solver, self.masked_iter = rtol, solver, masked_iter

    @torch.no_grad()
    def setup(self, T: BrenierTransform, Xs: Tensor, Xt: Tensor, ct: Tensor | None = None) -> None:
        # x* of every target sample [M, D], first from the linearisation at the source mean
        # (of T(·; c) at each target's condition c)
        mean = Xs.mean(0, keepdim=True)
        if ct is None:
            T_mean, J_mean = T.linearize(mean)
            self.x_star = torch.cat([mean + J_mean.solve(y - T_mean) for y in Xt.split(8192)])
        else:
            starts = []
            for y, c in zip(Xt.split(8192), ct.split(8192), strict=True):
                T_mean, J_mean = T.linearize(mean.expand(len(y), -1), c)
                starts.append(mean + J_mean.solve(y - T_mean))
            self.x_star = torch.cat(starts)
        self.unconverged = torch.zeros((), dtype=torch.long, device=Xt.device)

    def terms(
        self,
        T: BrenierTransform,
        xs: Tensor,
        xt: Tensor,
        index_t: Tensor,
        cs: Tensor | None = None,
        ct: Tensor | None = None,
    ) -> tuple[Tensor, ...]:
        r"""``(φ(x; c) [B], φ*(y; c) [B'])``."""
        result = T.solve(
            xt,
            self.x_star[index_t],
            self.rtol,
            self.solver_for(T),
            ct,
            masked_iter=self.masked_iter,
        )
        self.x_star[index_t] = result.x
        self.unconverged = (~result.converged).sum()
        conjugate = (result.x * xt).sum(-1) - T.potential(result.x, ct)
        return T.potential(xs, cs), conjugate

    def solver_for(self, T: BrenierTransform) -> str:
        r"""The solver of ``T``'s conjugates: :attr:`solver`, or under ``"auto"`` Newton-CG
        from :data:`MATRIX_FREE_FEATURES` dimensions where ``T``'s Jacobian would be factorised
        densely (no structure, or a rank of at least ``D``).

        Example:
            >>> from otflows import QuadraticICNN
            >>> T = BrenierTransform(QuadraticICNN(128, 64))
            >>> SemiDual().solver_for(T), SemiDual(solver="newton").solver_for(T)
            ('newton-cg', 'newton')
            >>> SemiDual().solver_for(BrenierTransform(QuadraticICNN(64, 64)))
            'newton'

        """
        if self.solver != "auto":
            return self.solver
        rank = T.net.ridge_rank  # the structured factorisation is dense from rank D on
        dense = T.method != "structured" or rank is None or rank >= T.features
        return "newton-cg" if dense and T.features >= MATRIX_FREE_FEATURES else "newton"

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self.name, "rtol": self.rtol, "solver": self.solver}
        if self.masked_iter is not None:  # else chosen by the device
            config["masked_iter"] = self.masked_iter
        return config

    def state_dict(self) -> dict[str, Tensor]:
        r"""The conjugates' warm starts :math:`x^*` ``[M, D]``."""
        return {"x_star": self.x_star}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.x_star = state["x_star"].to(self.x_star)


@torch.no_grad()
def fenchel_young_gap(
    T: BrenierTransform, x: Tensor, y: Tensor, rtol: float | None = None
) -> Tensor:
    r"""The Fenchel–Young gap of the transform's potential :math:`\varphi` on pairs
    ``x [N, D]``, ``y [N, D]``,

    .. math:: g(x, y) = \varphi(x) + \varphi^*(y) - \langle x, y\rangle
        = D_{\varphi^*}(y, T(x)) \approx \tfrac12 \langle y - T(x),\, J_T(x)^{-1} (y - T(x))\rangle
        \ \ge 0,

    ``[N]``, with the exact conjugate :math:`\varphi^*(y) = \langle x^*, y\rangle - \varphi(x^*)`,
    :math:`x^* = T^{-1}(y)` by Newton from ``x`` (:meth:`BrenierTransform.solve`: L-BFGS where it
    stalls); it vanishes only where :math:`T(x) = y`. With
    :math:`y = T^*(x)` for the known Brenier map of :math:`\nu = T^*_\#\mu`, its mean over
    :math:`x \sim \mu` is exactly the :class:`SemiDual` objective's excess over its minimum: the
    map's error in the semi-dual's own metric, which discounts errors by :math:`J_T^{-1}` —
    beside L2-UVP's uniform one.

    Arguments:
        T: The transform.
        x: Source points ``[N, D]``.
        y: Target points ``[N, D]``, e.g. :math:`T^*(x)`.
        rtol: The conjugates' residual tolerance (:meth:`BrenierTransform.solve`'s default).

    Raises:
        InverseError: If a conjugate does not converge.

    Example:
        >>> from otflows import MMGN
        >>> T = BrenierTransform(MMGN(2, 4), gamma=0.5).double()
        >>> x = torch.randn(3, 2, dtype=torch.float64)
        >>> float(fenchel_young_gap(T, x, T.transport(x)).abs().max()) < 1e-12
        True
    """
    result = T.solve(y, x, rtol)
    if not bool(result.converged.all()):
        raise InverseError(result)
    conjugate = (result.x * y).sum(-1) - T.potential(result.x)
    return T.potential(x) + conjugate - (x * y).sum(-1)
