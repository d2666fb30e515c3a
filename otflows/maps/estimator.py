r"""``BrenierMap``: the optimal transport map between two data sets, POT/scikit-learn style."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from otflows import distributed
from otflows.affine import bures_map, set_affine
from otflows.checkpoint import FORMAT_VERSION, atomic_save, safe_load
from otflows.maps.objectives import Objective, build_objective
from otflows.nets import build_net
from otflows.optim import adam, descend
from otflows.transforms import BrenierTransform
from otflows.validation import as_samples

__all__ = ["BrenierMap"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
CHUNK = 8192  # samples per forward pass of transform / inverse_transform


class BrenierMap:
    r"""The :math:`W_2`-optimal map from source to target samples, as a Brenier transform.

    The map is :math:`T(x) = \nabla\varphi(x) = G(x) + \gamma x` with :math:`G` a monotone
    gradient network (:class:`otflows.BrenierTransform`). By Brenier's theorem the gradient of a
    convex function that pushes :math:`\mu` onto :math:`\nu` *is* the optimal map, so fitting
    :math:`T_\#\mu = \nu` by any of the objectives of :mod:`otflows.maps.objectives` gives it,
    with no dual or minimax training; :meth:`inverse_transform` is the exact inverse (damped
    Newton). Training starts from the Gaussian (Bures) map of the data: the network's quadratic
    term is set to it (:func:`otflows.affine.set_affine`) and then the whole map is
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

    The conventions are POT's ``ot.da`` and scikit-learn's: :meth:`fit` returns the estimator,
    fitted attributes end with ``_``, NumPy in gives NumPy out and torch in gives torch out.

    Arguments:
        net: The monotone gradient network: ``"mmgn"``, ``"cmgn"``, ``"icgn"``, ``"icnn"`` or
            ``"qicnn"`` (:class:`otflows.QuadraticICNN`: the most accurate on the
            :math:`W_2` benchmark's non-Gaussian pairs; M-MGN suffices near-Gaussian ones).
        objective: ``"semidual"`` (exact conjugates, the default: best on every benchmark of
            ``benchmarks/ot_maps.py``), ``"likelihood"`` (onto a Gaussian fitted to ``Xt``),
            ``"sinkhorn"`` (debiased Sinkhorn divergence), or an
            :class:`otflows.maps.objectives.Objective` (e.g.
            ``TargetLikelihood(flow_fitted_to_Xt)``).
        hidden_features: The network's hidden width.
        max_iter: Optimisation steps (and steps of each refinement round's regression).
        batch_size: Source samples per step (and target samples, unless
            ``target_batch_size`` is given).
        lr: Adam's peak learning rate (linear warm-up over 10 % of the steps, then cosine).
        gamma: The strong-monotonicity floor :math:`\gamma > 0` of the map.
        device: ``"cpu"``, ``"cuda"``…; ``None`` takes CUDA when available.
        dtype: ``torch.float32`` or ``torch.float64`` (or their names).
        random_state: Seeds the network's initialisation and the minibatches.
        net_kwargs: The network's other arguments (e.g. ``{"num_modules": 4}``).
        target_batch_size: Target samples per step (``None``: ``batch_size``). The semi-dual's
            cost is one Newton solve per target sample; on the :math:`W_2` benchmark (d = 64)
            256 targets beside 1024 sources fitted the same map per step as 1024 (L2-UVP 9.6
            vs 9.2 % after 1500 steps) with a quarter of the solves.
        init_iter: Steps of regression onto the Bures map before training (0: only the
            quadratic term is set).
        refine_rounds: Rounds of residual refinement after training (0: none). Each round's
            fit of :math:`S` gets a copy of the objective, which must therefore depend on the
            target alone (as all of :mod:`otflows.maps.objectives` do).
        refine_iter: Steps of each round's fit of :math:`S` (after its own ``init_iter``
            steps of Bures start).
        clip_grad: Gradient-norm clipping (``None``: none).
        progress: Whether to show a progress bar.

    Attributes:
        transform_: The fitted :class:`otflows.BrenierTransform`.
        n_features_in_: The dimension ``D``.
        bures_matrix_, bures_offset_: The Bures map :math:`x \mapsto A x + b` of the data.
        log_: ``{"loss": [...], "init_loss": [...], "refine": [{"loss": [...],
            "inner_loss": [...]}, ...], "seconds": float, "objective": {...}}``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> Xs, Xt = rng.normal(size=(256, 2)), 2 * rng.normal(size=(256, 2)) + 1
        >>> otmap = BrenierMap(max_iter=20, hidden_features=8, random_state=0, progress=False)
        >>> Y = otmap.fit(Xs=Xs, Xt=Xt).transform(Xs)
        >>> Y.shape, Y.dtype
        ((256, 2), dtype('float64'))
        >>> bool(np.allclose(otmap.inverse_transform(Y), Xs, atol=1e-3))
        True
    """

    def __init__(
        self,
        net: str = "mmgn",
        objective: str | Objective = "semidual",
        hidden_features: int = 64,
        max_iter: int = 2000,
        batch_size: int = 256,
        lr: float = 1e-3,
        gamma: float = 1e-2,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str = torch.float32,
        random_state: int | None = None,
        *,
        net_kwargs: dict[str, Any] | None = None,
        target_batch_size: int | None = None,
        init_iter: int = 300,
        refine_rounds: int = 0,
        refine_iter: int = 1000,
        clip_grad: float | None = 10.0,
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
        self.progress = progress

    # -- scikit-learn protocol ---------------------------------------------------------------
    _PARAMS = (
        "net",
        "objective",
        "hidden_features",
        "max_iter",
        "batch_size",
        "lr",
        "gamma",
        "device",
        "dtype",
        "random_state",
        "net_kwargs",
        "target_batch_size",
        "init_iter",
        "refine_rounds",
        "refine_iter",
        "clip_grad",
        "progress",
    )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        r"""The constructor's arguments (scikit-learn's protocol)."""
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params: Any) -> BrenierMap:
        r"""Sets constructor arguments (scikit-learn's protocol); returns the estimator."""
        for name, value in params.items():
            if name not in self._PARAMS:
                raise ValueError(f"{name!r} is not a parameter of BrenierMap; see get_params()")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        return f"BrenierMap(net={self.net!r}, objective={self._objective_name()!r})"

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, Xs: Tensor | np.ndarray, Xt: Tensor | np.ndarray) -> BrenierMap:
        r"""Fits the map from ``Xs [N, D]`` (source) to ``Xt [M, D]`` (target samples; not
        paired with ``Xs``, ``M`` may differ from ``N``). Returns the estimator.

        Under ``torchrun`` (see :mod:`otflows.distributed`) every process draws the same
        minibatches and computes the loss of its share of each (the batch sizes must be
        multiples of the number of processes); ``DistributedDataParallel`` averages the
        gradients, so the fit equals the single-process one up to summation order."""
        dtype, device = self._spec()
        counts = {"max_iter": self.max_iter, "batch_size": self.batch_size}
        if self.target_batch_size is not None:
            counts["target_batch_size"] = self.target_batch_size
        if self.refine_rounds:
            counts["refine_iter"] = self.refine_iter
        for name, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        for name in ("init_iter", "refine_rounds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer; got {value!r}")
        size = distributed.world()[1]
        for name in ("batch_size", "target_batch_size"):
            if counts.get(name, 0) % size:
                raise ValueError(
                    f"{name} ({counts[name]}) must be a multiple of the number of "
                    f"processes ({size})"
                )
        Xs = as_samples(Xs, "Xs", dtype=dtype, device=device)
        Xt = as_samples(Xt, "Xt", features=Xs.shape[1], dtype=dtype, device=device)
        objective = build_objective(self.objective)
        generator = torch.Generator(device="cpu")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(distributed.broadcast_seed(self.random_state))
            generator.manual_seed(int(torch.randint(2**62, ())))
            T = BrenierTransform(self._build_net(Xs.shape[1]), gamma=self.gamma)
        T.to(dtype=dtype, device=device)

        start = time.perf_counter()
        self.n_features_in_ = Xs.shape[1]
        self.transform_ = T
        self.log_ = {"objective": objective.config, "loss": [], "init_loss": [], "refine": []}
        T.train()
        T.initialize(Xs)
        self.bures_matrix_, self.bures_offset_ = bures_map(Xs, Xt)
        set_affine(T, self.bures_matrix_, self.bures_offset_)
        scale = float(Xt.var(0).sum())  # the regressions' losses are relative to Var(ν)

        def regression(target: Callable[[Tensor], Tensor]) -> Callable[..., Tensor]:
            return lambda xs, xt, j: (T.transport(xs) - target(xs)).square().sum(-1).mean() / scale

        data = (Xs, Xt, generator)
        bures = regression(self._bures)
        self._optimize(
            bures, True, *data, self.init_iter, self.log_["init_loss"], None, "Bures start"
        )
        objective.setup(T, Xs, Xt)
        self._optimize(
            lambda xs, xt, j: objective.loss(T, xs, xt, j),
            objective.separable,
            *data,
            self.max_iter,
            self.log_["loss"],
            "warmup_cosine",
            "BrenierMap.fit",
        )
        for r in range(self.refine_rounds):
            composed, inner_loss = self._residual_step(Xs, Xt, generator)
            record = {"inner_loss": inner_loss, "loss": []}
            self.log_["refine"].append(record)
            self._optimize(
                regression(composed),
                True,
                *data,
                self.max_iter,
                record["loss"],
                "warmup_cosine",
                f"refinement {r + 1}/{self.refine_rounds}",
            )
        T.eval()
        self.log_["seconds"] = time.perf_counter() - start
        return self

    def _residual_step(
        self, Xs: Tensor, Xt: Tensor, generator: torch.Generator
    ) -> tuple[Callable[[Tensor], Tensor], list[float]]:
        r"""One refinement round's target :math:`S \circ T`, with :math:`T` as it is now and
        :math:`S` the optimal map from :math:`T_\#\mu` (the pushed ``Xs``) to ``Xt``, fitted
        with this estimator's settings (and a copy of its objective) in ``refine_iter`` steps;
        and that fit's loss history."""
        self.transform_.zero_grad(set_to_none=True)  # not copied
        before = copy.deepcopy(self.transform_).eval().requires_grad_(False)
        with torch.no_grad():
            pushed = torch.cat([before.transport(x) for x in Xs.split(CHUNK)])
        seed = int(torch.randint(2**62, (), generator=generator))
        settings = {"max_iter": self.refine_iter, "refine_rounds": 0, "random_state": seed}
        settings["objective"] = copy.deepcopy(self.objective)  # an instance keeps its state
        inner = BrenierMap(**(self.get_params() | settings)).fit(pushed, Xt)
        S = inner.transform_

        @torch.no_grad()
        def composed(x: Tensor) -> Tensor:
            return S.transport(before.transport(x))

        return composed, inner.log_["loss"]

    def _optimize(
        self,
        loss: Callable[[Tensor, Tensor, Tensor], Tensor],
        separable: bool,
        Xs: Tensor,
        Xt: Tensor,
        generator: torch.Generator,
        steps: int,
        record: list[float],
        schedule: str | None,
        description: str,
    ) -> None:
        if steps == 0:
            return
        optimizer, scheduler = adam(self.transform_.parameters(), self.lr, steps, schedule)
        # each process: its shard of the source batch, and of the target batch too when the
        # loss is a mean over samples (else the objective gathers the whole batch)
        shard_loss = distributed.parallel(self.transform_, loss)
        show = self.progress and distributed.is_main()
        bar = tqdm(range(steps), disable=not show, desc=description, unit="step")
        target_batch_size = self.target_batch_size or self.batch_size
        for step in bar:
            i = torch.randint(Xs.shape[0], (self.batch_size,), generator=generator)
            j = torch.randint(Xt.shape[0], (target_batch_size,), generator=generator)
            i, j = distributed.shard(i).to(Xs.device), j.to(Xt.device)
            if separable:
                j = distributed.shard(j)
            value = shard_loss(Xs[i], Xt[j], j)
            record.append(descend(value, optimizer, scheduler, self.clip_grad, step))
            if step % 10 == 0:
                bar.set_postfix(loss=f"{record[-1]:.4g}")

    def _bures(self, x: Tensor) -> Tensor:
        return x @ self.bures_matrix_ + self.bures_offset_

    def _build_net(self, features: int):
        kwargs = dict(self.net_kwargs or {})
        if "hidden_features" in kwargs:
            raise ValueError("give hidden_features as BrenierMap's argument, not in net_kwargs")
        return build_net(self.net, features, hidden_features=self.hidden_features, **kwargs)

    def _spec(self) -> tuple[torch.dtype, torch.device]:
        dtype = DTYPES.get(self.dtype, self.dtype) if isinstance(self.dtype, str) else self.dtype
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype must be torch.float32 or torch.float64; got {self.dtype!r}")
        device = self.device
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return dtype, torch.device(device)

    def _objective_name(self) -> str:
        return self.objective if isinstance(self.objective, str) else self.objective.name

    # -- using the fitted map ----------------------------------------------------------------
    def transform(self, Xs: Tensor | np.ndarray) -> Tensor | np.ndarray:
        r"""The optimal map :math:`T(x)` of source samples ``Xs [N, D]`` → ``[N, D]``."""
        return self._apply(Xs, "Xs", lambda x: self.transform_.transport(x))

    def inverse_transform(self, Xt: Tensor | np.ndarray) -> Tensor | np.ndarray:
        r"""The exact inverse :math:`T^{-1}(y)` of target points ``Xt [M, D]`` → ``[M, D]``
        (damped Newton to the transform's tolerance; raises
        :class:`otflows.InverseError` naming the rows that miss it)."""
        return self._apply(Xt, "Xt", lambda y: self.transform_.inverse(y)[0])

    def fit_transform(self, Xs: Tensor | np.ndarray, Xt: Tensor | np.ndarray) -> Any:
        r"""``fit(Xs, Xt).transform(Xs)``."""
        return self.fit(Xs, Xt).transform(Xs)

    def _apply(self, X: Tensor | np.ndarray, name: str, f: Callable[[Tensor], Tensor]) -> Any:
        if not hasattr(self, "transform_"):
            raise RuntimeError("this BrenierMap is not fitted yet: call fit(Xs=..., Xt=...)")
        parameter = next(self.transform_.parameters())
        Z = as_samples(
            X, name, features=self.n_features_in_, dtype=parameter.dtype, device=parameter.device
        )
        with torch.no_grad():
            Y = torch.cat([f(chunk) for chunk in Z.split(CHUNK)])
        if isinstance(X, Tensor):
            return Y
        out = Y.cpu().numpy()
        return out.astype(X.dtype) if np.issubdtype(X.dtype, np.floating) else out

    # -- checkpoints -------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        r"""Saves the fitted map (weights, config with the format version) atomically; read it
        back with :meth:`load` (``torch.load(weights_only=True)``).

        Example:
            >>> import tempfile, os
            >>> path = os.path.join(tempfile.mkdtemp(), "map.pt")
            >>> X = np.random.default_rng(0).normal(size=(64, 2))
            >>> otmap = BrenierMap(max_iter=2, init_iter=0, hidden_features=4, progress=False)
            >>> otmap.fit(X, X + 1).save(path)
            >>> bool(np.allclose(BrenierMap.load(path).transform(X), otmap.transform(X)))
            True
        """
        if not hasattr(self, "transform_"):
            raise RuntimeError("this BrenierMap is not fitted yet: nothing to save")
        config = {name: getattr(self, name) for name in self._PARAMS if name != "objective"}
        config["objective"] = build_objective(self.objective).config
        config["dtype"] = str(next(self.transform_.parameters()).dtype).removeprefix("torch.")
        config["device"] = None if self.device is None else str(self.device)
        atomic_save(
            {
                "format_version": FORMAT_VERSION,
                "kind": "BrenierMap",
                "config": json.dumps(config),
                "state_dict": {k: v.cpu() for k, v in self.transform_.state_dict().items()},
                "bures": [self.bures_matrix_.cpu(), self.bures_offset_.cpu()],
                "log": json.dumps(self.log_),
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> BrenierMap:
        r"""Loads a map saved by :meth:`save` (on ``device``, default the saved one or CPU)."""
        payload = safe_load(path)
        if payload.get("kind") != "BrenierMap":
            raise ValueError(f"{path} is not a BrenierMap checkpoint")
        config = json.loads(payload["config"])
        config["device"] = device if device is not None else (config["device"] or "cpu")
        estimator = cls(**config)
        dtype, device = estimator._spec()
        state = payload["state_dict"]
        features = state["shift"].shape[0]
        estimator.transform_ = BrenierTransform(
            estimator._build_net(features), gamma=estimator.gamma
        ).to(dtype=dtype, device=device)
        estimator.transform_.load_state_dict(state)
        estimator.transform_.eval()
        estimator.n_features_in_ = features
        estimator.bures_matrix_, estimator.bures_offset_ = (
            b.to(dtype=dtype, device=device) for b in payload["bures"]
        )
        estimator.log_ = json.loads(payload["log"])
        return estimator
