r"""Maximum-likelihood training of flows."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nflows.flows import Flow
from torch import Tensor, cat

from otflows.flows import BrenierFlow
from otflows.metrics import nll
from otflows.metrics.likelihood import _log_prob
from otflows.training import distributed
from otflows.training.gaussian import (
    COPULA,
    FlowHistory,
    InitialWeights,
    gaussian_candidate,
    start,
)
from otflows.training.loop import train
from otflows.training.parts import Checkpoint, Report, Schedule, Validation
from otflows.training.samplers import Shuffled
from otflows.training.threads import fit_threads
from otflows.transforms.logit import check_bounds
from otflows.transforms.marginal import MarginalSpline
from otflows.validation import (
    MappedSamples,
    as_samples,
    check_density_data,
    deprecated_name,
    held_out_rows,
    seed_of,
    split_held_out,
    with_context,
)

__all__ = [
    "HELD_OUT_ROWS",
    "LR",
    "MIN_STEPS",
    "SCHEDULE",
    "fit_flow",
]


# The defaults of a fit, chosen by the study in benchmarks/fit_defaults_study.md:
MIN_STEPS = 4000  # the automatic budget: 10 epochs, and at least this many steps
# Adam's default peak learning rate and schedule by the start: from the Gaussian of the data
# (few rows per dimension) 1e-2 annealed by a cosine; from random weights (many rows) 3e-2 after
# a warm-up over the first tenth of the steps, which learned more on every such set of the study
# (a conditional flow, not studied so, as from the Gaussian)
LR = {"gaussian": 1e-2, "random": 3e-2}
SCHEDULE = {"gaussian": "cosine", "random": "warmup_cosine"}
# at most this many rows held out by validation_fraction: the held-out NLL costs one pass per
# row, and 10 000 rows measure it to about 0.01 nats; a map's held-out rows are fewer
# (otflows.maps.problem.HELD_OUT_ROWS), as its W2² validation is an exact EMD
HELD_OUT_ROWS = 10_000


def fit_flow(
    flow: Flow,
    X: Tensor | np.ndarray | MappedSamples,
    *,
    epochs: int | None = None,
    max_iter: int | None = None,
    batch_size: int = 128,
    lr: float | None = None,
    X_val: Tensor | np.ndarray | None = None,
    validation_fraction: float = 0.1,
    gaussian_start: bool | str = "auto",
    keep_gaussian: bool = True,
    random_state: int | np.random.Generator | np.random.RandomState | None = None,
    progress: bool = True,
    schedule: str | None = "auto",
    clip_grad: float | None = None,
    weight_decay: float = 0.0,
    validation_interval: int | None = None,
    patience: int | None = 5,
    max_time: float | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    callback: Callable[[str, int, Flow], None] | None = None,
    c: Tensor | np.ndarray | None = None,
    c_val: Tensor | np.ndarray | None = None,
    threads: int | None = None,
    seed: int | None = None,
    eval_every: int | None = None,
    context: Tensor | np.ndarray | None = None,
    context_val: Tensor | np.ndarray | None = None,
) -> FlowHistory:
    r"""Fits a flow by maximum likelihood with Adam.

    Minimises :math:`-\frac1B\sum_b \log p(x_b)` (:math:`\log p(x_b \mid c_b)` given contexts
    ``c``) over shuffled minibatches (:func:`otflows.training.loop.train`), validating the exact
    NLL of held-out rows and keeping the best weights. A :class:`otflows.BrenierFlow` starts at
    the Gaussian of ``X`` where rows per dimension are few, and ends at that Gaussian unless its
    best weights beat it on the held-out rows by three standard errors. Under ``torchrun``
    (:mod:`otflows.training.distributed`) the run equals the single-process one up to summation
    order. The docs' flows guide and fit-defaults study give the reasons for each default.

    Arguments:
        flow: The flow; trained in place.
        X: Training samples ``[N, D]`` (arrays cast to the flow's dtype; a NumPy memmap or
            :class:`otflows.validation.MappedSamples` is read a minibatch at a time).
        epochs: Passes over the training rows, instead of ``max_iter``.
        max_iter: Steps (default: 10 epochs, at least :data:`MIN_STEPS`).
        batch_size: Rows per step.
        lr: Adam's peak rate (default :data:`LR` of the start: 1e-2 from the Gaussian, 3e-2 from
            random weights; 1e-2 for a conditional flow).
        X_val: Validation samples ``[M, D]`` (else ``validation_fraction`` of ``X``).
        validation_fraction: The share of ``X`` held out (at most :data:`HELD_OUT_ROWS`; 0:
            none). A tenth: the NLL scores each row alone, where ``BrenierMap``'s held-out
            :math:`W_2^2` compares two clouds and holds out a quarter.
        gaussian_start: Train from the Gaussian of ``X``; ``"auto"``: :func:`starts_at_gaussian`.
        keep_gaussian: Whether the Gaussian of ``X`` is a last candidate.
        random_state: Seeds the split and the shuffling (int, NumPy generator or ``None``).
        progress: Whether to show a progress bar.
        schedule: ``"cosine"``, ``"warmup_cosine"`` or ``None`` (constant); ``"auto"``:
            :data:`SCHEDULE` of the start.
        clip_grad: The gradient-norm clip. weight_decay: Adam's weight decay.
        validation_interval: Steps between validations (default: an epoch, at most 20 times).
        patience: Validations without a better NLL before stopping (``None``: never);
            ``BrenierMap`` has none, as its score keeps the latest weights within two standard
            errors of the best and so rarely stalls.
        max_time: Wall-clock seconds; the schedule anneals over steps or time.
        checkpoint: A file for the whole training state, saved atomically.
        checkpoint_every: Steps between checkpoints (default ``validation_interval``).
        resume: Continue from ``checkpoint``, ending as an uninterrupted run would.
        callback: Called as ``callback("fit", step, flow)`` at each validation and the end.
        c: The training rows' contexts ``[N, C]`` of a conditional flow. c_val: ``X_val``'s.
        threads: CPU threads (``None``: :func:`otflows.training.threads.threads_for`).
        seed, eval_every, context, context_val: The old names of ``random_state``,
            ``validation_interval``, ``c`` and ``c_val`` (deprecated).

    Returns:
        The :class:`FlowHistory`: the training history, and whether the Gaussian was kept.

    Example:
        >>> from otflows import BrenierFlow
        >>> flow = BrenierFlow(2, hidden_features=8)
        >>> X = np.random.default_rng(0).normal(size=(256, 2))
        >>> history = fit_flow(flow, X, max_iter=5, progress=False)
        >>> len(history.loss), history.best_step is not None
        (5, True)
    """
    parameter = next(flow.parameters())
    spec = dict(
        features=getattr(flow, "features", None), dtype=parameter.dtype, device=parameter.device
    )
    _check_options(epochs, max_iter, batch_size, validation_fraction)
    random_state = deprecated_name("random_state", random_state, "seed", seed)
    every = deprecated_name("validation_interval", validation_interval, "eval_every", eval_every)
    c = deprecated_name("c", c, "context", context)
    c_val = deprecated_name("c_val", c_val, "context_val", context_val)
    report = _report(callback, flow)
    seed = distributed.broadcast_seed(seed_of(random_state))
    check_bounds(flow, X=X, X_val=X_val)
    start = _Start(flow, *_rows(X, X_val, c, c_val, validation_fraction, seed, spec), X_val)
    X, X_val, c, c_val = start.X, start.X_val, start.c, start.c_val
    at_gaussian = start.begin(gaussian_start)
    lr = LR[start.kind] if lr is None else lr
    schedule = SCHEDULE[start.kind] if schedule == "auto" else schedule
    initial = start.candidate(keep_gaussian)
    total, steps_per_epoch = _steps(X.shape[0], batch_size, epochs, max_iter)
    every = every or max(steps_per_epoch, math.ceil(total / 20))
    sampler = Shuffled(X.shape[0], batch_size, seed)
    if not (resume and checkpoint is not None and Path(checkpoint).exists()):
        _initialise(flow, X, c, sampler.order[:batch_size])

    def metrics() -> dict[str, float]:
        assert X_val is not None  # validation runs only with held-out rows
        return {"nll": nll(flow, X_val, context=c_val)}

    signature = {"kind": "fit_flow", "steps": total, "batch_size": batch_size, "rows": X.shape[0]}
    saves = {} if initial is None else {"initial weights": initial}
    work = sum(p.numel() for p in flow.parameters()) * batch_size
    with fit_threads(work, threads, spec["device"]):
        history = train(
            flow,
            _nll_loss(flow, X, c),
            sampler,
            Schedule(total, lr, schedule, clip_grad, weight_decay, max_time),
            validation=None if X_val is None else Validation(metrics, "nll", every, patience),
            checkpoint=None
            if checkpoint is None
            else Checkpoint(
                checkpoint, checkpoint_every or every, signature, saves, resume=resume
            ),
            report=Report(report, every, progress, "fit_flow"),
        )
        return start.finish(FlowHistory(**vars(history)), initial, at_gaussian)


class _Start:
    r"""Where :func:`fit_flow` starts and what it may end at: the Gaussian of the data or the
    flow's own weights, and the Gaussian as the last candidate."""

    def __init__(
        self,
        flow: Flow,
        X: Tensor | MappedSamples,
        X_val: Tensor | None,
        c: Tensor | None,
        c_val: Tensor | None,
        given: Any,
    ) -> None:
        self.flow, self.X, self.X_val, self.c, self.c_val = flow, X, X_val, c, c_val
        self.given = given is not None
        self.conditional = c is not None  # the Gaussian of X is not one of p(x | c)
        self.kind = "random"

    def all_of_X(self) -> Tensor | MappedSamples:
        r"""The rows whose Gaussian is the last candidate: all of ``X``, its held-out rows
        included (the plain Gaussian a user would compare with; a memmap's first rows), copied
        only when it is fitted. The start is fitted to the training rows alone."""
        X, X_val = self.X, self.X_val
        if self.given or X_val is None or isinstance(X, MappedSamples):
            return X
        return cat([X, X_val])

    def begin(self, gaussian_start: bool | str) -> bool:
        r"""Whether the flow trains from the Gaussian of the data, set there if so;
        :attr:`kind` names the start whose learning rate and schedule apply (a conditional
        flow, not studied at the larger step, as from the Gaussian)."""
        at_gaussian = start(
            self.flow, gaussian_start, self.conditional, self.X.shape, lambda: self.X
        )
        self.kind = "gaussian" if at_gaussian or self.conditional else "random"
        return at_gaussian

    def candidate(self, keep_gaussian: bool) -> InitialWeights | None:
        r"""The initial weights from which the Gaussian candidate is set after training
        (the start's weights, or set from them), where there is one."""
        wanted = keep_gaussian and self.X_val is not None and not self.conditional
        return (
            InitialWeights.of(self.flow) if wanted and isinstance(self.flow, BrenierFlow) else None
        )

    def finish(
        self, history: FlowHistory, initial: InitialWeights | None, at_gaussian: bool
    ) -> FlowHistory:
        r"""The history, with the flow at the Gaussian where that is kept."""
        if initial is not None and self.X_val is not None:
            gaussian_candidate(self.flow, history, initial, self.all_of_X(), self.X, self.X_val)
        elif at_gaussian and history.val_step[:1] == [0]:  # the start is that Gaussian
            history.gaussian_nll = history.val_metrics["nll"][0]
            history.kept_gaussian = history.best_step == 0
            if any(isinstance(m, MarginalSpline) for m in self.flow.modules()):
                history.gaussian = COPULA
        return history


