r"""The fit of a Brenier map as a function: samples and options in, an immutable result out
(:func:`fit_brenier_map`). :class:`otflows.BrenierMap` checks its arguments, calls it and keeps
the result as its fitted attributes; each refinement round calls it again."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from otflows.maps.objectives import Objective, build_objective
from otflows.maps.phases import MapFit, PhaseOptions
from otflows.maps.problem import MapProblem, build_problem, chunked
from otflows.maps.settings import CHOSEN, check_params, dtype_of, options_of, settings_for
from otflows.nets import EntropicPotential, MonotoneGradientNet, build_net
from otflows.training import distributed
from otflows.training.loop import load_checkpoint
from otflows.training.threads import fit_threads
from otflows.transforms.affine import bures_map
from otflows.transforms.brenier import BrenierTransform
from otflows.validation import as_device, deprecated_name, seed_of

__all__ = ["MapResult", "fit_brenier_map", "map_config", "map_spec", "map_transform"]

Array = Tensor | np.ndarray


@dataclass(frozen=True)
class MapResult:
    r"""What :func:`fit_brenier_map` returns: the map the fit ended at and how it got there.

    Attributes:
        transform: The fitted :class:`otflows.BrenierTransform`, in eval mode (its network an
            :class:`otflows.nets.EntropicPotential` where the fit ended at the entropic map).
        bures: The Bures map ``(A [D, D], b [D])`` of the training rows (of all the rows where
            the fit ended at it).
        settings: The width, learning rate, validation score and :math:`\gamma` used, and the
            data's sizes that chose them (:func:`otflows.maps.settings.settings_for`).
        log: Each phase's history, the fallback's record, ``"kept"`` and ``"seconds"``
            (:class:`otflows.BrenierMap`'s ``log_``).
        conditions: The distinct conditions ``[G, C]`` of a conditional fit, else ``None``.
    """

    transform: BrenierTransform
    bures: tuple[Tensor, Tensor]
    settings: dict[str, Any]
    log: dict[str, Any]
    conditions: Tensor | None


def fit_brenier_map(
    Xs: Array,
    Xt: Array,
    *,
    cs: Array | None = None,
    ct: Array | None = None,
    Xs_val: Array | None = None,
    Xt_val: Array | None = None,
    cs_val: Array | None = None,
    ct_val: Array | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    callback: Callable[[str, int, MapResult], None] | None = None,
    **options: Any,
) -> MapResult:
    r"""Fits the Brenier map from ``Xs [N, D]`` to ``Xt [M, D]`` (unpaired samples).

    The phases run in order, each a run of the one trainer (:mod:`otflows.maps.phases`): the
    regression onto the Bures map, the objective's training, each refinement round (which
    fits the residual map by calling this function), and the fallback to the simple map.

    Arguments:
        Xs, Xt: Source and target samples (arrays or tensors).
        cs, ct, Xs_val, Xt_val, cs_val, ct_val: Conditions and held-out rows, as
            :meth:`otflows.BrenierMap.fit` takes them.
        checkpoint, checkpoint_every, resume: As :meth:`otflows.BrenierMap.fit`.
        callback: Called as ``callback(phase, step, result)`` every ``validation_interval``
            steps of each phase, ``result`` the fit so far.
        options: :class:`otflows.BrenierMap`'s arguments (its defaults for those not given).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> Xs, Xt = rng.normal(size=(256, 2)), 2 * rng.normal(size=(256, 2)) + 1
        >>> result = fit_brenier_map(Xs, Xt, max_iter=20, hidden_features=8, progress=False)
        >>> result.transform.transport(torch.zeros(1, 2, dtype=torch.float32)).shape
        torch.Size([1, 2])
        >>> result.log["kept"] in ("network", "bures", "entropic")
        True
    """
    params = options_of(options)
    objective = _objective(params, cs, ct)
    problem, seed = _problem(
        params, Xs, Xt, cs=cs, ct=ct, Xs_val=Xs_val, Xt_val=Xt_val, cs_val=cs_val, ct_val=ct_val
    )
    dtype, device = problem.Xs.dtype, problem.device
    bures = bures_map(problem.Xs, problem.Xt)
    settings = _settings(params, problem, bures)
    T = _new_transform(params, settings, problem, seed).to(dtype=dtype, device=device)
    signature = {"kind": "BrenierMap.fit", **_checkpoint_config(params), **problem.shapes()}
    saved = load_checkpoint(checkpoint, signature, device) if checkpoint and resume else None
    log: dict[str, Any] = {"objective": objective.config, "settings": settings, "refine": []}
    if saved is not None:  # the phases before the checkpoint's are not run again
        log = json.loads(saved["extra"]["log"])
    conditions = None if problem.conditions is None else problem.conditions.table

    work = sum(p.numel() for p in T.parameters()) * params["batch_size"]
    with fit_threads(work, params["threads"], device):
        start = time.perf_counter()
        run = MapFit(
            T,
            problem,
            objective,
            _phase_options(params, settings),
            bures=bures,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            signature=signature,
            saved_phase=-1 if saved is None else saved["extra"]["phase"],
            log=log,
            callback=None
            if callback is None  # the fit so far, as the result will hold it
            else lambda name, step: callback(
                name, step, MapResult(run.T, run.bures, settings, log, conditions)
            ),
        )
        _run_phases(run, params, settings, log, saved)
        log["seconds"] = time.perf_counter() - start  # this call's (each: its own)
    return MapResult(run.T.eval(), run.bures, settings, log, conditions)


def _problem(
    params: dict[str, Any], Xs: Array, Xt: Array, **data: Array | None
) -> tuple[MapProblem, int]:
    r"""The fit's data (:func:`otflows.maps.problem.build_problem`) on the options' dtype and
    device, and the fit's seed (the same in every process)."""
    dtype, device = map_spec(params, Xs)
    seed = distributed.broadcast_seed(seed_of(params["random_state"]))
    fraction = params["validation_fraction"]
    problem = build_problem(
        Xs, Xt, **data, dtype=dtype, device=device, seed=seed, validation_fraction=fraction
    )
    return problem, seed


