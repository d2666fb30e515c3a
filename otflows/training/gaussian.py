r"""The Gaussian of the data in a flow's fit: the start below a few rows per dimension, and the
last candidate, kept unless the trained weights beat it significantly on held-out rows."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from nflows.flows import Flow
from torch import Tensor

from otflows.flows import BrenierFlow
from otflows.metrics import log_prob
from otflows.sizes import few_rows
from otflows.training.parts import SELECTION_SIGNIFICANCE, TrainingHistory
from otflows.transforms.marginal import MarginalSpline
from otflows.validation import MappedSamples

__all__ = [
    "COPULA",
    "GAUSSIAN",
    "FlowHistory",
    "InitialWeights",
    "gaussian_candidate",
    "significantly_lower",
    "start",
    "starts_at_gaussian",
]

# the simple starts, in words: the Gaussian of the data, and with marginal splines its copula
GAUSSIAN = "the Gaussian of the data"
COPULA = "the Gaussian copula of the data"


def start(
    flow: Flow,
    gaussian_start: bool | str,
    conditional: bool,
    shape: tuple[int, ...],
    rows: Callable[[], Tensor | MappedSamples],
) -> bool:
    r"""Whether the flow trains from the Gaussian of the training ``rows`` (``"auto"``:
    :func:`starts_at_gaussian` for an unconditional :class:`otflows.BrenierFlow`), set there
    if so; else its marginal splines, if any, are set to the rows' marginals
    (:meth:`otflows.BrenierFlow.fit_marginals`). The held-out rows stay out of the start, so
    that they judge it and the trained weights alike."""
    if gaussian_start == "auto":
        gaussian_start = (
            isinstance(flow, BrenierFlow) and not conditional and starts_at_gaussian(*shape)
        )
    elif not isinstance(gaussian_start, bool):
        raise ValueError(f"gaussian_start must be True, False or 'auto'; got {gaussian_start!r}")
    elif gaussian_start and conditional:
        raise ValueError("gaussian_start: a conditional flow starts from its own weights")
    if gaussian_start:
        flow.start_from_gaussian(rows())
    elif isinstance(flow, BrenierFlow) and not conditional:
        flow.fit_marginals(rows())
    return bool(gaussian_start)


def gaussian_candidate(
    flow: Flow,
    history: FlowHistory,
    initial: InitialWeights,
    X: Tensor | MappedSamples,
    X_train: Tensor | MappedSamples,
    X_val: Tensor,
) -> None:
    r"""The Gaussian of ``X`` as the last candidate: the flow keeps its trained weights only
    where they score *significantly* better on ``X_val`` than that Gaussian (the mean of the
    rows' NLL differences below :data:`otflows.training.parts.SELECTION_SIGNIFICANCE` standard
    errors, as a map's network must beat its simple map), else it ends at the Gaussian,
    exactly: set from its ``initial`` weights. A flow with marginal splines may end at the
    Gaussian copula of ``X`` instead (:func:`_simple_start`). The best of ~20 validations on a
    few dozen rows is often better there by chance alone and worse on new rows (scikit-learn's
    iris); a simpler model that the held-out rows cannot tell apart is kept instead.
    ``history`` records the difference and says which was kept."""
    trained = copy.deepcopy(flow.state_dict())
    trained_nll = -log_prob(flow, X_val).double()  # [M]
    simple_nll = _simple_start(flow, history, initial, X, X_train, X_val)
    history.gaussian_nll = float(simple_nll.mean())
    history.gaussian_difference = _difference(trained_nll, simple_nll)
    if significantly_lower(*history.gaussian_difference):
        flow.load_state_dict(trained)
    else:
        history.kept_gaussian = True


def _simple_start(
    flow: Flow,
    history: FlowHistory,
    initial: InitialWeights,
    X: Tensor | MappedSamples,
    X_train: Tensor | MappedSamples,
    X_val: Tensor,
) -> Tensor:
    r"""Sets the flow to its simple start fitted to ``X``, and returns its NLL on ``X_val``
    ``[M]``: the Gaussian copula where the flow has marginal splines and the copula beats the
    plain Gaussian significantly on ``X_val``, each fitted to ``X_train`` alone for that choice
    (the splines' knots have not seen the rows that judge them), else the plain Gaussian
    (named in ``history.gaussian``)."""
    marginals = any(isinstance(m, MarginalSpline) for m in flow.modules())
    if marginals:
        copula, gaussian = (_start_nll(flow, initial, X_train, X_val, m) for m in (True, False))
        marginals = significantly_lower(*_difference(copula, gaussian))
        history.gaussian = COPULA if marginals else GAUSSIAN
    return _start_nll(flow, initial, X, X_val, marginals)


def _start_nll(
    flow: Flow, initial: InitialWeights, X: Tensor | MappedSamples, X_val: Tensor, marginals: bool
) -> Tensor:
    r"""The flow set from its ``initial`` weights to the Gaussian (``marginals``: the Gaussian
    copula) of ``X``, exactly, and its NLL on ``X_val`` ``[M]``."""
    flow.load_state_dict(initial.state)
    flow.start_from_gaussian(X, marginals=marginals)
    return -log_prob(flow, X_val).double()


def _difference(nll: Tensor, baseline_nll: Tensor) -> tuple[float, float]:
    r"""The mean of the rows' NLL differences ``[M]`` and its standard error."""
    difference = nll - baseline_nll
    error = float(difference.std() / math.sqrt(len(difference))) if len(difference) > 1 else 0.0
    return float(difference.mean()), error


def significantly_lower(mean: float, error: float) -> bool:
    r"""Whether a mean difference of held-out NLLs lies below
    :data:`otflows.training.parts.SELECTION_SIGNIFICANCE` standard errors ``error``."""
    return mean < -SELECTION_SIGNIFICANCE * error


class InitialWeights:
    r"""A copy of a model's weights, saved and restored with a checkpoint (so a resumed run's
    Gaussian candidate is set from the same initial weights as the uninterrupted run's)."""

    def __init__(self, state: dict[str, Tensor]) -> None:
        self.state = state

    @classmethod
    def of(cls, model: torch.nn.Module) -> InitialWeights:
        r"""A copy of ``model``'s weights now."""
        return cls(copy.deepcopy(model.state_dict()))

    def state_dict(self) -> dict[str, Tensor]:
        return self.state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.state = state


@dataclass
class FlowHistory(TrainingHistory):
    r"""What :func:`otflows.fit_flow` records: the
    :class:`otflows.training.parts.TrainingHistory`, and

    Attributes:
        gaussian_nll: The validation NLL of the Gaussian of ``X`` (the start, or the last
            candidate; ``None`` without validation rows or for a conditional flow).
        gaussian_difference: The best trained weights' validation NLL minus the Gaussian's
            (the mean of the rows' differences) and its standard error (``None`` where the
            Gaussian was no candidate).
        kept_gaussian: Whether the flow ended at that Gaussian: no trained checkpoint scored
            significantly better.
        gaussian: What that Gaussian is, in words: :data:`GAUSSIAN`, or :data:`COPULA` for a
            flow with marginal splines whose start beat the plain Gaussian.
    """

    gaussian_nll: float | None = None
    gaussian_difference: tuple[float, float] | None = None
    kept_gaussian: bool = False
    gaussian: str = GAUSSIAN


def starts_at_gaussian(rows: int, features: int) -> bool:
    r"""Whether :func:`otflows.fit_flow` (``gaussian_start="auto"``) trains from the Gaussian
    of the data: with fewer than :data:`otflows.sizes.ROWS_PER_DIMENSION` training rows per
    dimension (:func:`otflows.sizes.few_rows`), where a flow from random weights overfits
    before it beats that Gaussian (scikit-learn's small tabular sets), rather than from
    random weights, which learn multimodal data far faster (the 2-D
    toys; the docs' fit-defaults study).

    Example:
        >>> starts_at_gaussian(1294, 64), starts_at_gaussian(1440, 2)
        (True, False)
    """
    return few_rows(rows, features)
