r"""The interface every objective of a map fit implements."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from otflows.transforms.brenier import BrenierTransform

__all__ = ["Density", "Objective"]


class Density(Protocol):
    r"""Anything with a differentiable ``log_prob`` ``[B, D] -> [B]`` (e.g. a fitted
    :class:`otflows.BrenierFlow`)."""

    def log_prob(self, inputs: Tensor) -> Tensor: ...


class Objective:
    r"""A loss :math:`L(T; x_s, y_t)` on minibatches ``[B, D]`` of source and target samples.

    Attributes:
        name: The objective's name in :data:`OBJECTIVES`.
        separable: Whether the loss is a mean over samples, so that data-parallel processes
            (:mod:`otflows.training.distributed`) may each take a shard of both batches; otherwise
            each gets a shard of the source batch and the whole target batch, and the loss
            gathers the shards' outputs.
        conditional: Whether it fits conditional maps :math:`T(\cdot\,; c)`: then
            :meth:`setup`, :meth:`loss` and :meth:`terms` take the rows' conditions (the
            source batch's drawn as :class:`otflows.maps.conditions.ByCondition` does) and
            :meth:`terms` are a source-side ``[B]`` and a target-side ``[B']`` term.
    """

    name: str = ""
    separable: bool = True
    conditional: bool = False

    def setup(self, T: BrenierTransform, Xs: Tensor, Xt: Tensor, ct: Tensor | None = None) -> None:
        r"""Called once with the whole data ``Xs [N, D]``, ``Xt [M, D]`` (and the target rows'
        conditions ``ct [M, C]``) before training."""

    def loss(
        self,
        T: BrenierTransform,
        xs: Tensor,
        xt: Tensor,
        index_t: Tensor,
        cs: Tensor | None = None,
        ct: Tensor | None = None,
    ) -> Tensor:
        r"""The loss (a 0-dim tensor) on ``xs [B, D]`` and ``xt = Xt[index_t] [B', D]`` (with
        their conditions ``cs [B, C]`` and ``ct [B', C]`` for a conditional map): by default
        the sum of the means of :meth:`terms`. An objective defines this or :meth:`terms`."""
        if type(self).terms is Objective.terms:
            raise NotImplementedError(f"{type(self).__name__} defines neither loss nor terms")
        return torch.stack([term.mean() for term in self.terms(T, xs, xt, index_t, cs, ct)]).sum()

    def terms(
        self,
        T: BrenierTransform,
        xs: Tensor,
        xt: Tensor,
        index_t: Tensor,
        cs: Tensor | None = None,
        ct: Tensor | None = None,
    ) -> tuple[Tensor, ...]:
        r"""The loss as per-sample terms whose means add up to it (e.g. ``[B]`` and ``[B']``),
        so that a fit's validation can tell two checkpoints apart from the noise of its
        held-out samples (:func:`otflows.training.parts.not_worse`); by default the loss alone, a
        single term ``[1]`` that carries no such noise."""
        return (self.loss(T, xs, xt, index_t, cs, ct).reshape(1),)

    @property
    def config(self) -> dict[str, Any]:
        r"""The JSON-serialisable arguments that rebuild the objective (a custom target
        density is not among them)."""
        return {"name": self.name}

    def state_dict(self) -> dict[str, Tensor]:
        r"""What a resumed fit must restore beyond :meth:`setup` (none by default)."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        r"""Restores :meth:`state_dict`."""
