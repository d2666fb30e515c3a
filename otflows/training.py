r"""Maximum-likelihood training of flows."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from nflows.flows import Flow
from torch import Tensor
from tqdm import tqdm

from otflows import distributed
from otflows.checkpoint import FORMAT_VERSION, atomic_save, safe_load
from otflows.metrics import nll
from otflows.optim import adam, descend
from otflows.validation import MappedSamples, as_samples

__all__ = ["TrainingHistory", "fit_flow"]


@dataclass
class TrainingHistory:
    r"""What :func:`fit_flow` records.

    Attributes:
        loss: The training NLL (nats/sample) of each step's minibatch.
        lr: The learning rate of each step.
        val_step: The steps after which the validation NLL was measured.
        val_loss: The validation NLL (exact, eval mode) at those steps.
        best_step: The step whose weights were kept (the best validation NLL), if validated.
        seconds: The wall time of the training loop.
    """

    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_step: int | None = None
    seconds: float = 0.0

    @property
    def best_val_loss(self) -> float | None:
        r"""The best validation NLL, if validated."""
        return min(self.val_loss) if self.val_loss else None


def fit_flow(
    flow: Flow,
    X: Tensor | np.ndarray,
    *,
    epochs: int | None = None,
    max_iter: int | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    X_val: Tensor | np.ndarray | None = None,
    seed: int | None = None,
    progress: bool = True,
    schedule: str | None = "cosine",
    clip_grad: float | None = None,
    weight_decay: float = 0.0,
    eval_every: int | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    callback: Callable[[int, Flow], None] | None = None,
) -> TrainingHistory:
    r"""Fits a flow by maximum likelihood with Adam.

    Minimises :math:`-\frac1B\sum_b \log p(x_b)` over shuffled minibatches. With ``X_val``,
    the exact validation NLL is measured every ``eval_every`` steps and at the end, and the
    best weights are restored when training ends.

    Under ``torchrun`` (a ``torch.distributed`` process group; see :mod:`otflows.distributed`)
    every process draws the same minibatches, computes the loss of its shard of each, and
    ``DistributedDataParallel`` averages the gradients: the run equals the single-process one
    up to summation order. Only rank 0 shows progress and writes the checkpoint.

    Arguments:
        flow: The flow (e.g. :class:`otflows.BrenierFlow`); trained in place.
        X: Training samples ``[N, D]``; arrays are cast to the flow's dtype. A NumPy memmap
            (``np.load(path, mmap_mode="r")``) is read one minibatch at a time, never whole
            (:class:`otflows.validation.MappedSamples`).
        epochs: Passes over ``X`` (default 10 when ``max_iter`` is not given).
        max_iter: The number of steps, instead of ``epochs``.
        batch_size: Samples per step.
        lr: Adam's learning rate (the peak of the cosine schedule).
        X_val: Validation samples ``[M, D]``.
        seed: Seeds the shuffling (the flow's initialisation is the caller's); without it,
            a random seed (shared by all processes).
        progress: Whether to show a tqdm progress bar.
        schedule: ``"cosine"`` (annealed to 0), ``"warmup_cosine"`` or ``None`` (constant);
            see :func:`otflows.optim.adam`.
        clip_grad: If given, the gradient norm is clipped to it.
        weight_decay: Adam's weight decay.
        eval_every: Steps between validations (default: once per epoch, at most 20 times).
        checkpoint: A path where the whole training state (weights, optimizer, schedule,
            shuffling, history, best weights) is saved atomically every ``checkpoint_every``
            steps and at the end.
        checkpoint_every: Steps between checkpoints (default ``eval_every``).
        resume: Continue from ``checkpoint`` when it exists; the run then ends exactly as an
            uninterrupted one with the same arguments would.
        callback: Called as ``callback(step, flow)`` every ``eval_every`` steps and at the end
            (e.g. to log a metric); its time is not counted in ``history.seconds``.

    Returns:
        The :class:`TrainingHistory`.

    Example:
        >>> from otflows import BrenierFlow
        >>> flow = BrenierFlow(2, hidden_features=8)
        >>> X = np.random.default_rng(0).normal(size=(256, 2))
        >>> history = fit_flow(flow, X, max_iter=5, X_val=X[:64], progress=False)
        >>> len(history.loss), history.best_step is not None
        (5, True)
    """
    parameter = next(flow.parameters())
    spec = dict(
        features=getattr(flow, "features", None), dtype=parameter.dtype, device=parameter.device
    )
    X = MappedSamples(X, "X", **spec) if isinstance(X, np.memmap) else as_samples(X, "X", **spec)
    if X_val is not None:
        X_val = as_samples(
            X_val, "X_val", features=X.shape[1], dtype=parameter.dtype, device=parameter.device
        )
    if epochs is not None and max_iter is not None:
        raise ValueError("give either epochs or max_iter, not both")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    steps_per_epoch = math.ceil(X.shape[0] / batch_size)
    total = max_iter if max_iter is not None else steps_per_epoch * (epochs or 10)
    if total < 1:
        raise ValueError(f"the number of steps must be >= 1; got {total}")
    rank, size = distributed.world()
    smallest = min(batch_size, X.shape[0] - (steps_per_epoch - 1) * batch_size)
    if smallest < size:
        raise ValueError(
            f"each of the {size} processes needs a sample of every minibatch, but a minibatch "
            f"of {smallest} occurs (N = {X.shape[0]}, batch_size = {batch_size})"
        )
    eval_every = eval_every or max(steps_per_epoch, math.ceil(total / 20))

    generator = torch.Generator(device="cpu")
    generator.manual_seed(distributed.broadcast_seed(seed))
    optimizer, scheduler = adam(flow.parameters(), lr, total, schedule, weight_decay)
    history = TrainingHistory()
    best_state = None
    step, order = 0, None
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = safe_load(checkpoint, map_location=parameter.device)
        if state.get("kind") != "fit_flow" or state["total"] != total:
            raise ValueError(
                f"checkpoint {checkpoint} is not a fit_flow checkpoint of a {total}-step run"
            )
        flow.load_state_dict(state["flow"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"].cpu())
        history = TrainingHistory(**state["history"])
        best_state = state["best_state"]
        step, order = state["step"], state["order"].cpu()
    checkpoint_every = checkpoint_every or eval_every
    if order is None:
        order = torch.randperm(X.shape[0], generator=generator)
        if size > 1:  # data-dependent initialisations (ActNorm…) on the whole first batch
            flow.train().log_prob(X[order[:batch_size].to(parameter.device)])
    # the minibatch's NLL: each process's shard contributes its share of the sum
    loss = distributed.parallel(flow, lambda x, rows: -flow.log_prob(x).sum() * (size / rows))

    def save() -> None:
        atomic_save(
            {
                "format_version": FORMAT_VERSION,
                "kind": "fit_flow",
                "total": total,
                "step": step,
                "flow": flow.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": None if scheduler is None else scheduler.state_dict(),
                "generator": generator.get_state(),
                "order": order,
                "history": asdict(history),
                "best_state": best_state,
            },
            checkpoint,
        )

    start = time.perf_counter() - history.seconds
    flow.train()
    bar = tqdm(
        total=total,
        initial=step,
        disable=not progress or rank > 0,
        desc="fit_flow",
        unit="step",
    )
    while step < total:
        position = step % steps_per_epoch
        if position == 0 and step > 0:
            order = torch.randperm(X.shape[0], generator=generator)
        rows = order[position * batch_size : (position + 1) * batch_size]
        history.lr.append(optimizer.param_groups[0]["lr"])
        batch = X[distributed.shard(rows).to(parameter.device)]
        value = descend(loss(batch, len(rows)), optimizer, scheduler, clip_grad, step)
        history.loss.append(value)
        step += 1
        bar.update()
        if X_val is not None and (step % eval_every == 0 or step == total):
            history.val_step.append(step)
            history.val_loss.append(nll(flow, X_val))
            if history.val_loss[-1] == history.best_val_loss:
                history.best_step = step
                best_state = copy.deepcopy(flow.state_dict())
            bar.set_postfix(loss=f"{value:.4f}", val=f"{history.val_loss[-1]:.4f}")
        elif step % 10 == 0:
            bar.set_postfix(loss=f"{value:.4f}")
        history.seconds = time.perf_counter() - start
        if callback is not None and (step % eval_every == 0 or step == total):
            callback(step, flow)
            flow.train()
            start = time.perf_counter() - history.seconds
        if checkpoint is not None and (step % checkpoint_every == 0 or step == total):
            if rank == 0:
                save()
    bar.close()
    if best_state is not None:
        flow.load_state_dict(best_state)
    return history
