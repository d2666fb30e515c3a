r"""Training: the loop (:mod:`~otflows.training.loop`), fitting a flow by maximum likelihood
(:mod:`~otflows.training.fit`), the optimiser (:mod:`~otflows.training.optim`), minibatch
samplers, checkpoints, ``torchrun`` processes and CPU threads.

``fit_flow``, ``FlowHistory``, ``train`` and ``TrainingHistory`` load their module on first
use, as in :mod:`otflows`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "FlowHistory": "otflows.training.gaussian",
    "fit_flow": "otflows.training.fit",
    "TrainingHistory": "otflows.training.parts",
    "train": "otflows.training.loop",
}

__all__ = ["FlowHistory", "TrainingHistory", "fit_flow", "train"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'otflows.training' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


if TYPE_CHECKING:
    from otflows.training.fit import fit_flow
    from otflows.training.gaussian import FlowHistory
    from otflows.training.loop import train
    from otflows.training.parts import TrainingHistory
