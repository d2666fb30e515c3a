r"""The phases of a map fit, each a run of the one trainer (:func:`otflows.training.loop.train`):
the
Bures start, the objective's training, each refinement round's regression, and the fallback that
ends it."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from otflows.maps.conditions import ByCondition, Conditions
from otflows.maps.fallback import fall_back
from otflows.maps.objectives import Objective
from otflows.maps.problem import MapProblem, chunked
from otflows.metrics import wasserstein2_squared
from otflows.training import distributed
from otflows.training.loop import train
from otflows.training.parts import Checkpoint, Report, Schedule, Validation
from otflows.training.samplers import WithReplacement
from otflows.transforms.affine import set_affine
from otflows.transforms.brenier import BrenierTransform

__all__ = ["MapFit", "PhaseOptions", "validation_metrics"]


@dataclass(frozen=True)
class PhaseOptions:
    r"""What every phase's training shares.

    Attributes:
        steps: Steps of the objective's training and of each refinement round's regression.
        lr: Adam's peak learning rate.
        clip_grad: The gradient-norm clip (``None``: none).
        interval: Steps between validations, callbacks and checkpoint saves.
        batch_sizes: Source and target rows per step.
        validation_score: What selects the kept weights
        (:class:`otflows.training.parts.Validation`).
        patience: Validations without newly kept weights before a phase stops.
        progress: Whether to show progress bars.
    """

    steps: int
    lr: float
    clip_grad: float | None
    interval: int
    batch_sizes: tuple[int, int]
    validation_score: str
    patience: int | None
    progress: bool


class MapFit:
    r"""One fit of the map ``T`` to a :class:`otflows.maps.problem.MapProblem`, phase by phase.

    Built, it has set ``T``'s normalisation and quadratic term to the Bures map of the training
    rows (:attr:`bures`) and drawn nothing yet; then each phase is a method, run in order by
    :meth:`otflows.BrenierMap.fit`: :meth:`bures_start`, :meth:`setup_objective` and
    :meth:`train_objective`, :meth:`refine` for each round, :meth:`fall_back`. Every phase trains
    the whole of ``T`` with the same sampler, options, validation and checkpoint file; a
    checkpoint saves the phase's index and the shared ``log`` with the trainer's state, so a
    resumed fit skips the phases before it.

    Arguments:
        T: The transform fitted in place.
        problem: The data.
        objective: The training objective (its copy scores the held-out rows).
        options: The phases' shared options.
        bures: The Bures map ``(A [D, D], b [D])`` of the training rows
            (:func:`otflows.transforms.affine.bures_map`).
        checkpoint: The checkpoint file (``None``: none).
        checkpoint_every: Steps between checkpoints (``None``: ``options.interval``).
        signature: What a resumed fit's checkpoint must share with this one.
        saved_phase: The phase a resumed fit continues (``-1``: a fresh fit).
        log: The fit's log, saved with each checkpoint (the caller fills it in).
        callback: Called as ``callback(phase_name, step)`` every ``options.interval`` steps.

    Attributes:
        T: The transform fitted (after :meth:`fall_back`, the one the fit ended at).
        bures: The Bures map ``(A [D, D], b [D])`` of the training rows (after :meth:`fall_back`,
            the one the fit ended at, or held).
        validation: How held-out rows are scored (``None``: none held out).
    """

    def __init__(
        self,
        T: BrenierTransform,
        problem: MapProblem,
        objective: Objective,
        options: PhaseOptions,
        *,
        bures: tuple[Tensor, Tensor],
        checkpoint: str | Path | None,
        checkpoint_every: int | None = None,
        signature: dict[str, Any],
        saved_phase: int,
        log: dict[str, Any],
        callback: Callable[[str, int], None] | None,
    ):
        self.T, self.problem, self.objective, self.options = T, problem, objective, options
        self.checkpoint, self.signature, self.saved_phase = checkpoint, signature, saved_phase
        self.checkpoint_every = checkpoint_every or options.interval
        self.log, self.callback = log, callback
        Xs, Xt = problem.Xs, problem.Xt
        T.train()
        T.initialize(Xs, problem.ct)
        self.bures = bures
        set_affine(T, *self.bures)
        self.scale = float(Xt.var(0).sum())  # the regressions' losses are relative to Var(ν)
        sizes = options.batch_sizes
        # the minibatches, and the Bures start's targets: [D, D], [D]; [G, D, D], [G, D]
        self.sampler: WithReplacement
        if problem.conditions is None:
            self.sampler = WithReplacement((len(Xs), len(Xt)), sizes, problem.generator)
            self.targets = self.bures
        else:
            self.sampler = ByCondition(problem.conditions, len(Xs), sizes, problem.generator)
            self.targets = problem.conditions.bures_maps(Xs, Xt, self.bures)
        self.validation: Validation | None = None
        self.stateful: dict[str, Any] = {}  # the validation's conjugates are warm-started too
        held_out = problem.held_out
        if held_out is not None:
            self.val_objective = copy.deepcopy(objective)
            self.validation = Validation(
                lambda: validation_metrics(T, self.val_objective, *held_out),
                options.validation_score,
                options.interval,
                options.patience,
            )

    def bures_start(self, steps: int) -> dict:
        r"""``steps`` of regression onto the Bures map (each condition's); its history."""
        loss = self._regression(self._bures_target)
        return self._phase(0, "Bures start", loss, "cosine", steps=steps)

    def setup_objective(self) -> None:
        r"""The objective's state from the map as it is (e.g. the semi-dual's warm starts),
        and the held-out copy's; restored from a checkpoint where a phase resumes."""
        p = self.problem
        self.objective.setup(self.T, p.Xs, p.Xt, p.ct)
        if p.held_out is not None:
            Xs_val, Xt_val, _, ct_val = p.held_out
            self.val_objective.setup(self.T, Xs_val, Xt_val, ct_val)
            self.stateful["val_objective"] = self.val_objective

    def train_objective(self, max_time: float | None) -> dict:
        r"""The objective's training (within ``max_time`` seconds); its history."""
        return self._phase(
            1,
            "fit",
            self._objective_loss,
            "warmup_cosine",
            max_time=max_time,
            validation=self.validation,
            stateful={"objective": self.objective} | self.stateful,
        )

    def refine(self, r: int, before: BrenierTransform, S: BrenierTransform) -> dict:
        r"""Refinement round ``r``: the regression of ``T`` onto :math:`S \circ T_{\text{before}}`;
        its history."""

        @torch.no_grad()
        def composed(x: Tensor, k: Tensor | None) -> Tensor:
            return S.transport(before.transport(x))

        return self._phase(
            2 + r,
            f"refine {r + 1}",
            self._regression(composed),
            "warmup_cosine",
            validation=self.validation,
            stateful=self.stateful,
            extra=lambda: {"before": before.state_dict(), "S": S.state_dict()},
        )

    def fall_back(self, apply: bool = True) -> dict[str, Any]:
        r"""The fallback (:func:`otflows.maps.fallback.fall_back`) on the held-out rows: what was
        kept (the network, without ``apply``), its verdict and the scores that decided.
        :attr:`T` is then the map the fit ends at: the network, the Bures map (``T`` itself)
        or the entropic map (a new transform)."""
        p = self.problem
        assert p.Xs_val is not None and p.Xt_val is not None
        record, self.bures, self.T = fall_back(
            self.T, self.bures, p.Xs, p.Xt, p.Xs_val, p.Xt_val, p.seed, apply
        )
        return record

    def _phase(
        self,
        index: int,
        name: str,
        loss: Callable[..., Tensor],
        kind: str,
        steps: int | None = None,
        max_time: float | None = None,
        validation: Validation | None = None,
        stateful: dict[str, Any] | None = None,
        extra: Callable[[], dict[str, Any]] = dict,
    ) -> dict:
        r"""Phase ``index`` (``name``): ``loss`` trained under the ``kind`` of schedule; its
        history as a dict."""
        o = self.options
        checkpoint = None
        if self.checkpoint is not None:
            checkpoint = Checkpoint(
                self.checkpoint,
                self.checkpoint_every,
                self.signature,
                stateful or {},
                lambda: {"phase": index, "log": json.dumps(self.log)} | extra(),
                resume=index == self.saved_phase,
            )
        callback = self.callback
        history = train(
            self.T,
            loss,
            self.sampler,
            Schedule(steps or o.steps, o.lr, kind, o.clip_grad, max_time=max_time),
            validation=validation,
            checkpoint=checkpoint,
            report=Report(
                None if callback is None else lambda step: callback(name, step),
                o.interval,
                o.progress,
                name,
            ),
        )
        return asdict(history)

    def _bures_target(self, x: Tensor, k: Tensor | None) -> Tensor:
        A, b = self.targets
        if self.problem.conditions is None or k is None:
            return x @ A + b
        g = self.problem.conditions.target[k]
        return torch.einsum("bd,bde->be", x, A[g]) + b[g]

    def _regression(self, target: Callable[[Tensor, Tensor | None], Tensor]) -> Callable:
        def loss(i: Tensor, j: Tensor, k: Tensor | None = None) -> Tensor:
            x, c, k = self.problem.source_rows(i, k)
            return (self.T.transport(x, c) - target(x, k)).square().sum(-1).mean() / self.scale

        return loss

    def _objective_loss(self, i: Tensor, j: Tensor, k: Tensor | None = None) -> Tensor:
        # each process: its shard of the source batch, and of the target batch too when the
        # loss is a mean over samples (else the objective gathers the whole batch)
        p = self.problem
        x, c, _ = p.source_rows(i, k)
        j = j.to(p.device)
        if self.objective.separable:
            j = distributed.shard(j)
        if p.ct is None:
            return self.objective.loss(self.T, x, p.Xt[j], j)
        return self.objective.loss(self.T, x, p.Xt[j], j, c, p.ct[j])


def validation_metrics(
    T: BrenierTransform,
    objective: Objective,
    Xs_val: Tensor,
    Xt_val: Tensor,
    cs_val: Tensor | None = None,
    ct_val: Tensor | None = None,
) -> dict:
    r"""The validation metrics of the map ``T`` as it is: ``w2``, the exact :math:`W_2^2`
    between the held-out :math:`T_\#\mu` and :math:`\nu` samples; ``objective``, the
    objective's value on them, as its per-sample terms. Conditional: both averaged over
    the conditions with their target rows' weights (:meth:`Conditions.balance`), the
    :math:`W_2^2` condition by condition."""
    pushed = chunked(T.transport, Xs_val, cs_val)
    index = torch.arange(len(Xt_val), device=Xt_val.device)
    terms = objective.terms(T, Xs_val, Xt_val, index, cs_val, ct_val)
    if ct_val is None:
        return {"w2": wasserstein2_squared(pushed, Xt_val), "objective": terms}
    groups = Conditions(ct_val, cs_val, strict=False)
    p, w_s, w_t = groups.balance()
    assert groups.source is not None
    w2 = sum(
        float(p[g]) * wasserstein2_squared(pushed[groups.source == g], Xt_val[groups.target == g])
        for g in range(len(groups))
        if p[g] > 0
    )
    source, target = terms
    return {"w2": w2, "objective": (source * w_s.to(source), target * w_t.to(target))}
