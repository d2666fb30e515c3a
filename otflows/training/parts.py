r"""What :func:`otflows.training.loop.train` is given and returns: its schedule, validation,
checkpoint and report, its history, and the paired test that compares validation scores."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

__all__ = [
    "SELECTION_SIGNIFICANCE",
    "SIGNIFICANCE",
    "Checkpoint",
    "Report",
    "Schedule",
    "TrainingHistory",
    "Validation",
    "not_worse",
]

SIGNIFICANCE = 2.0  # standard errors of a paired difference that make it significant
# standard errors by which trained weights must beat a simple model on held-out rows: more than
# a paired test's two, since validation chose the weights on those same rows
SELECTION_SIGNIFICANCE = 3.0


@dataclass
class TrainingHistory:
    r"""What :func:`train` records.

    Attributes:
        loss: The training loss of each step's minibatch.
        lr: The learning rate of each step.
        val_step: The steps after which the model was validated (0: the starting weights).
        val_loss: The validation score (the one that selects the kept weights) at those steps.
        val_metrics: Every validation metric by name, one value per entry of ``val_step``.
        best_step: The step whose weights were kept, if validated (:class:`Validation`).
        stopped_early: Whether training stopped for lack of progress (``patience``).
        out_of_time: Whether training stopped at its time budget (``max_time``).
        seconds: The wall time of the training loop (without the callback's).
    """

    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_metrics: dict[str, list[float]] = field(default_factory=dict)
    best_step: int | None = None
    stopped_early: bool = False
    out_of_time: bool = False
    seconds: float = 0.0

    @property
    def best_val_loss(self) -> float | None:
        r"""The best validation score, if validated."""
        return min(self.val_loss) if self.val_loss else None

    @property
    def best_metrics(self) -> dict[str, float]:
        r"""Every validation metric of the kept weights (``{}`` if not validated).

        Example:
            >>> history = TrainingHistory(val_step=[0, 5], val_metrics={"nll": [2.0, 1.5]})
            >>> history.best_step = 5
            >>> history.best_metrics
            {'nll': 1.5}
        """
        if self.best_step is None:
            return {}
        index = self.val_step.index(self.best_step)
        return {name: values[index] for name, values in self.val_metrics.items()}


@dataclass
class Validation:
    r"""How :func:`train` validates, and which weights it keeps.

    The weights kept are those of the best score, or, when ``metrics`` gives the score as
    per-sample terms, those of the latest validation whose score is not significantly worse
    than the best (:func:`not_worse`): of checkpoints that the held-out samples cannot tell
    apart, the one trained longest (with the learning rate decayed furthest) is kept, rather
    than the one that the held-out noise favoured.

    Attributes:
        metrics: Returns the validation metrics by name (lower is better for ``score``): each
            a float, or a tuple of per-sample terms (tensors ``[n_k]``) whose means add up to
            it (:meth:`otflows.maps.objectives.Objective.terms`); called with the model in
            eval mode and without gradients.
        score: The metric that selects the kept weights and drives early stopping.
        every: Steps between validations (also after the last step, and before the first:
            the starting weights are a candidate too).
        patience: Validations without newly kept weights before training stops (``None``:
            never).
    """

    metrics: Callable[[], Mapping[str, float | tuple[Tensor, ...]]]
    score: str
    every: int
    patience: int | None = None


@dataclass
class Checkpoint:
    r"""Where and how :func:`train` saves its whole state, to be resumed exactly.

    Attributes:
        path: The file, written atomically (:func:`otflows.training.checkpoint.atomic_save`).
        every: Steps between saves (and after the last step).
        signature: What a resumed run must share with the saved one (JSON-serialisable):
            the run's settings, its phase…; a mismatch is refused.
        stateful: More objects whose ``state_dict()`` is saved and restored by name.
        extra: More plain state to save (tensors and containers), read back by the caller
            from :func:`load_checkpoint`'s payload.
        resume: Continue from ``path`` when it exists.
    """

    path: str | Path
    every: int
    signature: dict[str, Any]
    stateful: dict[str, Any] = field(default_factory=dict)
    extra: Callable[[], dict[str, Any]] = dict
    resume: bool = False


@dataclass(frozen=True)
class Schedule:
    r"""How a training loop descends: Adam's steps, learning rate and its schedule.

    Attributes:
        steps: The number of steps (the schedule's length).
        lr: Adam's peak learning rate.
        kind: ``"cosine"``, ``"warmup_cosine"`` or ``None`` (:func:`otflows.training.optim.adam`).
        clip_grad: The gradient-norm clip (``None``: none).
        weight_decay: Adam's weight decay.
        max_time: A budget of wall-clock seconds for the loop (``None``: none); the schedule
            follows whichever share is further along, of the steps or of the time, and the
            model is also validated, called back and saved each time another twentieth of
            the budget has passed (not only every so many steps).
    """

    steps: int
    lr: float
    kind: str | None = "cosine"
    clip_grad: float | None = None
    weight_decay: float = 0.0
    max_time: float | None = None

    def __post_init__(self) -> None:
        steps = self.steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"the number of steps must be a positive integer; got {steps!r}")
        if self.max_time is not None and not self.max_time > 0:
            raise ValueError(
                f"max_time must be a positive number of seconds; got {self.max_time!r}"
            )


@dataclass(frozen=True)
class Report:
    r"""What a training loop shows and calls back.

    Attributes:
        callback: Called as ``callback(step)`` every ``every`` steps and at the end; its time
            is not counted in the history's ``seconds``.
        every: Steps between callbacks (default the validation's, else 100).
        progress: Whether to show a tqdm progress bar.
        description: The progress bar's label.
    """

    callback: Callable[[int], None] | None = None
    every: int | None = None
    progress: bool = True
    description: str = "training"


def not_worse(terms: tuple[Tensor, ...], best: tuple[Tensor, ...]) -> bool:
    r"""Whether a score given by per-sample ``terms`` is not significantly worse than the
    ``best`` one on the same samples: the mean of the paired differences,
    :math:`\bar\Delta = \sum_k \operatorname{mean}(t_k - b_k)`, is at most
    :data:`SIGNIFICANCE` standard errors, :math:`\sqrt{\sum_k \operatorname{var}(t_k - b_k)
    / n_k}`. Single-value terms (no per-sample noise) compare the values. The ``best`` terms
    are compared on the device of ``terms`` (a resumed fit reads them from a checkpoint).

    Example:
        >>> best = (torch.tensor([1.0, 2.0, 3.0, 4.0]),)
        >>> not_worse((best[0] + torch.tensor([0.1, -0.1, 0.1, -0.05]),), best)
        True
        >>> not_worse((best[0] + 0.1,), best)
        False
    """
    differences = [t - b.to(t.device) for t, b in zip(terms, best, strict=True)]
    mean = sum(float(d.mean()) for d in differences)
    if any(len(d) < 2 for d in differences):
        return mean <= 0.0
    error = math.sqrt(sum(float(d.var()) / len(d) for d in differences))
    return mean <= SIGNIFICANCE * error