def _objective(params: dict[str, Any], cs: Array | None, ct: Array | None) -> Objective:
    r"""The options checked (:func:`otflows.maps.settings.check_params`), and the conditions
    given; the objective, built."""
    conditional = ct is not None
    if cs is not None and not conditional:
        raise ValueError(
            "cs is given without ct: a conditional fit needs the target samples' "
            "conditions ct [M, C] (cs may be None: source samples shared by every condition)"
        )
    check_params(params, conditional)
    objective = build_objective(params["objective"])
    if conditional and not objective.conditional:
        raise ValueError(
            f"objective {objective.name!r} does not fit conditional maps; use 'semidual'"
        )
    return objective


def _settings(
    params: dict[str, Any], problem: MapProblem, bures: tuple[Tensor, Tensor]
) -> dict[str, Any]:
    r"""The settings that follow the data (:func:`otflows.maps.settings.settings_for`)."""
    rows, features = min(len(problem.Xs), len(problem.Xt)), problem.Xs.shape[1]
    held_out = 0 if problem.held_out is None else min(map(len, problem.held_out[:2]))
    slope = float(torch.linalg.eigvalsh(bures[0]).min())
    return settings_for(params, rows, features, slope, held_out)


def _run_phases(
    run: MapFit,
    params: dict[str, Any],
    settings: dict[str, Any],
    log: dict[str, Any],
    saved: dict[str, Any] | None,
) -> None:
    r"""The phases in order into ``log`` (a resumed fit skips those before its checkpoint's,
    whose logs it restored), then the fallback."""
    if params["init_iter"] and run.saved_phase <= 0:
        log["init"] = run.bures_start(params["init_iter"])
    run.setup_objective()
    if run.saved_phase <= 1:
        spent = log["init"]["seconds"] if "init" in log else 0.0  # a resumed fit counts it too
        budget = None if params["max_time"] is None else max(params["max_time"] - spent, 1e-9)
        log["fit"] = run.train_objective(budget)
    for r in range(params["refine_rounds"]):
        if 2 + r < run.saved_phase:
            continue
        if saved is not None and 2 + r == run.saved_phase:  # the round's maps, as fitted
            before, S = (
                _frozen(saved["extra"][k], params, settings, run) for k in ("before", "S")
            )
        else:  # in the log before the round runs, so that its checkpoints hold it
            before, S, inner = _residual_map(run, params, settings)
            log["refine"].append({"inner": inner})
        log["refine"][r]["regression"] = run.refine(r, before, S)
    run.T.eval()
    if run.problem.held_out is not None and run.problem.conditions is None:
        fallback = params["fallback"]
        if params["floor"] is not None:
            fallback = deprecated_name("fallback", None, "floor", params["floor"])
        log["fallback"] = run.fall_back(apply=fallback)
    log["kept"] = log.get("fallback", {}).get("kept", "network")


def _residual_map(
    run: MapFit, params: dict[str, Any], settings: dict[str, Any]
) -> tuple[BrenierTransform, BrenierTransform, dict]:
    r"""One refinement round's maps: :math:`T` as it is now (a frozen copy) and the optimal
    map :math:`S` from :math:`T_\#\mu` (the pushed ``Xs``) to ``Xt``, fitted with this fit's
    options and the settings it chose from its data (so that a resumed round rebuilds
    :math:`S` as fitted), a copy of its objective, ``refine_iter`` steps; that fit's log."""
    run.T.zero_grad(set_to_none=True)  # not copied
    before = copy.deepcopy(run.T).eval().requires_grad_(False)
    problem = run.problem

    @torch.no_grad()
    def push(X: Tensor) -> Tensor:
        return chunked(before.transport, X)

    inner = params | {name: settings[name] for name in CHOSEN}
    inner |= {"max_iter": params["refine_iter"], "max_time": None, "refine_rounds": 0}
    inner["random_state"] = int(torch.randint(2**62, (), generator=problem.generator))
    inner["objective"] = copy.deepcopy(params["objective"])  # an instance keeps its state
    Xs_val = None if problem.Xs_val is None else push(problem.Xs_val)
    result = fit_brenier_map(
        push(problem.Xs), problem.Xt, Xs_val=Xs_val, Xt_val=problem.Xt_val, **inner
    )
    return before, result.transform.requires_grad_(False), result.log