def _check_options(
    epochs: int | None, max_iter: int | None, batch_size: int, validation_fraction: float
) -> None:
    r"""One clear error for the first of :func:`fit_flow`'s options it cannot take."""
    if epochs is not None and max_iter is not None:
        raise ValueError("give either epochs or max_iter, not both")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1); got {validation_fraction!r}")


def _report(callback: Callable[..., None] | None, flow: Flow) -> Callable[[int], None] | None:
    r"""The trainer's report of a step: ``callback("fit", step, flow)``, or a two-argument
    callback's ``callback(step, flow)`` with a :class:`DeprecationWarning`."""
    if callback is None:
        return None
    try:
        positional = [
            p
            for p in inspect.signature(callback).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):  # a builtin without a signature: the current form
        positional = []
    if len(positional) == 2 and all(p.kind != p.VAR_POSITIONAL for p in positional):
        warnings.warn(
            "callback(step, flow) is now called callback(phase, step, flow), as BrenierMap's; "
            "the two-argument form will be removed in the next release",
            DeprecationWarning,
            stacklevel=3,
        )
        return lambda step: callback(step, flow)
    return lambda step: callback("fit", step, flow)


def _initialise(
    flow: Flow, X: Tensor | MappedSamples, context: Tensor | None, first: Tensor
) -> None:
    r"""Under ``torchrun``, the flow's data-dependent initialisations (ActNorm…) on the whole
    first minibatch ``first``, as one process would (a single process initialises on its
    first training call)."""
    if distributed.world()[1] == 1:
        return
    with torch.no_grad():
        first = first.to(next(flow.parameters()).device)
        _log_prob(flow.train(), X[first], None if context is None else context[first])


