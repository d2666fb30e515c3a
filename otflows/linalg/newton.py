r"""Damped Newton's method with an Armijo line search, for strongly monotone equations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["InverseError", "InverseResult", "masked_iterations", "newton_solve"]

# Step lengths t, t/2, t/4, t/8 tried in one evaluation of T once t = 1 has failed: the same
# iterates as halving one length at a time, in a quarter of the (small, overhead-bound) calls.
LADDER = 4
# Damped Newton steps taken on every row, decided on the device, before the rows still active
# are solved as a smaller batch (see `masked_iterations`). Early in a semi-dual fit on the W2
# pair (the docs' GPU page) four cut the host reads per step from 75 to 19 at d = 8 and
# from 140 to 69 at d = 64, eight to 3 and 13; which pays more on a GPU is its check's to say.
MASKED_ITER = 4


@dataclass
class InverseResult:
    r"""The outcome of solving :math:`T(x) = y` row by row.

    Attributes:
        x: The solutions ``[B, D]``.
        residual: :math:`\|T(x) - y\|` per row ``[B]``.
        tolerance: The residual each row had to reach ``[B]``.
        iterations: Steps taken per row ``[B]``: Newton's, plus L-BFGS's where
            :meth:`otflows.BrenierTransform.solve` went on after a stalled Newton row.
        converged: Whether ``residual <= tolerance`` ``[B]``.
    """

    x: Tensor
    residual: Tensor
    tolerance: Tensor
    iterations: Tensor
    converged: Tensor

    def summary(self) -> str:
        r"""One line: how many rows failed and the worst residual relative to its tolerance."""
        failed = int((~self.converged).sum())
        worst = float((self.residual / self.tolerance).max())
        return (
            f"{failed} of {self.x.shape[0]} samples did not converge within "
            f"{int(self.iterations.max())} steps (worst residual/tolerance {worst:.3g})"
        )


class InverseError(RuntimeError):
    r"""Raised when some rows of an inverse did not reach their tolerance.

    Attributes:
        result: The :class:`InverseResult`, whose ``converged`` mask names the failed rows.
    """

    def __init__(self, result: InverseResult):
        super().__init__(result.summary())
        self.result = result


def newton_solve(
    T: Callable[..., Tensor],
    solve: Callable[..., Tensor],
    y: Tensor,
    x0: Tensor,
    *rows: Tensor,
    rtol: float,
    max_iter: int = 50,
    max_halvings: int = 30,
    armijo: float = 1e-4,
    masked_iter: int | None = None,
) -> InverseResult:
    r"""Solves :math:`T(x) = y` row by row with damped Newton steps.

    Each step is :math:`x \leftarrow x - t\, J_T(x)^{-1} (T(x) - y)` with the largest
    :math:`t \in \{1, \frac12, \frac14, \dots\}` that satisfies the Armijo condition
    :math:`\|T(x_t) - y\|^2 \le (1 - 2 c t) \|T(x) - y\|^2` on the merit
    :math:`\frac12\|T(x) - y\|^2`, whose directional derivative along the Newton step is
    :math:`-\|T(x) - y\|^2`. When :math:`T` is strongly monotone with a Lipschitz Jacobian
    its only stationary point is the solution, so the iteration converges from any start, and
    quadratically once full steps are accepted. A row stops when
    :math:`\|T(x) - y\| \le \text{rtol}\,(1 + \|y\|)`, or when no step length decreases the
    merit (it has reached the floating-point floor); rows are solved only while active. Once
    the full step fails, :data:`LADDER` step lengths are tried per evaluation of :math:`T`.

    Choosing the active rows, and a step length per row, reads values back to the host: on a
    GPU each read waits for the device, and each smaller batch launches its own small
    kernels. So the first ``masked_iter`` steps are taken on every row at once with no host
    read: :data:`LADDER` step lengths :math:`1, \frac12, \frac14, \frac18` are tried in one
    evaluation of :math:`T`, and a row not yet converged moves by the longest that passes the
    Armijo test, and stays put where none does (a masked update). Convergence is then read
    once, and the few rows still active go on as above.

    Arguments:
        T: The map, ``[B, D] -> [B, D]``; ``T(x, *rows)`` given ``rows``.
        solve: ``solve(x, r)`` (``solve(x, r, *rows)``) returns :math:`J_T(x)^{-1} r`,
            ``[B, D]``.
        y: The right-hand sides ``[B, D]``.
        x0: The starting points ``[B, D]``.
        rows: Other per-row arguments of ``T`` and ``solve`` (e.g. contexts ``[B, C]``),
            passed along with the rows being solved.
        rtol: The relative residual tolerance.
        max_iter: The most Newton steps per row.
        max_halvings: The most step lengths tried per Newton step.
        armijo: The Armijo constant :math:`c \in (0, \frac12)`.
        masked_iter: Masked steps on every row before the first host read (``None``:
            :func:`masked_iterations` of ``y``'s device).

    Returns:
        An :class:`InverseResult`; nothing is raised here.

    Example:
        >>> T = lambda x: x + x**3
        >>> solve = lambda x, r: r / (1 + 3 * x**2)
        >>> y = torch.tensor([[2.0], [10.0]], dtype=torch.float64)
        >>> out = newton_solve(T, solve, y, torch.zeros_like(y), rtol=1e-12)
        >>> out.x.squeeze(1), bool(out.converged.all())
        (tensor([1., 2.], dtype=torch.float64), True)
    """
    if masked_iter is None:
        masked_iter = masked_iterations(y.device)
    masked_iter = min(masked_iter, max_iter)
    with torch.no_grad():
        x = x0.clone()
        r = T(x, *rows) - y
        tolerance = rtol * (1.0 + y.norm(dim=-1))
        iterations = torch.zeros(y.shape[0], dtype=torch.long, device=y.device)
        for _ in range(masked_iter):
            x, r, moved = _masked_step(T, solve, y, x, r, tolerance, rows, armijo)
            iterations += moved.long()
        residual = r.norm(dim=-1)
        active = residual > tolerance
        for _ in range(max_iter - masked_iter):
            if not bool(active.any()):
                break
            idx = active.nonzero().squeeze(1)
            x_a, r_a, y_a = x[idx], r[idx], y[idx]
            rows_a = [row[idx] for row in rows]
            x_a, r_a, accepted = _damped_step(
                T, solve, y_a, x_a, r_a, rows_a, max_halvings, armijo
            )
            x[idx], r[idx] = x_a, r_a
            iterations[idx] += accepted.long()
            residual[idx] = r_a.norm(dim=-1)
            active[idx] = accepted & (residual[idx] > tolerance[idx])
        return InverseResult(x, residual, tolerance, iterations, residual <= tolerance)


def _damped_step(
    T: Callable[..., Tensor],
    solve: Callable[..., Tensor],
    y: Tensor,
    x: Tensor,
    r: Tensor,
    rows: list[Tensor],
    max_halvings: int,
    armijo: float,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""One damped Newton step of the rows ``x`` ``[n, D]`` (residuals ``r``): the longest
    step length :math:`1, \frac12, \frac14, \dots` passing the Armijo test, :data:`LADDER`
    lengths per evaluation of ``T`` once the full step has failed, within ``max_halvings``.
    Updates ``x`` and ``r`` in place (the caller's copies of its active rows) and returns them,
    with which rows took a step ``[n]``."""
    step = solve(x, r, *rows)
    merit = r.square().sum(-1)
    t = torch.ones_like(merit)  # each row's longest step length not yet tried
    accepted = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    tried, lengths = 0, 1  # t = 1 first, then LADDER halvings per evaluation
    while tried < max_halvings and not bool(accepted.all()):
        pending = (~accepted).nonzero().squeeze(1)
        halvings = torch.arange(lengths, dtype=t.dtype, device=t.device)
        ts = t[pending, None] * 0.5**halvings  # [n, k]
        x_t = x[pending, None] - ts[..., None] * step[pending, None]  # [n, k, D]
        rows_t = [row[pending].repeat_interleave(len(halvings), 0) for row in rows]
        r_t = T(x_t.flatten(0, 1), *rows_t).view_as(x_t) - y[pending, None]
        ok = r_t.square().sum(-1) <= (1.0 - 2.0 * armijo * ts) * merit[pending, None]
        found = ok.any(1)
        longest = ok.int().argmax(1)[found]  # the first (longest) passing length
        done = pending[found]
        x[done], r[done] = x_t[found, longest], r_t[found, longest]
        accepted[done] = True
        t[pending[~found]] = ts[~found, -1] / 2.0
        tried += lengths
        lengths = min(LADDER, max_halvings - tried)
    return x, r, accepted


def _masked_step(
    T: Callable[..., Tensor],
    solve: Callable[..., Tensor],
    y: Tensor,
    x: Tensor,
    r: Tensor,
    tolerance: Tensor,
    rows: tuple[Tensor, ...],
    armijo: float,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""One damped Newton step on every row with no host read: the :data:`LADDER` step
    lengths in one evaluation of ``T``, each row not yet within ``tolerance`` moved by the
    longest that passes the Armijo test (kept where none does). Returns the new ``x``, its
    residual ``r`` and which rows moved ``[B]``."""
    ladder = 0.5 ** torch.arange(LADDER, dtype=y.dtype, device=y.device)  # [k]
    rows_k = [row.repeat_interleave(LADDER, 0) for row in rows]
    merit = r.square().sum(-1)  # [B]
    x_t = x[:, None] - ladder[:, None] * solve(x, r, *rows)[:, None]  # [B, k, D]
    r_t = T(x_t.flatten(0, 1), *rows_k).view_as(x_t) - y[:, None]
    ok = r_t.square().sum(-1) <= (1.0 - 2.0 * armijo * ladder) * merit[:, None]
    move = (merit > tolerance.square()) & ok.any(1)
    longest = ok.int().argmax(1)[:, None, None].expand(-1, 1, x.shape[1])
    x_t, r_t = x_t.gather(1, longest)[:, 0], r_t.gather(1, longest)[:, 0]
    return torch.where(move[:, None], x_t, x), torch.where(move[:, None], r_t, r), move


def masked_iterations(device: torch.device) -> int:
    r"""The masked full steps :func:`newton_solve` takes on ``device`` before its first host
    read: :data:`MASKED_ITER` on an accelerator, where a host read stalls the device; none on
    the CPU, where reading is free and solving only the active rows saves arithmetic.

    Example:
        >>> masked_iterations(torch.device("cpu"))
        0
    """
    return 0 if device.type == "cpu" else MASKED_ITER
