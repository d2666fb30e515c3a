r"""Maximum-likelihood training of flows."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from nflows.flows import Flow
from torch import Tensor

from otflows import distributed
from otflows.metrics import nll
from otflows.trainer import Checkpoint, Shuffled, TrainingHistory, Validation, train
from otflows.validation import MappedSamples, as_samples

__all__ = ["fit_flow"]


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
    patience: int | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    callback: Callable[[int, Flow], None] | None = None,
) -> TrainingHistory:
    r"""Fits a flow by maximum likelihood with Adam.

    Minimises :math:`-\frac1B\sum_b \log p(x_b)` over shuffled minibatches
    (:func:`otflows.trainer.train`). With ``X_val``, the exact validation NLL is measured
    before the first step, every ``eval_every`` steps and at the end, and the best weights
    (the starting ones among them) are restored when training ends.

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
        patience: Stop after this many validations without a better NLL (``None``: never).
        checkpoint: A path where the whole training state (weights, optimizer, schedule,
            shuffling, history, best weights) is saved atomically every ``checkpoint_every``
            steps and at the end.
        checkpoint_every: Steps between checkpoints (default ``eval_every``).
        resume: Continue from ``checkpoint`` when it exists; the run then ends exactly as an
            uninterrupted one with the same arguments would.
        callback: Called as ``callback(step, flow)`` every ``eval_every`` steps and at the end
            (e.g. to log a metric); its time is not counted in ``history.seconds``.

    Returns:
        The :class:`otflows.trainer.TrainingHistory`.

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
    size = distributed.world()[1]
    smallest = min(batch_size, X.shape[0] - (steps_per_epoch - 1) * batch_size)
    if smallest < size:
        raise ValueError(
            f"each of the {size} processes needs a sample of every minibatch, but a minibatch "
            f"of {smallest} occurs (N = {X.shape[0]}, batch_size = {batch_size})"
        )
    eval_every = eval_every or max(steps_per_epoch, math.ceil(total / 20))
    sampler = Shuffled(X.shape[0], batch_size, distributed.broadcast_seed(seed))
    if size > 1 and not (resume and checkpoint is not None and Path(checkpoint).exists()):
        # data-dependent initialisations (ActNorm…) on the whole first batch, as one process
        with torch.no_grad():
            flow.train().log_prob(X[sampler.order[:batch_size].to(parameter.device)])

    def loss(rows: Tensor) -> Tensor:
        # the minibatch's NLL: each process's shard contributes its share of the sum
        return -flow.log_prob(X[distributed.shard(rows).to(parameter.device)]).sum() * (
            size / len(rows)
        )

    return train(
        flow,
        loss,
        sampler,
        total,
        lr=lr,
        schedule=schedule,
        clip_grad=clip_grad,
        weight_decay=weight_decay,
        validation=None
        if X_val is None
        else Validation(lambda: {"nll": nll(flow, X_val)}, "nll", eval_every, patience),
        checkpoint=None
        if checkpoint is None
        else Checkpoint(
            checkpoint,
            checkpoint_every or eval_every,
            {"kind": "fit_flow", "steps": total, "batch_size": batch_size, "rows": X.shape[0]},
            resume=resume,
        ),
        callback=None if callback is None else lambda step: callback(step, flow),
        callback_every=eval_every,
        progress=progress,
        description="fit_flow",
    )