def _nll_loss(
    flow: Flow, X: Tensor | MappedSamples, context: Tensor | None
) -> Callable[[Tensor], Tensor]:
    r"""The minibatch loss of maximum likelihood: the NLL of the rows drawn, each process's
    shard contributing its share of the sum."""
    device, size = next(flow.parameters()).device, distributed.world()[1]

    def loss(rows: Tensor) -> Tensor:
        shard = distributed.shard(rows).to(device)
        c = None if context is None else context[shard]
        return -_log_prob(flow, X[shard], c).sum() * (size / len(rows))

    return loss


def _rows(
    X: Tensor | np.ndarray | MappedSamples,
    X_val: Tensor | np.ndarray | None,
    c: Tensor | np.ndarray | None,
    c_val: Tensor | np.ndarray | None,
    fraction: float,
    seed: int,
    spec: dict,
) -> tuple[Tensor | MappedSamples, Tensor | None, Tensor | None, Tensor | None]:
    r"""The training rows (a :class:`MappedSamples` for a memmap), the held-out rows (``X_val``,
    or ``fraction`` of ``X``: a memmap's last rows, an array's random ones) and both's
    contexts."""
    generator = torch.Generator().manual_seed(seed)
    options: dict[str, Any] = {"max_rows": HELD_OUT_ROWS, "advice": ", X_val,"} | spec
    if c is not None:
        if isinstance(X, np.memmap | MappedSamples):
            raise ValueError("c: fit_flow takes contexts with X in memory, not a memmap")
        X, c = with_context(X, c, "X", "c", **spec)
        check_density_data(X, "X")
        return split_held_out(X, c, X_val, c_val, fraction, generator, **options)
    if c_val is not None:
        raise ValueError("c_val needs c (the training rows' contexts)")
    if isinstance(X, np.memmap):
        X = MappedSamples(X, "X", **spec)  # checks the shape before any row is read
    if not isinstance(X, MappedSamples):
        X = check_density_data(as_samples(X, "X", **spec), "X")
        return split_held_out(X, None, X_val, None, fraction, generator, **options)
    if X_val is not None:
        return X, as_samples(X_val, "X_val", **spec), None, None
    rows, n = X.shape[0], 0
    if fraction > 0:
        n = held_out_rows(rows, X.name, fraction, max_rows=HELD_OUT_ROWS, advice=", X_val,")
        X_val = as_samples(np.asarray(X.X[rows - n :]), f"{X.name}'s last rows", **spec)
    return MappedSamples(X.X[: rows - n], X.name, **spec), X_val, None, None


def _steps(
    rows: int, batch_size: int, epochs: int | None, max_iter: int | None
) -> tuple[int, int]:
    r"""The fit's steps (``max_iter``, ``epochs`` of ``rows``, else 10 epochs and at least
    :data:`MIN_STEPS`) and the steps per epoch; an error where a process of a distributed run
    would get no row of some minibatch."""
    steps_per_epoch = math.ceil(rows / batch_size)
    if max_iter is not None:
        total = max_iter
    elif epochs is not None:
        total = steps_per_epoch * epochs
    else:
        total = max(MIN_STEPS, 10 * steps_per_epoch)
    if total < 1:
        raise ValueError(f"the number of steps must be >= 1; got {total}")
    size = distributed.world()[1]
    smallest = min(batch_size, rows - (steps_per_epoch - 1) * batch_size)
    if smallest < size:
        raise ValueError(
            f"each of the {size} processes needs a sample of every minibatch, but a minibatch "
            f"of {smallest} occurs (N = {rows}, batch_size = {batch_size})"
        )
    return total, steps_per_epoch
