r"""The Brenier transform :math:`T(x) = G(x) + \gamma x`: an invertible flow step, an OT map."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from nflows.transforms import Transform
from torch import Tensor, nn

from otflows.linalg import (
    DenseCholesky,
    InverseError,
    InverseResult,
    JacobianOperator,
    LowRankUpdate,
    RidgeFactors,
    batched_jacobian,
    conjugate_gradient,
    factorize,
    implicit_solution,
    lbfgs_minimize,
    newton_solve,
)
from otflows.nets import MonotoneGradientNet
from otflows.nets.functional import inverse_softplus

__all__ = ["BrenierTransform"]

# Residual tolerances ‖T(x) − y‖ ≤ rtol·(1 + ‖y‖) of the inverse, per dtype.
INVERSE_RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}
LOGDET_METHODS = ("auto", "exact", "structured", "stochastic")
# Under "auto", a network without a factored Jacobian gets the dense exact log-det up to this
# dimension and the stochastic estimate above it.
DENSE_MAX_FEATURES = 128
SOLVE_METHODS = ("newton", "newton-cg", "lbfgs")
# Inexact Newton ("newton-cg"): each direction solves J_T d = r by preconditioned CG to this
# relative residual. The merit then still falls along d at least (1 - η) as fast as along the
# exact direction, and the final residual is T's own, so the solution's tolerance is unchanged.
NEWTON_CG_FORCING = 0.1
# L-BFGS converges linearly: it may take this many times the inverse's Newton steps.
LBFGS_ITER = 10


class BrenierTransform(Transform):
    r"""The strongly monotone map :math:`T(x) = G(x) + \gamma x`, data to noise.

    :math:`G = \nabla\varphi` is a monotone gradient network, so :math:`T = \nabla(\varphi +
    \frac\gamma2\|x\|^2)` is the gradient of a :math:`\gamma`-strongly convex function: by
    Brenier's theorem it is the :math:`W_2`-optimal map from any :math:`\mu` to
    :math:`T_\#\mu`, it is invertible, and its Jacobian :math:`J_T = J_G + \gamma I` is
    symmetric with every eigenvalue :math:`\ge \gamma`. The network sees
    :math:`(x - \mu)/s`, a shift and an isotropic scale set from the first training batch
    (:meth:`initialize`), which keeps all of this true: :math:`T(x) = G((x - \mu)/s) +
    \gamma x` is the gradient of :math:`s\,\varphi((x - \mu)/s) + \frac\gamma2\|x\|^2`.

    ``forward`` returns :math:`(T(x), \log\det J_T(x))` with an exact log-determinant:
    ``logdet="exact"`` forms the batched Jacobian (:func:`torch.func.jacfwd`) and its Cholesky
    factor, :math:`O(D^3)` per sample; ``logdet="structured"`` uses the factored Jacobian
    :math:`\gamma I + V^\top V + U^\top \operatorname{diag}(d) U + E E^\top` of the ridge
    networks (C-MGN, M-MGN, ICGN) through :func:`otflows.linalg.factorize`,
    :math:`O(D^2 K + m^3)` per sample for rank :math:`m < D` (Sylvester and Woodbury), else
    by assembling :math:`J_T` in :math:`O(D^2 m)` without autodiff; ``"auto"`` (the default)
    takes the structured path whenever the network has one, else the dense one up to
    ``D = 128`` and ``"stochastic"`` above: the SLQ estimate (Hutchinson probes, Lanczos
    quadrature) carrying the gradient of CP-Flow's conjugate-gradient surrogate, an unbiased
    estimate of :math:`\nabla\log\det J_T`, from Jacobian-vector products only
    (:class:`otflows.linalg.JacobianOperator`). The Newton steps of the inverse solve with the
    same factorisation, or with conjugate gradients. ``inverse`` solves
    :math:`T(x) = y` by damped Newton (:func:`otflows.linalg.newton_solve`) from the
    linearisation :math:`x_0 = J_T(0)^{-1}(y - T(0))` to
    :math:`\|T(x) - y\| \le \text{rtol}\,(1 + \|y\|)` (rtol :math:`10^{-10}` in float64,
    :math:`10^{-5}` in float32) and raises :class:`otflows.linalg.InverseError` (or warns)
    when a row does not get there. When gradients are recorded, the solution carries the
    implicit-function gradient :math:`\partial x/\partial(\theta, y) = J_T^{-1}(I,
    -\partial T/\partial\theta)` (:func:`otflows.linalg.implicit_solution`), so samples can
    be differentiated; one factorisation of :math:`J_T` at the solution serves its log-det and
    that gradient.

    With a conditional network (``net.context_features = C``: ``MMGN(...,
    context_features=C)``, :class:`otflows.nets.PICNN`), :math:`T(x; c) = G(x; c) + \gamma x`
    is such a map for every context ``c``, and ``forward``, ``inverse``, :meth:`transport`,
    :meth:`potential`, :meth:`jacobian` and :meth:`solve` take the rows' ``context``
    ``[..., C]``, as nflows' conditional transforms do. ``forward`` and ``inverse`` accept any
    batch shape ``[..., D]`` and return log-determinants ``[...]``.

    Arguments:
        net: The monotone gradient network :math:`G`.
        gamma: The strong-monotonicity floor :math:`\gamma > 0`.
        learn_gamma: If ``True``, :math:`\gamma = \text{gamma} + \operatorname{softplus}(\eta)`
            with :math:`\eta` learnable, starting at :math:`\operatorname{softplus}^{-1}
            (\text{gamma})`, so that :math:`\gamma` starts at :math:`2\,\text{gamma}`.
        logdet: ``"auto"``, ``"exact"`` (dense), ``"structured"`` (both exact) or
            ``"stochastic"`` (an estimate: :func:`otflows.metrics.nll` says so).
        probes: Hutchinson probes per sample (stochastic).
        lanczos_steps: Lanczos steps of the SLQ estimate (stochastic).
        cg_rtol: Relative residual tolerance of conjugate gradients (stochastic).
        cg_max_iter: The most conjugate-gradient iterations (stochastic).
        inverse_max_iter: The most Newton steps of the inverse (and a tenth of the most L-BFGS
            iterations, by which rows go on where Newton stalls).
        on_inverse_failure: ``"raise"`` or ``"warn"`` when some row misses its tolerance.

    Example:
        >>> from otflows import MMGN
        >>> T = BrenierTransform(MMGN(2, 8), gamma=0.1)
        >>> y, logabsdet = T(torch.randn(4, 2))
        >>> x, _ = T.inverse(y)
        >>> y.shape, logabsdet.shape
        (torch.Size([4, 2]), torch.Size([4]))
        >>> T_c = BrenierTransform(MMGN(2, 8, context_features=3), gamma=0.1)
        >>> y, logabsdet = T_c(torch.randn(5, 4, 2), context=torch.randn(5, 4, 3))
        >>> y.shape, logabsdet.shape
        (torch.Size([5, 4, 2]), torch.Size([5, 4]))
    """

    def __init__(
        self,
        net: MonotoneGradientNet,
        gamma: float = 1e-2,
        learn_gamma: bool = False,
        logdet: str = "auto",
        inverse_max_iter: int = 50,
        on_inverse_failure: str = "raise",
        probes: int = 1,
        lanczos_steps: int = 30,
        cg_rtol: float = 1e-3,
        cg_max_iter: int = 200,
    ):
        super().__init__()
        if not isinstance(net, MonotoneGradientNet):
            raise TypeError(f"net must be a MonotoneGradientNet; got {type(net).__name__}")
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0 (the strong-monotonicity floor); got {gamma}")
        if logdet not in LOGDET_METHODS:
            raise ValueError(f"logdet must be one of {LOGDET_METHODS}; got {logdet!r}")
        if logdet == "structured" and net.ridge_rank is None:
            raise ValueError(
                f"logdet='structured' needs a network with a factored Jacobian; "
                f"{type(net).__name__} has none (use 'exact')"
            )
        if on_inverse_failure not in ("raise", "warn"):
            raise ValueError(
                f"on_inverse_failure must be 'raise' or 'warn'; got {on_inverse_failure!r}"
            )
        self.net = net
        self.features = net.features
        self.gamma_floor = float(gamma)
        self.eta = (
            nn.Parameter(inverse_softplus(torch.tensor(float(gamma)))) if learn_gamma else None
        )
        self.logdet = logdet
        if logdet == "auto":
            if net.ridge_rank is not None:
                logdet = "structured"
            else:
                logdet = "exact" if net.features <= DENSE_MAX_FEATURES else "stochastic"
        self.method = logdet
        self.stochastic_options: dict[str, Any] = {
            "probes": probes,
            "lanczos_steps": lanczos_steps,
            "cg_rtol": cg_rtol,
            "cg_max_iter": cg_max_iter,
        }
        self.inverse_max_iter = inverse_max_iter
        self.on_inverse_failure = on_inverse_failure
        self.register_buffer("shift", torch.zeros(net.features))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: Tensor, context: Tensor | None = None) -> None:
        r"""Data-dependent normalisation: the network sees :math:`(x - \mu)/s` with :math:`\mu`
        the mean of ``x`` ``[B, D]`` and :math:`s` its root mean per-coordinate variance (and
        standardised contexts, :meth:`MonotoneGradientNet.initialize_context`, given
        ``context`` ``[B, C]``).

        A shift and an *isotropic* scale keep :math:`T` the gradient of a convex function; the
        first training batch calls this (as ``ActNorm`` does), so a flow meets data of any
        location and scale with its networks' pre-activations of order one.
        """
        if context is not None:
            self.net.initialize_context(context)
        self.shift.copy_(x.mean(0))
        scale = x.var(0, unbiased=False).mean().sqrt()
        self.scale.copy_(scale if scale > 0 else torch.ones_like(scale))
        self.initialized.fill_(True)

    @property
    def gamma(self) -> Tensor:
        r"""The current :math:`\gamma` (a 0-dim tensor)."""
        if self.eta is None:
            return self.net.quadratic.a.new_tensor(self.gamma_floor)
        return self.gamma_floor + F.softplus(self.eta)

    def _normalize(self, x: Tensor) -> Tensor:
        return (x - self.shift) / self.scale

    def transport(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        r"""The map :math:`T(x) = G((x - \mu)/s) + \gamma x` (:math:`T(x; c)` given a
        ``context`` ``[..., C]``), ``[..., D] -> [..., D]``."""
        return self._field(self.net.gradient(self._normalize(x), context), x)

    def potential(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        r"""The strongly convex potential :math:`s\,\varphi((x - \mu)/s) +
        \frac\gamma2\|x\|^2`, ``[...]``, whose gradient is :meth:`transport`."""
        return self._potential(self.net.potential(self._normalize(x), context), x)

    def potential_and_transport(
        self, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        r""":meth:`potential` ``[B]`` and :meth:`transport` ``[B, D]`` together, in one pass
        where the network allows it."""
        phi, G = self.net.potential_and_gradient(self._normalize(x), context)
        return self._potential(phi, x), self._field(G, x)

    def _potential(self, phi: Tensor, x: Tensor) -> Tensor:
        r""":math:`s\,\varphi + \frac\gamma2\|x\|^2` from the network's :math:`\varphi` at
        :math:`(x - \mu)/s`."""
        return self.scale * phi + 0.5 * self.gamma * x.square().sum(-1)

    def _field(self, G: Tensor, x: Tensor) -> Tensor:
        r""":math:`G + \gamma x` from the network's :math:`G` at :math:`(x - \mu)/s`."""
        return G + self.gamma * x

    def jacobian(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        r"""The dense Jacobians :math:`J_T(x)` (in ``x``, given ``context`` ``[B, C]``),
        ``[B, D] -> [B, D, D]``, symmetric ⪰ γI."""
        return batched_jacobian(self.transport, x, *_rows(context))[0]

    def linearize(
        self, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, DenseCholesky | LowRankUpdate | JacobianOperator]:
        r""":math:`T(x)` ``[B, D]`` and :math:`J_T(x)` factorised, or as an operator, with
        ``logdet()`` and ``solve(r)``, by the transform's log-det :attr:`method` (given
        ``context`` ``[B, C]``, of :math:`T(\cdot\,; c)` row by row)."""
        if self.method == "stochastic":
            return self.transport(x, context), JacobianOperator(
                lambda x: self.transport(x, context), x, **self.stochastic_options
            )
        if self.method == "structured":
            # J_T = VᵀV/s + (Uᵀ diag(d) U + E Eᵀ)/s + γI, the net's factors at x̃ = (x − μ)/s
            G, f = self.net.gradient_and_factors(self._normalize(x), context)
            V = self.net.quadratic.V
            d = f.d / self.scale
            E = None if f.E is None else f.E / self.scale.sqrt()
            if V.shape[0] < self.features:  # a low-rank V joins the ridges: A₀ = γI
                U = torch.cat([V, f.U])
                d = torch.cat([(1.0 / self.scale).expand(x.shape[0], V.shape[0]), d], dim=1)
                A0 = self.gamma
            else:
                eye = torch.eye(self.features, dtype=x.dtype, device=x.device)
                U, A0 = f.U, V.T @ V / self.scale + self.gamma * eye
            return self._field(G, x), factorize(A0, RidgeFactors(U, d, E))
        J, y = batched_jacobian(self.transport, x, *_rows(context))
        return y, DenseCholesky(J)

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""``[..., D] -> (T(x) [..., D], log det J_T(x) [...])``, given ``context``
        ``[..., C]`` for a conditional network; the first training call also
        :meth:`initialize`\ s the normalisation."""
        x, c, batch = self._flatten(inputs, context)
        if self.training and not self.initialized:
            self.initialize(x, c)
        y, factor = self.linearize(x, c)
        return y.reshape(inputs.shape), factor.logdet().reshape(batch)

    def solve(
        self,
        y: Tensor,
        x0: Tensor | None = None,
        rtol: float | None = None,
        method: str = "newton",
        context: Tensor | None = None,
        masked_iter: int | None = None,
    ) -> InverseResult:
        r"""Solves :math:`T(x) = y` (:math:`T(x; c) = y`) row by row without raising; see
        :class:`InverseResult`.

        Arguments:
            y: The right-hand sides ``[B, D]``.
            x0: A warm start ``[B, D]`` (e.g. the previous solution when ``y`` moved a little);
                by default the linearisation at 0, :math:`J_T(0)^{-1}(y - T(0))`.
            rtol: The residual tolerance :math:`\|T(x) - y\| \le \text{rtol}\,(1 + \|y\|)`;
                by default the inverse's (:math:`10^{-10}` in float64, :math:`10^{-5}` in
                float32).
            method: ``"newton"`` (damped Newton on the factored Jacobian,
                :func:`otflows.linalg.newton_solve`: quadratic convergence, for tight
                tolerances; rows where no damped step decreases the residual before the step
                limit — far from the solution where :math:`T` bends sharply, or at the
                floating-point floor just above the tolerance — go on by ``"lbfgs"`` from
                there), ``"newton-cg"`` (the same damped Newton, each direction by conjugate
                gradients on Jacobian-vector products to :data:`NEWTON_CG_FORCING`,
                preconditioned by :math:`(V^\top V/s + \gamma I)^{-1}`, the map's quadratic
                part: no Jacobian is assembled or factorised, the cheaper one at large ``D``)
                or ``"lbfgs"`` (L-BFGS on the conjugate's objective
                :math:`\psi(x) - \langle x, y\rangle`, :math:`\psi` the potential,
                :func:`otflows.linalg.lbfgs_minimize`, preconditioned by :math:`J_T^{-1}` at
                the starts' mean: gradients only, no per-row factorisation; the cheaper one
                while :math:`T` is nearly affine, slower once it bends, see
                :class:`otflows.maps.objectives.SemiDual`).
            context: The rows' contexts ``[B, C]`` for a conditional network.
            masked_iter: Newton's masked steps on every row before its first host read
                (:func:`otflows.linalg.newton_solve`; ``None``: by the device).

        Example:
            >>> from otflows import MMGN
            >>> T = BrenierTransform(MMGN(3, 8), gamma=0.5).double()
            >>> y = torch.randn(4, 3, dtype=torch.float64)
            >>> result = T.solve(y, rtol=1e-8, method="lbfgs")
            >>> bool(result.converged.all()), bool(torch.allclose(T.transport(result.x), y))
            (True, True)
        """
        if method not in SOLVE_METHODS:
            raise ValueError(f"method must be one of {SOLVE_METHODS}; got {method!r}")
        rtol = INVERSE_RTOL[y.dtype] if rtol is None else rtol
        with torch.no_grad():
            if x0 is None:  # per context, or once for all rows
                zeros = y.new_zeros(1 if context is None else len(y), self.features)
                T0, J0 = self.linearize(zeros, context)
                x0 = J0.solve(y - T0)
            if method == "lbfgs":
                return self._minimize_conjugate(y, x0, rtol, context)
            direction = (
                self._cg_direction()
                if method == "newton-cg"
                else lambda x, r, *c: self.linearize(x, *c)[1].solve(r)
            )
            result = newton_solve(
                self.transport,
                direction,
                y,
                x0,
                *_rows(context),
                rtol=rtol,
                max_iter=self.inverse_max_iter,
                masked_iter=masked_iter,
            )
            # rows where no damped Newton step decreased the residual (before the step limit):
            # L-BFGS on the conjugate's convex objective goes on from there
            stalled = ~result.converged & (result.iterations < self.inverse_max_iter)
            failed = stalled.nonzero().squeeze(1)
            if len(failed):
                c = None if context is None else context[failed]
                retry = self._minimize_conjugate(y[failed], result.x[failed], rtol, c)
                result.x[failed], result.residual[failed] = retry.x, retry.residual
                result.iterations[failed] += retry.iterations
                result.converged[failed] = retry.converged
            return result

    def _cg_direction(self) -> Callable[..., Tensor]:
        r"""The Newton direction :math:`J_T(x)^{-1} r` by preconditioned CG,
        ``(x [B, D], r [B, D], *rows) -> [B, D]``: Jacobian-vector products by forward-mode
        autodiff, the preconditioner the inverse of the quadratic part :math:`V^\top V/s +
        \gamma I` (one Cholesky factor for every row and step)."""
        V = self.net.quadratic.V
        eye = torch.eye(self.features, dtype=V.dtype, device=V.device)
        L = torch.linalg.cholesky(V.T @ V / self.scale + self.gamma * eye)  # [D, D]

        def direction(x: Tensor, r: Tensor, *rows: Tensor) -> Tensor:
            context = rows[0] if rows else None
            products = lambda v: torch.func.jvp(  # noqa: E731
                lambda z: self.transport(z, context), (x,), (v,)
            )[1]
            return conjugate_gradient(
                products,
                r,
                NEWTON_CG_FORCING,
                self.features,
                precondition=lambda v: torch.cholesky_solve(v.T, L).T,
            )[0]

        return direction

    def _minimize_conjugate(
        self, y: Tensor, x0: Tensor, rtol: float, context: Tensor | None = None
    ) -> InverseResult:
        r"""L-BFGS on the conjugate's convex objective :math:`\psi(x) - \langle x, y\rangle`
        from ``x0`` (:meth:`solve`'s ``"lbfgs"``)."""

        def value_and_grad(x: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
            c = None if context is None else context[rows]
            psi, Tx = self.potential_and_transport(x, c)
            return psi - (x * y[rows]).sum(-1), Tx - y[rows]

        # the inverse Hessian's first guess: J_T⁻¹ at the starts' (and contexts') mean, shared
        c_mean = None if context is None else context.mean(0, keepdim=True)
        J_mean = DenseCholesky(self.jacobian(x0.mean(0, keepdim=True), c_mean))
        return lbfgs_minimize(
            value_and_grad,
            x0,
            rtol * (1.0 + y.norm(dim=-1)),
            max_iter=LBFGS_ITER * self.inverse_max_iter,
            precondition=J_mean.solve,
        )

    def inverse(
        self, inputs: Tensor, context: Tensor | None = None, x0: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        r"""``[..., D] -> (T⁻¹(y) [..., D], log det J_{T⁻¹}(y) [...])``, given ``context``
        ``[..., C]`` for a conditional network; ``x0`` ``[..., D]`` warm-starts Newton."""
        y, c, batch = self._flatten(inputs, context)
        result = self.solve(y, None if x0 is None else x0.reshape(y.shape), context=c)
        if not bool(result.converged.all()):
            if self.on_inverse_failure == "raise":
                raise InverseError(result)
            warnings.warn(f"BrenierTransform.inverse: {result.summary()}", stacklevel=2)
        x, slot = result.x, None
        if torch.is_grad_enabled():
            # x*(θ, y) by the implicit function theorem; the one factorisation of J_T at x*
            # gives the log-det and, in the backward, J⁻¹ of the gradient reaching x*
            x, slot = implicit_solution(x, self.transport(x, c), y)
        factor = self.linearize(x, c)[1]
        if slot is not None:
            slot.factor = factor
        logdet = -factor.logdet()
        return x.reshape(inputs.shape), logdet.reshape(batch)

    def _flatten(
        self, inputs: Tensor, context: Tensor | None
    ) -> tuple[Tensor, Tensor | None, torch.Size]:
        r"""``inputs`` ``[..., D]`` as ``[B, D]``, ``context`` ``[..., C]`` as ``[B, C]``, and
        the batch shape ``[...]``; a clear error for a wrong shape, dtype or context."""
        D, C = self.features, self.net.context_features
        if inputs.dim() < 1 or inputs.shape[-1] != D:
            raise ValueError(f"inputs must have shape [..., {D}]; got {tuple(inputs.shape)}")
        if inputs.dtype not in INVERSE_RTOL:
            raise TypeError(f"inputs must be float32 or float64; got {inputs.dtype}")
        batch = inputs.shape[:-1]
        if C is None:
            if context is not None:
                raise ValueError(
                    f"context must be None: this transform's {type(self.net).__name__} is "
                    "unconditional (build the network with context_features)"
                )
            return inputs.reshape(-1, D), None, batch
        if context is None or tuple(context.shape) != (*batch, C):
            got = None if context is None else tuple(context.shape)
            raise ValueError(
                f"context must have shape {(*batch, C)} (inputs' batch, C); got {got}"
            )
        if context.dtype != inputs.dtype:
            raise TypeError(
                f"context must have the inputs' dtype {inputs.dtype}; got {context.dtype}"
            )
        if not bool(torch.isfinite(context).all()):
            raise ValueError("context must be finite; it holds NaN or Inf")
        return inputs.reshape(-1, D), context.reshape(-1, C), batch


def _rows(context: Tensor | None) -> tuple[Tensor, ...]:
    r"""A per-row context as the extra arguments of :func:`otflows.linalg.batched_jacobian`
    and :func:`otflows.linalg.newton_solve` (none without one)."""
    return () if context is None else (context,)
