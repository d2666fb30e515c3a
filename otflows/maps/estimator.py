r"""``BrenierMap``: the optimal transport map between two data sets, POT/scikit-learn style."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from ot.da import BaseTransport
from torch import Tensor

from otflows.maps.fitted import FittedMap
from otflows.maps.objectives import Objective, build_objective
from otflows.maps.phases import MapFit, PhaseOptions
from otflows.maps.problem import MapProblem, build_problem, chunked
from otflows.maps.settings import (
    CHOSEN,
    changed_params,
    check_params,
    dtype_of,
    settings_for,
)
from otflows.nets import MonotoneGradientNet, build_net
from otflows.training import distributed
from otflows.training.loop import load_checkpoint
from otflows.training.threads import fit_threads
from otflows.transforms.affine import bures_map
from otflows.transforms.brenier import BrenierTransform
from otflows.validation import as_device, seed_of

__all__ = ["BrenierMap"]


class BrenierMap(FittedMap, BaseTransport):
    r"""The :math:`W_2`-optimal map from source to target samples, as a Brenier transform.

    The map is :math:`T(x) = \nabla\varphi(x) = G(x) + \gamma x` with :math:`G` a monotone
    gradient network (:class:`otflows.BrenierTransform`). By Brenier's theorem the gradient of a
    convex function that pushes :math:`\mu` onto :math:`\nu` *is* the optimal map, so fitting
    :math:`T_\#\mu = \nu` by any of the objectives of :mod:`otflows.maps.objectives` gives it,
    with no dual or minimax training; :meth:`inverse_transform` is the exact inverse (damped
    Newton). Training starts from the Gaussian (Bures) map of the data: the network's quadratic
    term is set to it (:func:`otflows.transforms.affine.set_affine`) and then the whole map is
    regressed onto it for ``init_iter`` steps.

    Residual refinement (``refine_rounds``) then corrects the fitted map where its objective
    left it biased. Each round fits the optimal map :math:`S` from :math:`T_\#\mu` to
    :math:`\nu` (a second ``BrenierMap`` with the same settings and ``refine_iter`` steps) and
    regresses :math:`T` onto :math:`S \circ T` (``max_iter`` steps of
    :math:`\mathbb E\|T(x) - S(T_{\text{before}}(x))\|^2`: a regression step costs far less
    than an objective's, and the regression converges slowly). :math:`S` is near the identity,
    where the semi-dual's metric :math:`\tfrac12\mathbb E\langle\delta S, J_S^{-1}\delta S\rangle`
    is nearly L2's, while :math:`T`'s own fit discounts the errors where :math:`J_T` is large;
    the true map is a fixed point (:math:`S = \mathrm{id}`).

    The conventions are POT's ``ot.da`` (a ``BaseTransport``: ``fit(Xs=, Xt=)``,
    ``transform(Xs=)``, ``inverse_transform(Xt=)``) and scikit-learn's: :meth:`fit` returns
    the estimator, fitted attributes end with ``_``, ``get_params``/``set_params`` read the
    constructor's signature (so ``sklearn.base.clone`` works), NumPy in gives NumPy out and
    torch in gives torch out.

    Arguments:
        net: The monotone gradient network: ``"mmgn"``, ``"cmgn"``, ``"icgn"``, ``"icnn"`` or
            ``"qicnn"`` (:class:`otflows.QuadraticICNN`: the most accurate on the
            :math:`W_2` benchmark's non-Gaussian pairs; M-MGN suffices near-Gaussian ones).
        objective: ``"semidual"`` (exact conjugates, the default: best on every benchmark of
            ``otflows bench ot-maps``), ``"likelihood"`` (onto a Gaussian fitted to ``Xt``),
            ``"sinkhorn"`` (debiased Sinkhorn divergence), or an
            :class:`otflows.maps.objectives.Objective` (e.g.
            ``TargetLikelihood(flow_fitted_to_Xt)``).
        hidden_features: The network's hidden width (``None``: by the training rows per
            dimension, :func:`otflows.maps.settings.settings_for`: 16 with fewer than 100 on
            the smaller side, else 64).
        max_iter: Optimisation steps (and steps of each refinement round's regression).
        batch_size: Source samples per step (and target samples, unless
            ``target_batch_size`` is given).
        lr: Adam's peak learning rate (linear warm-up over 10 % of the steps, then cosine;
            ``None``: by the training rows per dimension, 1e-2 with fewer than 100, else
            3e-2).
        gamma: The strong-monotonicity floor :math:`\gamma > 0` of the map
            (:math:`J_T \succeq \gamma I`; ``None``: from the data, 1e-2 or an eighth of the
            smallest slope of the training rows' Bures map where that is less, so that the
            Bures map is always within reach).
        device: ``"cpu"``, ``"cuda"``…; ``None``: the device of torch input, else the CPU
            (never a GPU unasked).
        dtype: ``"float32"`` or ``"float64"`` (or the torch dtypes).
        random_state: Seeds the network's initialisation, the validation split and the
            minibatches: ``None``, an int, or a NumPy ``Generator`` / ``RandomState`` (one
            seed is drawn from it per fit).
        net_kwargs: The network's other arguments (e.g. ``{"num_modules": 4}``).
        target_batch_size: Target samples per step (``None``: ``batch_size``): the
            semi-dual solves one conjugate per target sample, and on the :math:`W_2` benchmark
            (d = 64) 256 beside 1024 sources fitted the same map per step as 1024.
        init_iter: Steps of regression onto the Bures map before training (0: only the
            quadratic term is set).
        refine_rounds: Rounds of residual refinement after training (0: none). Each round's
            fit of :math:`S` gets a copy of the objective, which must therefore depend on the
            target alone (as all of :mod:`otflows.maps.objectives` do).
        refine_iter: Steps of each round's fit of :math:`S` (after its own ``init_iter``
            steps of Bures start).
        clip_grad: Gradient-norm clipping (``None``: none).
        validation_fraction: The share of each side's samples held out to validate the map
            (at most 1024 rows each; 0: none, unless ``fit`` is given ``Xs_val`` and
            ``Xt_val``). Validation needs no known map: it scores :math:`T_\#\mu` against
            :math:`\nu` on held-out samples, keeps the best-scoring weights (the Bures start
            among them) and can stop early. Then the simple map of the data is a last candidate
            (:func:`otflows.maps.floor.apply_floor`; not for conditional fits): the Bures map,
            or with at most 1000 rows per side the entropic map where it cross-validates
            better (as a flow step: :meth:`otflows.EntropicMap.as_transform`). The fit ends
            at the network only where it scores the held-out rows significantly better than
            that map (their W2², or the semi-dual objective row by row) and it maps rows a
            little outside the training rows sanely, and ``log_["kept"]`` says which. A
            quarter, so that a few hundred rows per side hold out a few dozen (``otflows bench
            small-data``).
        validation_interval: Steps between validations (``None``: ``max_iter // 20``; with
            ``max_time``, also each time another twentieth of it has passed).
        validation_score: What selects the kept weights: ``"objective"``, the objective's
            value on the held-out samples (the latest weights within two paired standard
            errors of the best, :func:`otflows.training.parts.not_worse`), or ``"w2"``, the exact
            :math:`W_2^2` between the held-out :math:`T_\#\mu` and :math:`\nu` samples (the
            best). Both are logged; the docs' defaults study compares them. ``None``:
            by the held-out rows on the smaller side, ``"w2"`` with fewer than 500, else
            ``"objective"``.
        patience: Validations that keep no new weights before training stops (``None``: it
            runs ``max_iter`` steps).
        max_time: A budget of wall-clock seconds for the Bures start and training (``None``:
            none; refinement rounds run their own ``refine_iter`` steps). Training stops after
            ``max_iter`` steps or when it is spent, the learning rate annealed over whichever
            is further along: give a generous ``max_iter`` to fit for a time.
        threads: CPU threads of the fit (``None``: one where a step's work is small, else
            torch's threads: :func:`otflows.training.threads.threads_for`).
        floor: Whether the simple map is a last candidate after training
            (``validation_fraction``'s floor). ``False``: the fit ends at the validated
            network whatever the floor's verdict, which ``log_["floor"]["verdict"]`` still
            records (to study the network itself, or what the floor costs).
        progress: Whether to show a progress bar.

    Attributes:
        transform_: The fitted :class:`otflows.BrenierTransform` (whose network is an
            :class:`otflows.nets.EntropicPotential` where the fit ended at the entropic map).
        settings_: The width, learning rate, validation score and :math:`\gamma` the fit
            used, and what chose those left ``None``: the training rows per dimension of the
            smaller side and the smallest slope of their Bures map
            (:func:`otflows.maps.settings.settings_for`; also ``log_["settings"]``).
        n_features_in_: The dimension ``D``.
        context_features_: The conditions' dimension ``C`` of a conditional map, else ``None``.
        conditions_: The distinct conditions of the training rows ``[G, C]`` (``None``: not
            conditional).
        bures_matrix_, bures_offset_: The Bures map :math:`x \mapsto A x + b` of the training
            rows (of all the rows, held-out ones too, where the fit ended at it).
        log_: ``{"objective": {...}, "settings": settings_, "init": history, "fit": history,
            "refine": [{"inner": the round's inner log_, "regression": history}, ...],
            "floor": {"kept", "verdict", "baseline", "cv_difference", "cv_se", "w2_network",
            "w2_baseline", "difference_se", "semidual_difference", "semidual_se",
            "unconverged", "better", "extrapolation"}, "kept": "network", "bures" or "entropic",
            "seconds": float}``, each history a
            :class:`otflows.training.parts.TrainingHistory` as a dict (``loss``, ``val_step``,
            ``val_metrics`` with ``"w2"`` and ``"objective"``, ``best_step``…); ``"floor"``
            where the fit had held-out rows and no conditions.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> Xs, Xt = rng.normal(size=(256, 2)), 2 * rng.normal(size=(256, 2)) + 1
        >>> otmap = BrenierMap(max_iter=20, hidden_features=8, random_state=0, progress=False)
        >>> Y = otmap.fit(Xs=Xs, Xt=Xt).transform(Xs)
        >>> Y.shape, Y.dtype
        ((256, 2), dtype('float64'))
        >>> bool(np.allclose(otmap.inverse_transform(Xt=Y), Xs, atol=1e-3))
        True
    """

    def __init__(
        self,
        net: str = "qicnn",
        objective: str | Objective = "semidual",
        hidden_features: int | None = None,
        max_iter: int = 2000,
        batch_size: int = 256,
        lr: float | None = None,
        gamma: float | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str = "float32",
        random_state: int | np.random.Generator | np.random.RandomState | None = None,
        *,
        net_kwargs: dict[str, Any] | None = None,
        target_batch_size: int | None = None,
        init_iter: int = 300,
        refine_rounds: int = 0,
        refine_iter: int = 1000,
        clip_grad: float | None = 10.0,
        validation_fraction: float = 0.25,
        validation_interval: int | None = None,
        validation_score: str | None = None,
        patience: int | None = None,
        max_time: float | None = None,
        threads: int | None = None,
        floor: bool = True,
        progress: bool = True,
    ):
        self.net = net
        self.objective = objective
        self.hidden_features = hidden_features
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.lr = lr
        self.gamma = gamma
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.net_kwargs = net_kwargs
        self.target_batch_size = target_batch_size
        self.init_iter = init_iter
        self.refine_rounds = refine_rounds
        self.refine_iter = refine_iter
        self.clip_grad = clip_grad
        self.validation_fraction = validation_fraction
        self.validation_interval = validation_interval
        self.validation_score = validation_score
        self.patience = patience
        self.max_time = max_time
        self.threads = threads
        self.floor = floor
        self.progress = progress

    def __repr__(self) -> str:
        changed = changed_params(type(self), self.get_params(deep=False))
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self) -> Any:
        r"""scikit-learn's estimator tags (asked for by its utilities, e.g.
        ``check_is_fitted``): a transformer that needs fitting and no labels."""
        from sklearn.utils import Tags, TargetTags, TransformerTags

        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            transformer_tags=TransformerTags(),
            non_deterministic=self.random_state is None,
        )

    # -- fitting -----------------------------------------------------------------------------
    def fit(
        self,
        Xs: Tensor | np.ndarray | None = None,
        ys: Any = None,
        Xt: Tensor | np.ndarray | None = None,
        yt: Any = None,
        *,
        cs: Tensor | np.ndarray | None = None,
        ct: Tensor | np.ndarray | None = None,
        Xs_val: Tensor | np.ndarray | None = None,
        Xt_val: Tensor | np.ndarray | None = None,
        cs_val: Tensor | np.ndarray | None = None,
        ct_val: Tensor | np.ndarray | None = None,
        checkpoint: str | Path | None = None,
        checkpoint_every: int | None = None,
        resume: bool = False,
        callback: Callable[[str, int, BrenierMap], None] | None = None,
    ) -> BrenierMap:
        r"""Fits the map from ``Xs [N, D]`` (source) to ``Xt [M, D]`` (target samples; not
        paired with ``Xs``, ``M`` may differ from ``N``). Returns the estimator.

        Arguments:
            Xs: Source samples ``[N, D]``.
            ys: Source labels: not used (POT's signature).
            Xt: Target samples ``[M, D]``.
            yt: Target labels: not used.
            cs: The source samples' conditions ``[N, C]`` of a conditional fit (``None`` with
                ``ct`` given: the source samples are shared by every condition, e.g. control
                cells or noise).
            ct: The target samples' conditions ``[M, C]``: given, the fit is of a
                conditional map :math:`T(\cdot\,; c)`, the Brenier map from :math:`\mu_c` to
                :math:`\nu_c` for every condition :math:`c`, one network for all
                (:mod:`otflows.maps.conditions`); it applies to conditions never seen in
                training too (``transform(X, cs=c)``).
            Xs_val: Held-out source samples ``[N', D]`` (with ``Xt_val``), instead of the
                ``validation_fraction`` split.
            Xt_val: Held-out target samples ``[M', D]``.
            cs_val: The held-out source samples' conditions (with ``cs``).
            ct_val: The held-out target samples' conditions (with ``ct``).
            checkpoint: A file where the whole state of the fit is saved atomically every
                ``checkpoint_every`` steps and after each phase.
            checkpoint_every: Steps between checkpoints (default ``validation_interval``), as
                in :func:`otflows.fit_flow`.
            resume: Continue from ``checkpoint`` when it exists: the fit then ends exactly as
                an uninterrupted one with the same settings and data would.
            callback: Called as ``callback(phase, step, self)`` every ``validation_interval``
                steps of each phase (``"Bures start"``, ``"fit"``, ``"refine 1"``…) and at its
                end, e.g. to score the map against a known one.

        Each side needs more rows than features. A feature constant on one side gets the
        Bures map's stated ridge (:func:`otflows.transforms.affine.bures_map`); a row given twice
        is two
        samples, and weighs twice.

        Under ``torchrun`` (see :mod:`otflows.training.distributed`) every process draws the same
        minibatches and computes the loss of its share of each (the batch sizes must be
        multiples of the number of processes); ``DistributedDataParallel`` averages the
        gradients, so the fit equals the single-process one up to summation order.

        A conditional fit (``ct`` given) needs a conditional network (``"qicnn"``, ``"mmgn"``
        or ``"picnn"``) and an objective that takes conditions (the semi-dual), and has no
        residual refinement; each step draws target rows uniformly and gives each source row
        the condition of another drawn target row, and the Bures start regresses onto each
        condition's Bures map (the pooled one where a condition has at most ``D`` rows on a
        side).

        Example (conditional):
            >>> rng = np.random.default_rng(0)
            >>> c = rng.integers(0, 3, size=(600, 1)).astype(float)  # three conditions
            >>> Xs, Xt = rng.normal(size=(600, 2)), rng.normal(size=(600, 2)) + c
            >>> otmap = BrenierMap(max_iter=20, hidden_features=8, progress=False)
            >>> otmap.fit(Xs=Xs, Xt=Xt, ct=c).transform(Xs[:4], cs=np.full((4, 1), 1.5)).shape
            (4, 2)
        """
        objective = self._check_fit(Xs, ys, Xt, cs, ct)
        dtype, device = self._spec(Xs)
        seed = distributed.broadcast_seed(seed_of(self.random_state))
        problem = build_problem(
            cast(Any, Xs),
            cast(Any, Xt),
            **{"cs": cs, "ct": ct, "Xs_val": Xs_val, "Xt_val": Xt_val},
            **{"cs_val": cs_val, "ct_val": ct_val},
            dtype=dtype,
            device=device,
            seed=seed,
            validation_fraction=self.validation_fraction,
        )
        rows, features = min(len(problem.Xs), len(problem.Xt)), problem.Xs.shape[1]
        held_out = 0 if problem.held_out is None else min(map(len, problem.held_out[:2]))
        bures = bures_map(problem.Xs, problem.Xt)
        slope = float(torch.linalg.eigvalsh(bures[0]).min())
        self.settings_ = settings_for(self.get_params(deep=False), rows, features, slope, held_out)
        T = self._new_transform(features, problem.context_features, seed)
        T.to(dtype=dtype, device=device)
        signature = self._signature(problem)
        saved = None
        if checkpoint is not None and resume:
            saved = load_checkpoint(checkpoint, signature, device)
        work = sum(p.numel() for p in T.parameters()) * self.batch_size
        with fit_threads(work, self.threads, torch.device(device)):
            start = time.perf_counter()
            self._set_fitted(T, problem, objective, saved)
            run = MapFit(
                T,
                problem,
                objective,
                self._phase_options(),
                bures=bures,
                checkpoint=checkpoint,
                checkpoint_every=checkpoint_every,
                signature=signature,
                saved_phase=-1 if saved is None else saved["extra"]["phase"],
                log=self.log_,
                callback=None
                if callback is None
                else lambda name, step: callback(name, step, self),
            )
            self._run_phases(run, saved)
            self.log_["seconds"] = time.perf_counter() - start  # this call's (each: its own)
        return self

    def _set_fitted(
        self,
        T: BrenierTransform,
        problem: MapProblem,
        objective: Objective,
        saved: dict[str, Any] | None,
    ) -> None:
        r"""The fitted attributes a fit starts with: the transform, the data's sizes and
        conditions, and the log (a resumed fit's, from its checkpoint)."""
        self.n_features_in_ = problem.Xs.shape[1]
        self.context_features_ = problem.context_features
        self.conditions_ = None if problem.conditions is None else problem.conditions.table
        self.transform_ = T
        self.log_ = {"objective": objective.config, "settings": self.settings_, "refine": []}
        if saved is not None:
            self.log_ = json.loads(saved["extra"]["log"])

    def _check_fit(self, Xs: Any, ys: Any, Xt: Any, cs: Any, ct: Any) -> Objective:
        r"""The settings and the arguments that :meth:`fit` checks before the data; the
        objective, built."""
        conditional = ct is not None
        if cs is not None and not conditional:
            raise ValueError(
                "cs is given without ct: a conditional fit needs the target samples' "
                "conditions ct [M, C] (cs may be None: source samples shared by every condition)"
            )
        check_params(self.get_params(deep=False), conditional)
        if Xt is None and ys is not None:
            raise ValueError(
                "Xt is missing and ys is given: fit(Xs, Xt) passes the targets as ys, since "
                "POT's signature is fit(Xs, ys, Xt, yt); call fit(Xs=..., Xt=...)"
            )
        if Xs is None or Xt is None:
            raise ValueError("fit needs Xs (source samples [N, D]) and Xt (target samples)")
        objective = build_objective(self.objective)
        if conditional and not objective.conditional:
            raise ValueError(
                f"objective {objective.name!r} does not fit conditional maps; use 'semidual'"
            )
        return objective

    def _run_phases(self, run: MapFit, saved: dict[str, Any] | None) -> None:
        r"""The fit's phases in order (a resumed fit skips those before its checkpoint's,
        whose logs it restored), then the floor; the fitted attributes they set."""
        self.bures_matrix_, self.bures_offset_ = run.bures
        if self.init_iter and run.saved_phase <= 0:
            self.log_["init"] = run.bures_start(self.init_iter)
        run.setup_objective()
        if run.saved_phase <= 1:
            self.log_["fit"] = run.train_objective(self._time_left())
        for r in range(self.refine_rounds):
            if 2 + r >= run.saved_phase:
                self._refine(run, r, saved)
        self.transform_.eval()
        if run.problem.held_out is not None and run.problem.conditions is None:
            self.log_["floor"] = run.floor(apply=self.floor)
            self.bures_matrix_, self.bures_offset_ = run.bures
            self.transform_ = run.T
        self.log_["kept"] = self.log_.get("floor", {}).get("kept", "network")

    def _refine(self, run: MapFit, r: int, saved: dict[str, Any] | None) -> None:
        r"""Refinement round ``r``: its maps (a resumed round's from the checkpoint, else fitted
        and their inner fit's log added to ``log_`` before the round runs, so that its
        checkpoints hold it), then the regression, logged."""
        if saved is not None and 2 + r == run.saved_phase:
            before, S = (self._transform_from(saved["extra"][k]) for k in ("before", "S"))
        else:
            before, S, inner_log = self._residual_map(run.problem)
            self.log_["refine"].append({"inner": inner_log})
        self.log_["refine"][r]["regression"] = run.refine(r, before, S)

    def _residual_map(
        self, problem: MapProblem
    ) -> tuple[BrenierTransform, BrenierTransform, dict]:
        r"""One refinement round's maps: :math:`T` as it is now (a frozen copy) and the optimal
        map :math:`S` from :math:`T_\#\mu` (the pushed ``Xs``) to ``Xt``, fitted with this
        fit's settings (those it chose from its data, ``settings_``, included; a copy of its
        objective) in ``refine_iter`` steps; and that fit's log."""
        self.transform_.zero_grad(set_to_none=True)  # not copied
        before = copy.deepcopy(self.transform_).eval().requires_grad_(False)

        @torch.no_grad()
        def push(X: Tensor | None) -> Tensor | None:
            return None if X is None else chunked(before.transport, X)

        seed = int(torch.randint(2**62, (), generator=problem.generator))
        settings: dict[str, Any] = {
            "max_iter": self.refine_iter,
            "max_time": None,
            "refine_rounds": 0,
            "random_state": seed,
        }
        settings["objective"] = copy.deepcopy(self.objective)  # an instance keeps its state
        # the settings this fit chose from its data, so that a resumed round rebuilds S as fitted
        settings |= {name: self.settings_[name] for name in CHOSEN}
        inner = BrenierMap(**(self.get_params(deep=False) | settings))
        inner.fit(
            push(problem.Xs), Xt=problem.Xt, Xs_val=push(problem.Xs_val), Xt_val=problem.Xt_val
        )
        return before, inner.transform_.requires_grad_(False), inner.log_

    def _time_left(self) -> float | None:
        r"""The seconds of ``max_time`` left to training after the Bures start (its logged
        time, so that a resumed fit counts it too); at least one step's worth is run."""
        if self.max_time is None:
            return None
        spent = self.log_["init"]["seconds"] if "init" in self.log_ else 0.0
        return max(self.max_time - spent, 1e-9)

    def _transform_from(self, state: dict[str, Tensor]) -> BrenierTransform:
        r"""A frozen :class:`BrenierTransform` holding ``state``, of this estimator's network or
        (a map that ended at the entropic map) of an :class:`otflows.nets.EntropicPotential`."""
        parameter = next(self.transform_.parameters())
        T = self._transform_for(state, self.n_features_in_, self.context_features_)
        T.to(dtype=parameter.dtype, device=parameter.device).load_state_dict(state)
        return T.eval().requires_grad_(False)

    def _signature(self, problem: MapProblem) -> dict[str, Any]:
        r"""What a checkpoint's fit must share with this one: the settings and the data's
        sizes."""
        config = self._config()
        config.pop("progress")
        return {"kind": "BrenierMap.fit", **config, **problem.shapes()}

    def _phase_options(self) -> PhaseOptions:
        r"""The options every phase of the fit shares."""
        return PhaseOptions(
            steps=self.max_iter,
            lr=self.settings_["lr"],
            clip_grad=self.clip_grad,
            interval=self.validation_interval or max(1, self.max_iter // 20),
            batch_sizes=(self.batch_size, self.target_batch_size or self.batch_size),
            validation_score=self.settings_["validation_score"],
            patience=self.patience,
            progress=self.progress,
        )

    def _new_transform(self, features: int, context_features: int | None, seed: int):
        r"""A fresh :class:`BrenierTransform` of this estimator's network, initialised from
        ``seed`` (the global generator is left as it was)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = self._build_net(features, context_features)
            return BrenierTransform(net, gamma=self.settings_["gamma"])

    def _build_net(
        self, features: int, context_features: int | None = None
    ) -> MonotoneGradientNet:
        kwargs = dict(self.net_kwargs or {})
        for name in ("hidden_features", "context_features"):
            if name in kwargs:
                raise ValueError(f"{name} is not for net_kwargs: BrenierMap sets it")
        if context_features is not None:
            kwargs["context_features"] = context_features
        width = self.settings_["hidden_features"]
        return build_net(self.net, features, hidden_features=width, **kwargs)

    def _spec(self, X: Any = None) -> tuple[torch.dtype, torch.device]:
        r"""The dtype, and the device: ``device``, else that of a tensor ``X``, else the CPU."""
        dtype = dtype_of(self.dtype)
        if self.device is not None:
            return dtype, as_device(self.device)
        return dtype, X.device if isinstance(X, Tensor) else torch.device("cpu")

    def _config(self) -> dict[str, Any]:
        r"""The constructor's arguments as JSON-serialisable values (an objective by its
        :attr:`Objective.config`, a NumPy generator as ``None``)."""
        config = self.get_params(deep=False)
        config["objective"] = build_objective(self.objective).config
        config["dtype"] = str(self._spec()[0]).removeprefix("torch.")
        config["device"] = None if self.device is None else str(self.device)
        if not isinstance(self.random_state, int):
            config["random_state"] = None
        return config

    def fit_transform(
        self,
        Xs: Tensor | np.ndarray | None = None,
        ys: Any = None,
        Xt: Tensor | np.ndarray | None = None,
        yt: Any = None,
        **fit_params: Any,
    ) -> Any:
        r"""``fit(Xs, ys, Xt, yt, **fit_params).transform(Xs, cs=cs)``, ``cs`` the source
        conditions among ``fit_params``."""
        fitted = self.fit(Xs, ys, Xt, yt, **fit_params)
        return fitted.transform(cast(Any, Xs), cs=fit_params.get("cs"))
