r"""The optimisation step that :func:`otflows.fit_flow` and :class:`otflows.BrenierMap` share."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from otflows.training import distributed

__all__ = ["SCHEDULES", "adam", "descend"]

SCHEDULES = ("cosine", "warmup_cosine", None)


def adam(
    parameters: Iterable[nn.Parameter],
    lr: float,
    total: int,
    schedule: str | None = "cosine",
    weight_decay: float = 0.0,
    elapsed: Callable[[], float] | None = None,
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.LRScheduler | None]:
    r"""Adam and its learning-rate schedule over ``total`` steps: ``"cosine"`` anneals it to 0;
    ``"warmup_cosine"`` first raises it linearly over the first 10 % of the steps (so a good
    starting point is not thrown away by Adam's first, sign-like steps); ``None`` keeps it.

    With ``elapsed`` (the share of a time budget spent, from 0 to 1), the schedule runs on
    whichever share is further along, of the steps or of the time: a run stopped at its time
    budget ends with the learning rate annealed, as one that ran all its steps does.

    Example:
        >>> optimizer, scheduler = adam([nn.Parameter(torch.ones(2))], lr=0.1, total=10)
        >>> scheduler.get_last_lr()
        [0.1]
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0; got {lr}")
    optimizer = torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if schedule is None:
        return optimizer, None
    warmup = 0 if schedule == "cosine" else max(1, total // 10) / total

    def factor(step: int) -> float:
        done = min(1.0, max(step / total, 0.0 if elapsed is None else elapsed()))
        if done < warmup:
            return (done + 1 / total) / warmup
        return 0.5 * (1 + math.cos(math.pi * (done - warmup) / max(1 / total, 1 - warmup)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def descend(
    loss: Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    clip_grad: float | None,
    step: int,
) -> float:
    r"""One step down ``loss``: backward, optional gradient-norm clipping, the optimizer's and
    the schedule's step. Returns the loss value (averaged over processes when distributed, so
    that all agree); raises :class:`FloatingPointError` when it is not finite (training would be
    lost).

    Example:
        >>> w = nn.Parameter(torch.ones(2))
        >>> optimizer, scheduler = adam([w], lr=0.1, total=10)
        >>> descend(w.square().sum(), optimizer, scheduler, clip_grad=None, step=0)
        2.0
    """
    value = distributed.average(loss)
    if not math.isfinite(value):
        raise FloatingPointError(f"the training loss became {value} at step {step}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad is not None:
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(parameters, clip_grad)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return value
