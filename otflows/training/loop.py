r"""The one training loop behind every fit in otflows: flows, OT maps, their regressions.

:func:`train` takes a model, a loss of a minibatch and a
:class:`otflows.training.samplers.Sampler` of
minibatch indices, and owns everything else: Adam and its schedule, gradient clipping, the
progress bar, validation with the best weights kept (the starting weights among them) and early
stopping, atomic checkpoints with an exact resume, a callback, and data parallelism under
``torchrun`` (:mod:`otflows.training.distributed`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from otflows.training import distributed
from otflows.training.checkpoint import FORMAT_VERSION, atomic_save, safe_load
from otflows.training.optim import adam, descend
from otflows.training.parts import (
    Checkpoint,
    Report,
    Schedule,
    TrainingHistory,
    Validation,
    not_worse,
)
from otflows.training.samplers import Sampler

__all__ = ["load_checkpoint", "train"]  # its parts: otflows.training.parts


def load_checkpoint(path: str | Path, signature: dict[str, Any], device: Any) -> dict | None:
    r"""The payload saved at ``path`` by :func:`train`, or ``None`` if there is none;
    a :class:`ValueError` names the setting where ``signature`` differs from the saved one.

    Example:
        >>> load_checkpoint("no-such-file.pt", {"kind": "fit_flow"}, "cpu") is None
        True
    """
    if not Path(path).exists():
        return None
    payload = safe_load(path, map_location=device)
    saved = payload.get("signature", {})
    for key in sorted(set(saved) | set(signature)):
        if saved.get(key) != signature.get(key):
            raise ValueError(
                f"checkpoint {path} was saved by another run: its {key} is {saved.get(key)!r}, "
                f"this run's is {signature.get(key)!r}"
            )
    return payload


def train(
    model: nn.Module,
    loss: Callable[..., Tensor],
    sampler: Sampler,
    schedule: Schedule,
    *,
    validation: Validation | None = None,
    checkpoint: Checkpoint | None = None,
    report: Report | None = None,
) -> TrainingHistory:
    r"""Minimises ``loss(*sampler.draw())`` over ``model``'s parameters for ``schedule.steps``
    steps of Adam (:func:`otflows.training.optim.adam`'s schedule over them;
    :func:`otflows.training.optim.descend`), or for ``schedule.max_time`` seconds if they run out
    first
    (the schedule then anneals over the time).

    With ``validation``, the model is scored before the first step, every
    ``validation.every`` steps and after the last; the weights it keeps (the best-scoring
    ones, the starting ones included; see :class:`Validation`) are restored at the end, and
    training stops early after ``validation.patience`` validations that keep none. Under
    ``torchrun`` the loss is wrapped in ``DistributedDataParallel``
    (:func:`otflows.training.distributed.parallel`): ``loss`` itself takes this process's shard of
    the drawn indices, and only rank 0 shows progress and writes the checkpoint.

    Arguments:
        model: The module trained in place.
        loss: The minibatch loss, a function of the indices that ``sampler`` draws.
        sampler: The minibatch indices of each step (:class:`otflows.training.samplers.Shuffled`,
            :class:`otflows.training.samplers.WithReplacement`).
        schedule: The steps, learning rate and time budget (:class:`Schedule`).
        validation: How to validate (:class:`Validation`); ``None``: never.
        checkpoint: Where to save and whence to resume (:class:`Checkpoint`).
        report: The progress bar and the callback (:class:`Report`; ``None``: a bar, no
            callback).

    Returns:
        The :class:`TrainingHistory` (also of the steps before a resume).

    Example:
        >>> w = nn.Parameter(torch.zeros(1))
        >>> model = nn.ParameterList([w])
        >>> X = torch.linspace(0, 2, 10)
        >>> from otflows.training.samplers import Shuffled
        >>> history = train(model, lambda i: (X[i] - w).square().mean(), Shuffled(10, 5, 0),
        ...                 Schedule(200, lr=0.1), report=Report(progress=False))
        >>> round(w.item(), 2)
        1.0
    """
    report = report or Report()
    budget = _Budget(schedule.max_time)
    optimizer, scheduler = adam(
        model.parameters(),
        schedule.lr,
        schedule.steps,
        schedule.kind,
        schedule.weight_decay,
        None if schedule.max_time is None else budget.elapsed,
    )
    run = _Run(model, optimizer, scheduler, sampler)
    if checkpoint is not None and checkpoint.resume:
        run.restore(checkpoint)
    run.loop(distributed.parallel(model, loss), schedule, budget, validation, checkpoint, report)
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    return run.history


class _Budget:
    r"""A loop's budget of ``max_time`` seconds (``None``: none), as the main process measures
    them, so that every process agrees: the share spent, whether it is spent, and whether
    another twentieth of it has passed (when the loop also validates, calls back and saves)."""

    def __init__(self, max_time: float | None) -> None:
        self.max_time, self.spent, self.twentieths = max_time, 0.0, 0

    def elapsed(self) -> float:
        r"""The share of the budget spent (0 without one)."""
        return 0.0 if self.max_time is None else self.spent / self.max_time

    def start(self, seconds: float) -> None:
        r"""The loop starts having spent ``seconds`` (a resumed loop: its earlier steps')."""
        self.spent = seconds
        self.twentieths = math.floor(20 * self.elapsed())

    def update(self, seconds: float) -> tuple[bool, bool]:
        r"""``seconds`` spent now: whether the budget is spent, and whether another twentieth
        of it has passed since the last update."""
        if self.max_time is None:
            return False, False
        self.spent = distributed.from_main(seconds)
        passed = math.floor(20 * self.elapsed())
        timed, self.twentieths = passed > self.twentieths, max(passed, self.twentieths)
        return self.spent >= self.max_time, timed


class _Run:
    r"""The state of one :func:`train` loop: the model, its optimiser and schedule, the
    sampler, the history, the step, and the best weights and held-out terms kept so far."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        sampler: Sampler,
    ) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.sampler = sampler
        self.history = TrainingHistory()
        self.step = 0
        self.best_state: dict[str, Tensor] | None = None
        self.best_terms: tuple[Tensor, ...] | None = None

    def loop(
        self,
        shard_loss: Callable[..., Tensor],
        schedule: Schedule,
        budget: _Budget,
        validation: Validation | None,
        checkpoint: Checkpoint | None,
        report: Report,
    ) -> None:
        r"""The steps of :func:`train` from where the run is: each a descent on a drawn
        minibatch, then, when due, a validation (and early stopping), the callback (its time
        not counted) and a checkpoint."""
        history, steps, callback = self.history, schedule.steps, report.callback
        every = report.every or (validation.every if validation is not None else 100)
        budget.start(history.seconds)
        start = time.perf_counter() - history.seconds
        self.model.train()
        if validation is not None and not history.val_step:
            self.validate(validation)
        bar = tqdm(
            total=steps,
            initial=self.step,
            disable=not report.progress or not distributed.is_main(),
            desc=report.description,
            unit="step",
        )
        while self.step < steps and not history.stopped_early and not history.out_of_time:
            history.lr.append(self.optimizer.param_groups[0]["lr"])
            batch_loss = shard_loss(*self.sampler.draw())
            value = descend(
                batch_loss, self.optimizer, self.scheduler, schedule.clip_grad, self.step
            )
            history.loss.append(value)
            self.step += 1
            step = self.step
            bar.update()
            postfix = {"loss": f"{value:.4g}"}
            history.seconds = time.perf_counter() - start
            history.out_of_time, timed = budget.update(history.seconds)
            last = step == steps or history.out_of_time
            if validation is not None and (step % validation.every == 0 or last or timed):
                self.validate(validation)
                postfix[validation.score] = f"{history.val_loss[-1]:.4g}"
                history.stopped_early = _stalled(history, validation) and not last
            if step % 10 == 0 or len(postfix) > 1:
                bar.set_postfix(postfix)
            history.seconds = time.perf_counter() - start
            last = last or history.stopped_early
            if callback is not None and (step % every == 0 or last or timed):
                callback(step)
                self.model.train()
                start = time.perf_counter() - history.seconds
            if checkpoint is not None and (step % checkpoint.every == 0 or last or timed):
                self.save(checkpoint)
        bar.close()

    def restore(self, checkpoint: Checkpoint) -> None:
        r"""The state saved at ``checkpoint.path``, where it exists (on the model's device)."""
        device = next(self.model.parameters()).device
        payload = load_checkpoint(checkpoint.path, checkpoint.signature, device)
        if payload is None:
            return
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(payload["scheduler"])
        self.sampler.load_state_dict(payload["sampler"])
        for name, obj in checkpoint.stateful.items():
            obj.load_state_dict(payload["stateful"][name])
        self.history = TrainingHistory(**payload["history"])
        self.best_state, self.step = payload["best_state"], payload["step"]
        self.best_terms = payload.get("best_terms")

    def save(self, checkpoint: Checkpoint) -> None:
        r"""The whole state, atomically, by the main process."""
        if not distributed.is_main():
            return
        atomic_save(
            {
                "format_version": FORMAT_VERSION,
                "kind": "training",
                "signature": checkpoint.signature,
                "step": self.step,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "sampler": self.sampler.state_dict(),
                "stateful": {k: v.state_dict() for k, v in checkpoint.stateful.items()},
                "history": asdict(self.history),
                "best_state": self.best_state,
                "best_terms": self.best_terms,
                "extra": checkpoint.extra(),
            },
            checkpoint.path,
        )

    def validate(self, validation: Validation) -> None:
        r"""Scores the model, logs the metrics, and keeps its weights where they are the best
        or not significantly worse than the best (:func:`not_worse`)."""
        history = self.history
        self.model.eval()
        with torch.no_grad():
            metrics = validation.metrics()
        self.model.train()
        terms = metrics[validation.score]
        if not isinstance(terms, tuple):
            terms = (torch.tensor([float(terms)]),)
        history.val_step.append(self.step)
        for name, value in metrics.items():
            if isinstance(value, tuple):
                value = sum(float(term.mean()) for term in value)
            history.val_metrics.setdefault(name, []).append(float(value))
        history.val_loss.append(history.val_metrics[validation.score][-1])
        best = history.val_loss[-1] == history.best_val_loss
        if best or (self.best_terms is not None and not_worse(terms, self.best_terms)):
            history.best_step = self.step
            self.best_state = copy.deepcopy(self.model.state_dict())
        if best:
            self.best_terms = tuple(term.detach().clone() for term in terms)


def _stalled(history: TrainingHistory, validation: Validation) -> bool:
    r"""Whether ``validation.patience`` validations have passed without newly kept weights."""
    if validation.patience is None or history.best_step is None:
        return False
    since = len(history.val_step) - 1 - history.val_step.index(history.best_step)
    return since >= validation.patience
