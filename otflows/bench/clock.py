r"""A run's clock for the equal-time benchmarks (``otflows bench peers``, ``otflows bench
density``): it scores what the run has learnt at checkpoints on a grid of seconds, leaves
that scoring out of the run's time, and stops the run at its budget; a flow fitted against it
(:func:`timed_fit`) and the score of the best validated checkpoint by a given time (:func:`at`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from otflows.training.fit import fit_flow
from otflows.training.gaussian import FlowHistory

__all__ = ["Clock", "OutOfBudget", "at", "cpu_seconds_as_wall_clock", "timed_fit", "unit"]


class OutOfBudget(Exception):
    r"""Raised from a training callback once the run's time budget is spent."""


class Clock:
    r"""A run's seconds, with the scoring at checkpoints left out: its CPU seconds
    (``time.process_time``: every thread of the process) by default, or ``timer``'s (wall-clock
    time on a GPU). ``points`` holds ``(seconds, step, *scores)``.

    Arguments:
        budget: Seconds the run may spend.
        score: Scores what the run has learnt (a map ``[N, D] -> [N, D]`` on NumPy arrays for
            the peers benchmark, a density model for the density benchmark): a tuple of numbers
            whose first is finite while the run is sound.
        timer: The clock read, in seconds.

    Example:
        >>> clock = Clock(10.0, lambda T: (1.0, 0.9))
        >>> clock.checkpoint(0, lambda x: x)
        >>> clock.points[0][1:]
        (0, 1.0, 0.9)
    """

    GRID = tuple(m * 10.0**e for e in range(-1, 5) for m in (1, 2, 5))

    def __init__(
        self,
        budget: float,
        score: Callable[[Any], tuple],
        timer: Callable[[], float] = time.process_time,
    ):
        self.budget, self.score, self.timer = budget, score, timer
        self.points: list[tuple] = []
        self._start, self._paused = timer(), 0.0
        self._next = 0

    @property
    def seconds(self) -> float:
        r"""Seconds spent training so far."""
        return self.timer() - self._start - self._paused

    def due(self) -> bool:
        r"""Whether a checkpoint of the grid (or the budget) has been passed since the last."""
        return self._next < len(self.GRID) and self.seconds >= min(
            self.GRID[self._next], self.budget
        )

    def checkpoint(self, step: int, learnt: Any) -> None:
        r"""Scores ``learnt`` now (its time not counted); raises :class:`OutOfBudget` once the
        budget is spent or the first score is not finite (a diverged run)."""
        seconds = self.seconds
        paused_at = self.timer()
        scores = tuple(self.score(learnt))
        self.points.append((seconds, step, *scores))
        while self._next < len(self.GRID) and self.GRID[self._next] <= seconds:
            self._next += 1
        self._paused += self.timer() - paused_at
        if seconds >= self.budget or not math.isfinite(scores[0]):
            raise OutOfBudget


@contextlib.contextmanager
def cpu_seconds_as_wall_clock() -> Iterator[None]:
    r"""Within it, ``time.perf_counter`` reads the process's CPU time, so a time budget
    (``BrenierMap(max_time=)``, ``fit_flow(max_time=)``) is spent in CPU seconds, as every
    method's clock here is, whatever else shares the machine (each run has its own process).

    Example:
        >>> with cpu_seconds_as_wall_clock():
        ...     time.perf_counter is time.process_time
        True
    """
    wall = time.perf_counter
    time.perf_counter = time.process_time
    try:
        yield
    finally:
        time.perf_counter = wall


def timed_fit(
    model: Any,
    X: torch.Tensor | np.ndarray,
    budget: float,
    score: Callable[[Any], tuple],
    device: str = "cpu",
    **fit_args: Any,
) -> tuple[Clock, FlowHistory | None]:
    r""":func:`otflows.fit_flow` for ``budget`` seconds (CPU seconds on the CPU, wall-clock on
    a GPU; the cosine schedule spread over them, no early stopping), scored by ``score`` at
    checkpoints through the run and after it (the kept weights): the clock of those points
    and the history, ``None`` where the first score stopped being finite (a diverged run).

    Example:
        >>> from otflows import BrenierFlow
        >>> flow = BrenierFlow(2, "mmgn", num_blocks=1, hidden_features=4)
        >>> X = torch.randn(200, 2)
        >>> clock, history = timed_fit(flow, X, 0.5, lambda flow: (0.0,))
        >>> clock.points[-1][1] == len(history.loss)
        True
    """
    clock = Clock(math.inf, score, time.process_time if device == "cpu" else time.perf_counter)

    def callback(phase: str, step: int, flow: Any) -> None:
        if clock.due():
            clock.checkpoint(step, flow)

    try:
        with cpu_seconds_as_wall_clock() if device == "cpu" else contextlib.nullcontext():
            history = fit_flow(
                model,
                X,
                max_iter=10**8,  # the budget ends the run
                max_time=budget,
                patience=None,
                progress=False,
                callback=callback,
                **fit_args,
            )
        clock.checkpoint(len(history.loss), model)  # the kept weights
    except OutOfBudget:  # a non-finite score
        return clock, None
    return clock, history


def at(points: Sequence[Sequence], seconds: float) -> float | None:
    r"""The test NLL at ``seconds``: that of the best validated checkpoint by then (within 1 %:
    a run's last checkpoint comes just past its budget); ``None`` before the first.

    Example:
        >>> at([(0.5, 10, 2.0, 2.1), (4.0, 80, 1.8, 1.9), (9.0, 160, 1.85, 1.7)], 10)
        1.9
    """
    before = [p for p in points if p[0] <= 1.01 * seconds]
    if not before:
        return None
    if before[0][2] is None:  # the closed-form Gaussian: no validation
        return before[-1][3]
    return min(before, key=lambda p: p[2])[3]


def unit(payload: dict) -> str:
    r"""What the clock of a benchmark's JSON ``payload`` counts: ``"CPU s"``, or ``"GPU s"``
    (wall-clock) for a run with ``--device cuda``.

    Example:
        >>> unit({"args": {"budget": "300"}}), unit({"args": {"device": "cuda"}})
        ('CPU s', 'GPU s')
    """
    return "CPU s" if payload["args"].get("device", "cpu") == "cpu" else "GPU s"