def _frozen(
    state: dict[str, Tensor], params: dict[str, Any], settings: dict[str, Any], run: MapFit
) -> BrenierTransform:
    r"""A frozen transform holding a checkpoint's ``state``, on the fitted map's dtype and
    device."""
    parameter = next(run.T.parameters())
    features, context_features = run.problem.Xs.shape[1], run.problem.context_features
    T = map_transform(state, params, settings, features, context_features)
    T.to(dtype=parameter.dtype, device=parameter.device).load_state_dict(state)
    return T.eval().requires_grad_(False)


def _phase_options(params: dict[str, Any], settings: dict[str, Any]) -> PhaseOptions:
    r"""The options every phase of the fit shares."""
    steps = params["max_iter"]
    return PhaseOptions(
        steps=steps,
        lr=settings["lr"],
        clip_grad=params["clip_grad"],
        interval=params["validation_interval"] or max(1, steps // 20),
        batch_sizes=(params["batch_size"], params["target_batch_size"] or params["batch_size"]),
        validation_score=settings["validation_score"],
        patience=params["patience"],
        progress=params["progress"],
    )


def _new_transform(
    params: dict[str, Any], settings: dict[str, Any], problem: MapProblem, seed: int
) -> BrenierTransform:
    r"""A fresh transform of the options' network, initialised from ``seed`` (the global
    generator is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _build_net(params, settings, problem.Xs.shape[1], problem.context_features)
        return BrenierTransform(net, gamma=settings["gamma"])


def _build_net(
    params: dict[str, Any], settings: dict[str, Any], features: int, context_features: int | None
) -> MonotoneGradientNet:
    kwargs = dict(params["net_kwargs"] or {})
    for name in ("hidden_features", "context_features"):
        if name in kwargs:
            raise ValueError(f"{name} is not for net_kwargs: BrenierMap sets it")
    if context_features is not None:
        kwargs["context_features"] = context_features
    width = settings["hidden_features"]
    return build_net(params["net"], features, hidden_features=width, **kwargs)


def map_transform(
    state: dict[str, Tensor],
    params: dict[str, Any],
    settings: dict[str, Any],
    features: int,
    context_features: int | None,
) -> BrenierTransform:
    r"""A :class:`BrenierTransform` to load a fitted map's ``state`` into: of the options'
    network, or of an :class:`otflows.nets.EntropicPotential` where ``state`` holds its atoms
    (a map that ended at the entropic map).

    Example:
        >>> T = map_transform({}, options_of({}), {"hidden_features": 8, "gamma": 0.01}, 2, None)
        >>> type(T.net).__name__
        'QuadraticICNN'
    """
    if "net.Y" in state:
        net: MonotoneGradientNet = EntropicPotential(features, len(state["net.Y"]))
    else:
        net = _build_net(params, settings, features, context_features)
    return BrenierTransform(net, gamma=settings["gamma"])


def map_spec(params: dict[str, Any], X: Any = None) -> tuple[torch.dtype, torch.device]:
    r"""The dtype, and the device: the options' ``device``, else that of a tensor ``X``, else
    the CPU (never a GPU unasked).

    Example:
        >>> map_spec(options_of({"dtype": "float64"}), torch.zeros(2))
        (torch.float64, device(type='cpu'))
    """
    dtype = dtype_of(params["dtype"])
    if params["device"] is not None:
        return dtype, as_device(params["device"])
    return dtype, X.device if isinstance(X, Tensor) else torch.device("cpu")


def map_config(params: dict[str, Any]) -> dict[str, Any]:
    r"""The options as JSON-serialisable values (an objective by its
    :attr:`otflows.maps.objectives.Objective.config`, a NumPy generator as ``None``): what a
    saved map and a checkpoint record.

    Example:
        >>> map_config(options_of({"random_state": np.random.default_rng(0)}))["random_state"]
    """
    config = dict(params)
    config["objective"] = build_objective(params["objective"]).config
    config["dtype"] = str(map_spec(params)[0]).removeprefix("torch.")
    config["device"] = None if params["device"] is None else str(params["device"])
    if not isinstance(params["random_state"], int):
        config["random_state"] = None
    return config


def _checkpoint_config(params: dict[str, Any]) -> dict[str, Any]:
    r"""What a checkpoint's fit must share with this one, of the options."""
    config = map_config(params)
    config.pop("progress")
    return config
