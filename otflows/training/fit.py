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
    "FIT_FLOW",
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
# the BrenierFlow that `otflows fit` builds (the study's architecture)
FIT_FLOW: dict[str, Any] = {"net": "icgn", "num_blocks": 4, "hidden_features": 32}
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

    Minimises :math:`-\frac1B\sum_b \log p(x_b)` (:math:`-\frac1B\sum_b \log p(x_b \mid
    c_b)` for a conditional flow given contexts ``c``) over shuffled minibatches
    (:func:`otflows.training.loop.train`). The exact NLL of held-out samples (``X_val``, or a
    random
    ``validation_fraction`` of ``X``) is measured before the first step, every
    ``validation_interval``
    steps and at the end; training stops after ``patience`` validations without a better one,
    and the best weights (the starting ones among them) are restored when it ends. For a
    :class:`otflows.BrenierFlow`, the Gaussian fitted to ``X`` is one more candidate
    (``keep_gaussian``): the flow is set to it exactly
    (:meth:`~otflows.BrenierFlow.start_from_gaussian`) unless the best trained checkpoint scores
    significantly better on the validation rows (by three standard errors of the rows'
    differences), so the result is never worse there than that Gaussian, nor chosen over it by
    the held-out rows' noise.
    These defaults were chosen by a study on data sets they were not tuned for
    (the docs' fit-defaults study); more steps (``max_iter``) and more blocks trade time
    for quality.

    Under ``torchrun`` (a ``torch.distributed`` process group; see
    :mod:`otflows.training.distributed`)
    every process draws the same minibatches, computes the loss of its shard of each, and
    ``DistributedDataParallel`` averages the gradients: the run equals the single-process one
    up to summation order. Only rank 0 shows progress and writes the checkpoint.

    Arguments:
        flow: The flow (e.g. :class:`otflows.BrenierFlow`); trained in place.
        X: Training samples ``[N, D]``; arrays are cast to the flow's dtype. A NumPy memmap
            (``np.load(path, mmap_mode="r")``) is read one minibatch at a time, never whole
            (:class:`otflows.validation.MappedSamples`, which may also be given, named); its
            validation rows are its last ones.
        epochs: Passes over the training rows, instead of ``max_iter``.
        max_iter: The number of steps (default: 10 epochs, at least :data:`MIN_STEPS`).
        batch_size: Samples per step.
        lr: Adam's peak learning rate (default :data:`LR` of the start: 1e-2 from the
            Gaussian of ``X``, 3e-2 from the flow's weights; 1e-2 for a conditional flow).
        X_val: Validation samples ``[M, D]``; without them, ``validation_fraction`` of ``X``
            is held out.
        validation_fraction: The share of ``X`` held out when ``X_val`` is not given (at most
            :data:`HELD_OUT_ROWS` rows; 0: no validation, the last weights are kept). A tenth,
            where ``BrenierMap`` holds out a quarter: the held-out NLL scores each row on its
            own, so a tenth of a few hundred rows tells checkpoints apart, while a map's
            held-out :math:`W_2^2` compares two clouds and needs more rows.
        gaussian_start: Train from the Gaussian of ``X`` (all its rows, the held-out ones
            included; a memmap's first rows) instead of the flow's own initialisation;
            ``"auto"``: for a :class:`otflows.BrenierFlow`, when :func:`starts_at_gaussian`
            says so (few rows per dimension).
        keep_gaussian: Whether the Gaussian of ``X`` is a candidate beside the trained
            checkpoints (a :class:`otflows.BrenierFlow` with validation rows).
        random_state: Seeds the validation split and the shuffling (the flow's initialisation
            is the caller's): ``None`` (a random seed, shared by all processes), an int, or a
            NumPy ``Generator`` / ``RandomState`` (one seed is drawn from it per fit), as
            :class:`otflows.BrenierMap`'s.
        progress: Whether to show a tqdm progress bar.
        schedule: ``"cosine"`` (annealed to 0), ``"warmup_cosine"`` (raised over the first
            tenth of the steps, then annealed) or ``None`` (constant); see
            :func:`otflows.training.optim.adam`. ``"auto"``: :data:`SCHEDULE` of the start,
            ``"cosine"`` from the Gaussian of ``X`` (and for a conditional flow),
            ``"warmup_cosine"`` from the flow's weights.
        clip_grad: If given, the gradient norm is clipped to it.
        weight_decay: Adam's weight decay.
        validation_interval: Steps between validations (default: once per epoch, at most 20
            times).
        patience: Validations without a better NLL before training stops (``None``: never):
            5 here, none in ``BrenierMap``, whose default validation score keeps the latest
            weights within two standard errors of the best and so rarely stalls.
        max_time: A budget of wall-clock seconds (``None``: none): training stops when it is
            spent, with the learning-rate schedule annealed over whichever is further along,
            the steps or the time (:func:`otflows.training.loop.train`).
        checkpoint: A path where the whole training state (weights, optimizer, schedule,
            shuffling, history, best weights) is saved atomically every ``checkpoint_every``
            steps and at the end.
        checkpoint_every: Steps between checkpoints (default ``validation_interval``).
        resume: Continue from ``checkpoint`` when it exists; the run then ends exactly as an
            uninterrupted one with the same arguments would.
        callback: Called as ``callback("fit", step, flow)`` every ``validation_interval`` steps
            and at the end (e.g. to log a metric), as :meth:`otflows.BrenierMap.fit` calls
            ``callback(phase, step, estimator)``; its time is not counted in
            ``history.seconds``. A callback of two arguments ``(step, flow)`` still works for
            one release, with a :class:`DeprecationWarning`.
        c: For a conditional flow (e.g. ``BrenierFlow(..., context_features=C)``), each
            training sample's context ``[N, C]`` (as ``cs`` is ``Xs``'s in
            :meth:`otflows.BrenierMap.fit`); the held-out rows keep theirs. A conditional
            flow trains from its own weights, with no Gaussian start or candidate.
        c_val: The contexts ``[M, C]`` of ``X_val``.
        threads: CPU threads of the fit (``None``: one where a step's work is small, else
            torch's threads: :func:`otflows.training.threads.threads_for`).
        seed: The old name of ``random_state`` (deprecated).
        eval_every: The old name of ``validation_interval`` (deprecated).
        context: The old name of ``c`` (deprecated).
        context_val: The old name of ``c_val`` (deprecated).

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
    validation_interval = deprecated_name(
        "validation_interval", validation_interval, "eval_every", eval_every
    )
    c = deprecated_name("c", c, "context", context)
    c_val = deprecated_name("c_val", c_val, "context_val", context_val)
    report = _report(callback, flow)
    seed = distributed.broadcast_seed(seed_of(random_state))
    given = X_val is not None
    check_bounds(flow, X=X, X_val=X_val)
    X, X_val, c, c_val = _rows(X, X_val, c, c_val, validation_fraction, seed, spec)

    def all_of_X() -> Tensor | MappedSamples:
        # the Gaussian of all of X, its held-out rows included, is the plain Gaussian a user
        # would compare with (a memmap: its first rows); copied only when it is fitted
        return X if given or X_val is None or isinstance(X, MappedSamples) else cat([X, X_val])

    conditional = c is not None  # the Gaussian of X is not one of p(x | c)
    gaussian_start = start(flow, gaussian_start, conditional, X.shape, all_of_X)
    # a conditional flow (no Gaussian start; not studied at the larger step) as from the Gaussian
    begin = "gaussian" if gaussian_start or conditional else "random"
    lr = LR[begin] if lr is None else lr
    schedule = SCHEDULE[begin] if schedule == "auto" else schedule
    # the Gaussian of X is a candidate too: the start's weights, or set from the initial
    # weights after training
    candidate = keep_gaussian and X_val is not None and not conditional
    initial = InitialWeights.of(flow) if candidate and isinstance(flow, BrenierFlow) else None
    total, steps_per_epoch = _steps(X.shape[0], batch_size, epochs, max_iter)
    every = validation_interval or max(steps_per_epoch, math.ceil(total / 20))
    sampler = Shuffled(X.shape[0], batch_size, seed)
    if not (resume and checkpoint is not None and Path(checkpoint).exists()):
        _initialise(flow, X, c, sampler.order[:batch_size])

    def metrics() -> dict[str, float]:
        assert X_val is not None  # validation runs only with held-out rows
        return {"nll": nll(flow, X_val, context=c_val)}

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
                checkpoint,
                checkpoint_every or every,
                {"kind": "fit_flow", "steps": total, "batch_size": batch_size, "rows": X.shape[0]},
                stateful={} if initial is None else {"initial weights": initial},
                resume=resume,
            ),
            report=Report(report, every, progress, "fit_flow"),
        )
        history = FlowHistory(**vars(history))
        if initial is not None and X_val is not None:  # a Gaussian candidate needs held-out rows
            X_all = None if gaussian_start else all_of_X()  # the start is that Gaussian
            gaussian_candidate(flow, history, initial, X_all, X_val)
        elif gaussian_start and history.val_step[:1] == [0]:  # the start is that Gaussian
            history.gaussian_nll = history.val_metrics["nll"][0]
            history.kept_gaussian = history.best_step == 0
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
