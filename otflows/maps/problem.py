r"""The data of one map fit, checked and built once: the training and held-out rows of each
side, their conditions, the device and dtype, and the seeded generator of every random draw."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from otflows.maps.conditions import Conditions
from otflows.training import distributed
from otflows.validation import as_samples, split_held_out, with_context

__all__ = ["CHUNK", "HELD_OUT_ROWS", "MapProblem", "build_problem", "chunked"]

CHUNK = 8192  # rows per forward pass of a map applied to many rows
# at most this many held-out samples per side: their W2² validation is an exact EMD, whose
# time grows as the cube of the rows (about a second at 1024); a flow's NLL takes more
# (otflows.training.fit.HELD_OUT_ROWS)
HELD_OUT_ROWS = 1024

Array = Tensor | np.ndarray


@dataclass
class MapProblem:
    r"""The rows a map is fitted to, on their device and in their dtype.

    Attributes:
        Xs: The training source rows ``[N, D]``.
        Xt: The training target rows ``[M, D]``.
        Xs_val: The held-out source rows ``[N', D]`` (``None``: no validation).
        Xt_val: The held-out target rows ``[M', D]``.
        cs: The training source rows' conditions ``[N, C]`` (``None``: unconditional, or a
            source shared by every condition).
        ct: The training target rows' conditions ``[M, C]`` (``None``: unconditional).
        cs_val: The held-out source rows' conditions ``[N', C]`` (those of held-out target
            rows where the source is shared).
        ct_val: The held-out target rows' conditions ``[M', C]``.
        conditions: The training rows' :class:`Conditions` (``None``: unconditional).
        seed: The fit's seed (also the network's initialisation's).
        generator: The CPU generator of the fit's draws: held-out rows, minibatches, the seeds
            of refinement rounds (on the CPU, so a seeded fit draws the same on every device).
    """

    Xs: Tensor
    Xt: Tensor
    Xs_val: Tensor | None
    Xt_val: Tensor | None
    cs: Tensor | None
    ct: Tensor | None
    cs_val: Tensor | None
    ct_val: Tensor | None
    conditions: Conditions | None
    seed: int
    generator: torch.Generator

    @property
    def device(self) -> torch.device:
        return self.Xs.device

    @property
    def context_features(self) -> int | None:
        r"""The conditions' dimension ``C`` (``None``: unconditional)."""
        return None if self.ct is None else self.ct.shape[1]

    @property
    def held_out(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None] | None:
        r"""``(Xs_val, Xt_val, cs_val, ct_val)``, or ``None`` without held-out rows."""
        if self.Xs_val is None or self.Xt_val is None:
            return None
        return self.Xs_val, self.Xt_val, self.cs_val, self.ct_val

    def source_rows(
        self, i: Tensor, k: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        r"""This process's shard of a minibatch's source rows ``i`` ``[B]``, their conditions
        and ``k``: in a conditional fit, those of the target rows ``k``
        (:class:`otflows.maps.conditions.ByCondition`); else ``None`` and ``None``."""
        x = self.Xs[distributed.shard(i).to(self.device)]
        if k is None or self.ct is None:
            return x, None, None
        k = distributed.shard(k).to(self.device)
        return x, self.ct[k], k

    def shapes(self) -> dict[str, Any]:
        r"""The data's sizes, as a resumed fit's checkpoint must share them."""
        return {
            "Xs": list(self.Xs.shape),
            "Xt": list(self.Xt.shape),
            "validation rows": None if self.Xs_val is None else len(self.Xs_val),
            "conditions": None if self.conditions is None else list(self.conditions.table.shape),
        }


def build_problem(
    Xs: Array,
    Xt: Array,
    *,
    dtype: torch.dtype,
    device: torch.device,
    seed: int,
    validation_fraction: float,
    cs: Array | None = None,
    ct: Array | None = None,
    Xs_val: Array | None = None,
    Xt_val: Array | None = None,
    cs_val: Array | None = None,
    ct_val: Array | None = None,
) -> MapProblem:
    r"""The :class:`MapProblem` of a fit's arguments, each checked with an error naming it.

    Each side needs more rows than features. Held-out rows are those given (``Xs_val`` with
    ``Xt_val``), or a random ``validation_fraction`` of each side's rows with their conditions
    (at most :data:`HELD_OUT_ROWS`), drawn from the generator seeded by ``seed``; or none.

    Example:
        >>> X = np.random.default_rng(0).normal(size=(100, 2))
        >>> problem = build_problem(X, X + 1, dtype=torch.float64, device=torch.device("cpu"),
        ...                         seed=0, validation_fraction=0.25)
        >>> problem.Xs.shape, problem.Xs_val.shape
        (torch.Size([75, 2]), torch.Size([25, 2]))
    """
    Xs = as_samples(Xs, "Xs", dtype=dtype, device=device)
    Xt = as_samples(Xt, "Xt", features=Xs.shape[1], dtype=dtype, device=device)
    for name, X in (("Xs", Xs), ("Xt", Xt)):
        if len(X) <= X.shape[1]:
            raise ValueError(
                f"{name} has {len(X)} rows for {X.shape[1]} features: a map needs more "
                "rows than features on each side (its Bures start estimates a [D, D] "
                "covariance); reduce the features first (e.g. PCA) or give more rows"
            )
    spec: dict[str, Any] = {"features": Xs.shape[1], "dtype": dtype, "device": device}
    if ct is not None:
        Xt, ct = with_context(Xt, ct, "Xt", "ct", **spec)
        if cs is not None:
            Xs, cs = with_context(Xs, cs, "Xs", "cs", context_features=ct.shape[1], **spec)
    else:
        cs = None
    if (Xs_val is None) != (Xt_val is None):
        raise ValueError("give both Xs_val and Xt_val (held-out samples of each side)")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    options: dict[str, Any] = {"what": "conditions", "max_rows": HELD_OUT_ROWS}
    options |= {"advice": ", Xs_val and Xt_val,"} | spec
    Xs, Xs_val, cs, cs_val = split_held_out(
        Xs, cs, Xs_val, cs_val, validation_fraction, generator, names=("Xs", "cs"), **options
    )
    Xt, Xt_val, ct, ct_val = split_held_out(
        Xt, ct, Xt_val, ct_val, validation_fraction, generator, names=("Xt", "ct"), **options
    )
    conditions = None
    if ct is not None:
        conditions = Conditions(ct, cs)
        if Xs_val is not None and ct_val is not None and cs_val is None:  # shared source
            cs_val = ct_val[torch.arange(len(Xs_val), device=device) % len(ct_val)]
    return MapProblem(Xs, Xt, Xs_val, Xt_val, cs, ct, cs_val, ct_val, conditions, seed, generator)


def chunked(
    f: Callable[[Tensor, Tensor | None], Tensor],
    X: Tensor,
    c: Tensor | None = None,
    rows: int = CHUNK,
) -> Tensor:
    r"""``f(X, c)`` ``[N, D]``, ``rows`` rows (and their conditions ``c [N, C]``) at a time.

    Example:
        >>> chunked(lambda x, c: 2 * x, torch.ones(5, 2), rows=2).sum().item()
        20.0
    """
    chunks = X.split(rows)
    contexts = [None] * len(chunks) if c is None else c.split(rows)
    return torch.cat([f(x, ci) for x, ci in zip(chunks, contexts, strict=True)])
