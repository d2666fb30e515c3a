r"""Minibatch samplers: the indices each training step draws (:func:`otflows.training.loop.train`),
and their state, saved with a checkpoint so that a resumed run draws what the uninterrupted one
would."""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from torch import Tensor

__all__ = ["Sampler", "Shuffled", "WithReplacement"]


class Sampler(Protocol):
    r"""Draws the minibatch indices of each step; its state makes a resumed run exact."""

    def draw(self) -> tuple[Tensor, ...]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Shuffled:
    r"""Epochs over ``n`` rows: each a fresh permutation, cut into minibatches of
    ``batch_size`` (the last may be smaller). :meth:`draw` gives ``(rows [B],)``.

    Example:
        >>> sampler = Shuffled(5, 2, seed=0)
        >>> [len(sampler.draw()[0]) for _ in range(4)]
        [2, 2, 1, 2]
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, batch_size
        self.steps_per_epoch = math.ceil(n / batch_size)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.order = torch.randperm(n, generator=self.generator)
        self.position = 0

    def draw(self) -> tuple[Tensor]:
        if self.position == self.steps_per_epoch:
            self.order, self.position = torch.randperm(self.n, generator=self.generator), 0
        start = self.position * self.batch_size
        self.position += 1
        return (self.order[start : start + self.batch_size],)

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "order": self.order,
            "position": self.position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())
        self.order, self.position = state["order"].cpu(), state["position"]


class WithReplacement:
    r"""Independent minibatches of indices drawn with replacement, one per data set:
    ``sizes[k]`` rows, ``batch_sizes[k]`` a step. :meth:`draw` gives one index tensor each.

    Example:
        >>> sampler = WithReplacement((100, 50), (8, 4), generator=torch.Generator())
        >>> [i.shape[0] for i in sampler.draw()]
        [8, 4]
    """

    def __init__(
        self, sizes: tuple[int, ...], batch_sizes: tuple[int, ...], generator: torch.Generator
    ):
        self.sizes, self.batch_sizes, self.generator = sizes, batch_sizes, generator

    def draw(self) -> tuple[Tensor, ...]:
        return tuple(
            torch.randint(n, (b,), generator=self.generator)
            for n, b in zip(self.sizes, self.batch_sizes, strict=True)
        )

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())
