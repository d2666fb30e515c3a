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
from otflows.validation import MappedSamples

__all__ = ["FlowHistory", "InitialWeights", "gaussian_candidate", "start", "starts_at_gaussian"]


def start(
    flow: Flow,
    gaussian_start: bool | str,
    conditional: bool,
    shape: tuple[int, ...],
    all_of_X: Callable[[], Tensor | MappedSamples],
) -> bool:
    r"""Whether the flow trains from the Gaussian of the data (``"auto"``:
    :func:`starts_at_gaussian` for an unconditional :class:`otflows.BrenierFlow`), set there
    if so."""
    if gaussian_start == "auto":
        gaussian_start = (
            isinstance(flow, BrenierFlow) and not conditional and starts_at_gaussian(*shape)
        )
    elif not isinstance(gaussian_start, bool):
        raise ValueError(f"gaussian_start must be True, False or 'auto'; got {gaussian_start!r}")
    elif gaussian_start and conditional:
        raise ValueError("gaussian_start: a conditional flow starts from its own weights")
    if gaussian_start:
        flow.start_from_gaussian(all_of_X())
    return bool(gaussian_start)


def gaussian_candidate(
    flow: Flow,
    history: FlowHistory,
    initial: InitialWeights,
    X: Tensor | MappedSamples | None,
    X_val: Tensor,
) -> None:
    r"""The Gaussian of ``X`` as the last candidate: the flow keeps its trained weights only
    where they score *significantly* better on ``X_val`` than that Gaussian (the mean of the
    rows' NLL differences below :data:`otflows.training.parts.SELECTION_SIGNIFICANCE` standard
    errors, as a map's network must beat its simple map), else it ends at the Gaussian,
    exactly: set from its ``initial`` weights (``X`` ``None``: they are the Gaussian start).
    The best of ~20 validations on a few dozen rows is often better there by chance alone and
    worse on new rows (scikit-learn's iris); a simpler model that the held-out rows cannot tell
    apart is kept instead. ``history`` records the difference and says which was kept."""
    trained = copy.deepcopy(flow.state_dict())
    trained_nll = -log_prob(flow, X_val).double()  # [M]
    flow.load_state_dict(initial.state)  # shrunk from them, the Gaussian is exact
    if X is not None:
        flow.start_from_gaussian(X)
    gaussian_nll = -log_prob(flow, X_val).double()  # [M]
    difference = trained_nll - gaussian_nll
    history.gaussian_nll = float(gaussian_nll.mean())
    error = float(difference.std() / math.sqrt(len(difference))) if len(difference) > 1 else 0.0
    history.gaussian_difference = (float(difference.mean()), error)
    if float(difference.mean()) < -SELECTION_SIGNIFICANCE * error:
        flow.load_state_dict(trained)
    else:
        history.kept_gaussian = True


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
    """

    gaussian_nll: float | None = None
    gaussian_difference: tuple[float, float] | None = None
    kept_gaussian: bool = False


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
