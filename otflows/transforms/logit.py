r"""Bounded data onto the real line: the logit of the data's box, a fixed first step of a flow
of data that lie between known bounds (pixels, proportions, clipped measurements)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from nflows.transforms import Transform
from torch import Tensor

__all__ = ["ALPHA", "BoxLogit", "box_logit", "check_bounds"]

# the margin kept from the box's faces (as MAF's logit of pixels, Papamakarios et al. 2017):
# the images of the faces stay finite, at ±log((1 - ALPHA) / ALPHA) = ±2.94
ALPHA = 0.05


def box_logit(x: Tensor, low: Tensor, high: Tensor, alpha: float = ALPHA) -> tuple[Tensor, Tensor]:
    r"""The logit of ``x [B, D]`` in the box ``[low, high]`` (``[D]`` each):
    :math:`u = \alpha + (1 - 2\alpha)\,\frac{x - l}{h - l}`, :math:`y = \log u - \log(1 - u)`,
    and its log-determinant ``[B]``,
    :math:`\sum_d \log(1 - 2\alpha) - \log(h_d - l_d) - \log u_d - \log(1 - u_d)`.

    Each coordinate's map is increasing, so :math:`y = \nabla\psi(x)` for the separable convex
    :math:`\psi(x) = \sum_d \Psi_d(x_d)`: a Brenier map itself, with a diagonal Jacobian.

    Example:
        >>> x = torch.tensor([[0.0, 8.5, 17.0]])
        >>> y, logabsdet = box_logit(x, torch.zeros(3), torch.full((3,), 17.0))
        >>> [round(v, 3) for v in y[0].tolist()]
        [-2.944, 0.0, 2.944]
    """
    u = alpha + (1 - 2 * alpha) * (x - low) / (high - low)
    logabsdet = (
        torch.log1p(torch.tensor(-2 * alpha, dtype=x.dtype, device=x.device))
        - torch.log(high - low)
        - torch.log(u)
        - torch.log1p(-u)
    ).sum(-1)
    return torch.log(u) - torch.log1p(-u), logabsdet


class BoxLogit(Transform):
    r"""The fixed flow step data → :math:`\mathbb R^D` of data in the box
    :math:`[l, h]^D` (:func:`box_logit`); its inverse is the logistic function back into the
    box. The density lives in the box widened by small margins (:meth:`support`); inputs
    outside have none, and are an error naming the first such value.

    Arguments:
        features: The dimension ``D``.
        low: The lower bound of every feature (a number) or of each (``D`` numbers).
        high: The upper bound, likewise; above ``low`` in every feature.
        alpha: The margin kept from the faces (:data:`ALPHA`).

    Example:
        >>> step = BoxLogit(2, 0.0, [1.0, 10.0])
        >>> x = torch.tensor([[0.5, 5.0], [0.1, 9.0]])
        >>> y, logabsdet = step(x)
        >>> bool(torch.allclose(step.inverse(y)[0], x, atol=1e-6)), logabsdet.shape
        (True, torch.Size([2]))
    """

    def __init__(
        self,
        features: int,
        low: float | Sequence[float],
        high: float | Sequence[float],
        alpha: float = ALPHA,
    ):
        super().__init__()
        low_, high_ = (torch.as_tensor(v, dtype=torch.float64) for v in (low, high))
        for name, v in (("low", low_), ("high", high_)):
            if v.dim() > 1 or (v.dim() == 1 and len(v) != features):
                raise ValueError(
                    f"bounds: {name} must be a number or {features} numbers (one per feature); "
                    f"got shape {tuple(v.shape)}"
                )
        low_, high_ = low_.expand(features), high_.expand(features)
        if not bool(torch.isfinite(low_).all() & torch.isfinite(high_).all()):
            raise ValueError(f"bounds must be finite numbers; got low={low!r}, high={high!r}")
        if not bool((high_ > low_).all()):
            raise ValueError(
                f"bounds: high must exceed low in every feature; got low={low!r}, high={high!r}"
            )
        if not 0 < alpha < 0.5:  # at 0 the faces map to infinity
            raise ValueError(f"alpha must be in (0, 0.5); got {alpha!r}")
        self.register_buffer("low", low_.clone())
        self.register_buffer("high", high_.clone())
        self.alpha = alpha

    def support(self) -> tuple[Tensor, Tensor]:
        r"""The open box where the density lives, ``[D]`` each: the bounds widened on each side
        by :math:`\alpha / (1 - 2\alpha)` of their distance (where :math:`u` reaches 0 and 1;
        samples may fall in these margins)."""
        margin = (self.high - self.low) * self.alpha / (1 - 2 * self.alpha)
        return self.low - margin, self.high + margin

    def check(self, x: Tensor, name: str) -> None:
        r"""A :class:`ValueError` naming ``name``, the row and the column of the first value of
        ``x [B, D]`` outside :meth:`support`, where the density is zero."""
        low, high = (v.to(x) for v in self.support())
        outside = (x <= low) | (x >= high)
        if bool(outside.any()):
            row, column = (int(i) for i in outside.nonzero()[0])
            raise ValueError(
                f"{name} has a value outside the flow's bounds: row {row}, column {column} is "
                f"{float(x[row, column]):g}, outside [{float(self.low[column]):g}, "
                f"{float(self.high[column]):g}] and its margins of "
                f"{float(high[column]) - float(self.high[column]):g}"
            )

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.check(inputs, "inputs")
        return box_logit(inputs, self.low.to(inputs), self.high.to(inputs), self.alpha)

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        low, high = self.low.to(inputs), self.high.to(inputs)
        u = torch.sigmoid(inputs)
        x = low + (u - self.alpha) * (high - low) / (1 - 2 * self.alpha)
        return x, -box_logit(x, low, high, self.alpha)[1]


def check_bounds(model: torch.nn.Module, **samples: Any) -> None:
    r"""A :class:`ValueError` naming the argument, row and column of the first value of the
    ``samples`` (``name=[N, D]`` rows: tensors or in-memory arrays; others, e.g. memory-mapped
    rows, are checked as their minibatches are read) outside the support of one of
    ``model``'s :class:`BoxLogit` steps.

    Example:
        >>> from otflows import BrenierFlow
        >>> flow = BrenierFlow(2, "mmgn", hidden_features=4, bounds=(0.0, 1.0))
        >>> check_bounds(flow, X=np.array([[0.5, 0.5], [0.5, 3.0]]))
        Traceback (most recent call last):
        ...
        ValueError: X has a value outside the flow's bounds: row 1, column 1 is 3, outside ...
    """
    for step in (m for m in model.modules() if isinstance(m, BoxLogit)):
        for name, x in samples.items():
            if isinstance(x, Tensor) or (
                isinstance(x, np.ndarray) and not isinstance(x, np.memmap)
            ):
                step.check(torch.as_tensor(x), name)
