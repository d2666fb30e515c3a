r"""The Brenier transform :math:`T(x) = G(x) + \gamma x`: an invertible flow step, an OT map."""

from __future__ import annotations

import warnings
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
    factorize,
    implicit_solution,
)
from otflows.nets import MonotoneGradientNet
from otflows.nets.functional import inverse_softplus
from otflows.transforms.inverse import INVERSE_RTOL, context_rows, solve

__all__ = ["BrenierTransform"]

LOGDET_METHODS = ("auto", "exact", "structured", "stochastic")
# Under "auto", a network without a factored Jacobian gets the dense exact log-det up to this
# dimension and the stochastic estimate above it.
DENSE_MAX_FEATURES = 128


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

    ``forward`` returns :math:`(T(x), \log\det J_T(x))`. ``logdet="exact"`` factors the
    batched Jacobian, :math:`O(D^3)`; ``"structured"`` uses the ridge networks' factored
    Jacobian :math:`\gamma I + V^\top V + U^\top \operatorname{diag}(d) U + E E^\top`
    (:func:`otflows.linalg.factorize`: Sylvester and Woodbury for rank :math:`m < D`);
    ``"stochastic"`` estimates it by SLQ with CP-Flow's unbiased surrogate gradient, from
    Jacobian-vector products only; ``"auto"`` takes the structured path where the network has
    one, else the dense one up to ``D = 128``. ``inverse`` solves :math:`T(x) = y` by damped
    Newton (:mod:`otflows.transforms.inverse`) to :math:`\|T(x) - y\| \le \text{rtol}\,(1 +
    \|y\|)` (:math:`10^{-10}` in float64, :math:`10^{-5}` in float32), raising
    :class:`otflows.linalg.InverseError` (or warning) where a row misses it; the solution
    carries the implicit-function gradient (:func:`otflows.linalg.implicit_solution`).

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
        return batched_jacobian(self.transport, x, *context_rows(context))[0]

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
        J, y = batched_jacobian(self.transport, x, *context_rows(context))
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
        r"""Solves :math:`T(x) = y` (:math:`T(x; c) = y`) row by row without raising
        (:func:`otflows.transforms.inverse.solve`: ``method`` ``"newton"``, ``"newton-cg"`` or
        ``"lbfgs"``; ``x0`` a warm start; ``rtol`` the residual tolerance)."""
        return solve(self, y, x0, rtol, method, context, masked_iter)

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
