r"""``BrenierMap``: the optimal transport map between two data sets, POT/scikit-learn style."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from ot.da import BaseTransport
from torch import Tensor

from otflows.maps.fit import MapResult, fit_brenier_map, map_config, map_spec
from otflows.maps.fitted import FittedMap
from otflows.maps.objectives import Objective
from otflows.maps.settings import changed_params

__all__ = ["BrenierMap"]


class BrenierMap(FittedMap, BaseTransport):
    r"""The :math:`W_2`-optimal map from source to target samples, as a Brenier transform.

    :math:`T(x) = \nabla\varphi(x) = G(x) + \gamma x`, :math:`G` a monotone gradient network
    (:class:`otflows.BrenierTransform`): a gradient of a convex function that pushes :math:`\mu`
    onto :math:`\nu` *is* the optimal map (Brenier), so fitting :math:`T_\#\mu = \nu` gives it,
    with no minimax; :meth:`inverse_transform` is its exact inverse. The fit starts at the
    Gaussian (Bures) map of the data, trains an objective, validates on held-out rows and ends
    at the simple map (Bures or entropic) unless the network is significantly better there
    (:mod:`otflows.maps.fallback`). POT's ``ot.da`` conventions (``fit(Xs=, Xt=)``,
    ``transform``) and scikit-learn's (``get_params``, fitted attributes ending in ``_``; NumPy
    in, NumPy out). The docs' OT-maps guide describes each phase and its study.

    Arguments:
        net: ``"qicnn"``, ``"mmgn"``, ``"cmgn"``, ``"icgn"`` or ``"icnn"``.
        objective: ``"semidual"`` (exact conjugates), ``"likelihood"``, ``"sinkhorn"``, or an
            :class:`otflows.maps.objectives.Objective`.
        hidden_features: The width (``None``: 16 below 100 rows per dimension, else 64).
        max_iter: Training steps (and steps of each refinement round's regression).
        batch_size: Source rows per step (and target rows unless ``target_batch_size``).
        lr: Adam's peak rate after a 10 % warm-up, then cosine (``None``: 1e-2 below 100 rows
            per dimension, else 3e-2).
        gamma: :math:`\gamma`, with :math:`J_T \succeq \gamma I` (``None``: 1e-2, or an eighth
            of the data's Bures map's smallest slope where less).
        device: ``None``: torch input's device, else the CPU. dtype: float32 or float64.
        random_state: Seeds initialisation, split and minibatches (int, NumPy generator).
        net_kwargs: The network's other arguments. target_batch_size: Target rows per step.
        init_iter: Steps of regression onto the Bures map before training.
        refine_rounds: Rounds of residual refinement (fit :math:`S` from :math:`T_\#\mu` to
            :math:`\nu` in ``refine_iter`` steps, regress :math:`T` onto :math:`S\circ T`).
        clip_grad: Gradient-norm clip (``None``: none).
        validation_fraction: Share of each side held out (at most 1024 rows; 0: none).
        validation_interval: Steps between validations (``None``: ``max_iter // 20``).
        validation_score: ``"w2"`` (held-out :math:`W_2^2`, below 500 held-out rows) or
            ``"objective"`` (the objective on them) selects the kept weights.
        patience: Validations without newly kept weights before stopping (``None``: never).
        max_time: Wall-clock seconds for the Bures start and training.
        threads: CPU threads (``None``: by the work of a step).
        fallback: Whether the fit may end at the simple map (``False``: at the network, the
            verdict still logged). progress: Whether to show progress bars.
        floor: The old name of ``fallback`` (deprecated).

    Attributes:
        transform_: The fitted :class:`otflows.BrenierTransform`.
        n_features_in_: The dimension ``D``.
        settings_: The width, rate, score and :math:`\gamma` used, and what chose them.
        bures_matrix_, bures_offset_: The Bures map :math:`x \mapsto Ax + b` of the rows.
        context_features_, conditions_: A conditional map's ``C`` and conditions ``[G, C]``.
        log_: Each phase's :class:`otflows.training.parts.TrainingHistory` (``"init"``,
            ``"fit"``, ``"refine"``), ``"fallback"`` (its tests), ``"kept"`` and ``"seconds"``.

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
        fallback: bool = True,
        progress: bool = True,
        floor: bool | None = None,
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
        self.fallback = fallback
        self.progress = progress
        self.floor = floor

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
        self._check_fit(Xs, ys, Xt, cs)
        report = None
        if callback is not None:  # the estimator holds the fit so far, as it will the result

            def report(phase: str, step: int, result: MapResult) -> None:
                self._store(result)
                callback(phase, step, self)

        result = fit_brenier_map(
            cast(Any, Xs),
            cast(Any, Xt),
            **{"cs": cs, "ct": ct, "Xs_val": Xs_val, "Xt_val": Xt_val},
            **{"cs_val": cs_val, "ct_val": ct_val},
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            resume=resume,
            callback=report,
            **self.get_params(deep=False),
        )
        self._store(result)
        return self

    def _store(self, result: MapResult) -> None:
        r"""The fitted attributes of a fit's ``result``."""
        self.transform_ = result.transform
        self.n_features_in_ = result.bures[0].shape[0]
        self.conditions_ = result.conditions
        self.context_features_ = None if result.conditions is None else result.conditions.shape[1]
        self.bures_matrix_, self.bures_offset_ = result.bures
        self.settings_ = result.settings
        self.log_ = result.log

    def _check_fit(self, Xs: Any, ys: Any, Xt: Any, cs: Any) -> None:
        r"""The arguments of POT's signature that :meth:`fit` checks before the data."""
        if Xt is None and ys is not None:
            raise ValueError(
                "Xt is missing and ys is given: fit(Xs, Xt) passes the targets as ys, since "
                "POT's signature is fit(Xs, ys, Xt, yt); call fit(Xs=..., Xt=...)"
            )
        if Xs is None or Xt is None:
            raise ValueError("fit needs Xs (source samples [N, D]) and Xt (target samples)")

    def _spec(self, X: Any = None) -> tuple[torch.dtype, torch.device]:
        r"""The dtype, and the device: ``device``, else that of a tensor ``X``, else the CPU."""
        return map_spec(self.get_params(deep=False), X)

    def _config(self) -> dict[str, Any]:
        r"""The constructor's arguments as JSON-serialisable values."""
        return map_config(self.get_params(deep=False))

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
