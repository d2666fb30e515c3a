r"""Counting the host's reads of tensor values: on a GPU each one waits for the device.

A training step that reads a value back (``.item()``, ``bool(t)``, a boolean mask, a
``nonzero``) cannot be queued ahead of the device, nor captured and replayed as one graph.
:class:`HostReads` counts such reads on any device, the CPU included, so that a GPU's
synchronisations can be counted and tested where no GPU is at hand.
"""

from __future__ import annotations

import sys
from collections import Counter
from types import FrameType
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["READS", "HostReads"]

# Tensor functions whose result on the host depends on a value on the device.
READS = frozenset(
    {
        "__bool__",
        "__float__",
        "__index__",
        "__int__",
        "argwhere",
        "cpu",
        "item",
        "masked_select",
        "nonzero",
        "numpy",
        "tolist",
        "unique",
    }
)


def _masked(index: Any) -> bool:
    r"""Whether an index holds a boolean tensor (its result's size is read from the device)."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


def _in_optimizer() -> bool:
    r"""Whether the caller is a ``torch.optim`` optimizer."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith("torch.optim"):
            return True
        frame = frame.f_back
    return False


class HostReads(TorchFunctionMode):
    r"""Counts, by function name, the reads of tensor values by the host while it is active
    (:data:`READS`, and indexing or assigning with a boolean mask), except the optimizers'
    (``torch.optim`` keeps its step counters on the host, also for a model on a GPU).

    Attributes:
        counts: The reads so far, by function name.

    Example:
        >>> x = torch.randn(100)
        >>> with HostReads() as reads:
        ...     y = torch.where(x > 0, x, 0.0).sum()  # no read
        ...     z = x[x > 0].sum().item()  # a mask, and an item
        >>> reads.total, dict(reads.counts)
        (2, {'__getitem__': 1, 'item': 1})
    """

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    @property
    def total(self) -> int:
        r"""All the reads so far."""
        return sum(self.counts.values())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if (
            name in READS
            or (name in ("__getitem__", "__setitem__") and len(args) > 1 and _masked(args[1]))
        ) and not _in_optimizer():
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))
