r"""A fitted Brenier map in use: applied to new rows (POT's ``transform`` and
``inverse_transform``), saved and loaded; the half of :class:`otflows.BrenierMap` that needs no
fit."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast, overload

import numpy as np
import torch
from torch import Tensor

from otflows.maps.fit import map_transform
from otflows.maps.problem import CHUNK, chunked
from otflows.maps.settings import CHOSEN
from otflows.training.checkpoint import FORMAT_VERSION, atomic_save, safe_load
from otflows.transforms.brenier import BrenierTransform
from otflows.validation import as_samples, with_context

__all__ = ["FittedMap"]


class FittedMap:
    r"""What a fitted :class:`otflows.BrenierMap` does with its fitted attributes
    (``transform_``, ``n_features_in_``, ``context_features_``, ``conditions_``,
    ``bures_matrix_``, ``bures_offset_``, ``log_``): map and invert rows in chunks, with
    NumPy in giving NumPy out and torch in giving torch out, and save and load the whole map.
    """

    transform_: BrenierTransform
    n_features_in_: int
    context_features_: int | None
    conditions_: Tensor | None
    bures_matrix_: Tensor
    bures_offset_: Tensor
    log_: dict[str, Any]
    settings_: dict[str, Any]

    def _config(self) -> dict[str, Any]:
        r"""The estimator's settings as JSON-serialisable values (the estimator's to give)."""
        raise NotImplementedError

    def _transform_for(
        self, state: dict[str, Tensor], features: int, context_features: int | None
    ) -> BrenierTransform:
        r"""A :class:`BrenierTransform` of the estimator's settings to load ``state`` into
        (:func:`otflows.maps.fit.map_transform`)."""
        params = cast(Any, self).get_params(deep=False)
        return map_transform(state, params, self.settings_, features, context_features)

    # -- using the fitted map ----------------------------------------------------------------
    @overload
    def transform(
        self,
        Xs: np.ndarray,
        ys: Any = ...,
        Xt: Any = ...,
        yt: Any = ...,
        batch_size: int = ...,
        *,
        cs: Tensor | np.ndarray | None = ...,
    ) -> np.ndarray: ...

    @overload
    def transform(
        self,
        Xs: Tensor,
        ys: Any = ...,
        Xt: Any = ...,
        yt: Any = ...,
        batch_size: int = ...,
        *,
        cs: Tensor | np.ndarray | None = ...,
    ) -> Tensor: ...

    def transform(
        self,
        Xs: Tensor | np.ndarray | None = None,
        ys: Any = None,
        Xt: Any = None,
        yt: Any = None,
        batch_size: int = CHUNK,
        *,
        cs: Tensor | np.ndarray | None = None,
    ) -> Tensor | np.ndarray:
        r"""The optimal map :math:`T(x)` of source samples ``Xs [N, D]`` → ``[N, D]``, in
        chunks of ``batch_size`` rows (the other arguments: POT's signature, not used); of a
        conditional map, :math:`T(x; c)` at the conditions ``cs [N, C]``, seen in training
        or not."""
        return self._apply(
            Xs, "Xs", lambda x, c: self.transform_.transport(x, c), batch_size, cs, "cs"
        )

    @overload
    def inverse_transform(
        self,
        Xs: Any = ...,
        ys: Any = ...,
        *,
        Xt: np.ndarray,
        yt: Any = ...,
        batch_size: int = ...,
        ct: Tensor | np.ndarray | None = ...,
    ) -> np.ndarray: ...

    @overload
    def inverse_transform(
        self,
        Xs: Any = ...,
        ys: Any = ...,
        *,
        Xt: Tensor,
        yt: Any = ...,
        batch_size: int = ...,
        ct: Tensor | np.ndarray | None = ...,
    ) -> Tensor: ...

    def inverse_transform(
        self,
        Xs: Any = None,
        ys: Any = None,
        Xt: Tensor | np.ndarray | None = None,
        yt: Any = None,
        batch_size: int = CHUNK,
        *,
        ct: Tensor | np.ndarray | None = None,
    ) -> Tensor | np.ndarray:
        r"""The exact inverse :math:`T^{-1}(y)` of target points ``Xt [M, D]`` → ``[M, D]``
        (damped Newton to the transform's tolerance; raises
        :class:`otflows.InverseError` naming the rows that miss it), in chunks of
        ``batch_size`` rows; of a conditional map, :math:`T(\cdot\,; c)^{-1}(y)` at the
        conditions ``ct [M, C]``. Give ``Xt`` by name, as in POT."""
        if Xt is None and Xs is not None:
            raise ValueError(
                "inverse_transform maps target samples: call inverse_transform(Xt=...) (POT's "
                "signature, whose first argument is Xs)"
            )
        return self._apply(
            Xt, "Xt", lambda y, c: self.transform_.inverse(y, c)[0], batch_size, ct, "ct"
        )

    def transform_labels(self, ys: Any = None) -> Any:
        r"""Not defined: a Brenier map has no coupling to carry labels along."""
        raise NotImplementedError("a BrenierMap has no coupling to transport labels with")

    def inverse_transform_labels(self, yt: Any = None) -> Any:
        r"""Not defined: a Brenier map has no coupling to carry labels along."""
        raise NotImplementedError("a BrenierMap has no coupling to transport labels with")

    def _apply(
        self,
        X: Any,
        name: str,
        f: Callable[[Tensor, Tensor | None], Tensor],
        batch_size: int,
        c: Any,
        cname: str,
    ) -> Any:
        if not hasattr(self, "transform_"):
            raise RuntimeError("this BrenierMap is not fitted yet: call fit(Xs=..., Xt=...)")
        if X is None:
            raise ValueError(f"{name} is required: samples [N, {self.n_features_in_}]")
        parameter = next(self.transform_.parameters())
        spec = {"dtype": parameter.dtype, "device": parameter.device}
        C = self.context_features_
        if C is None and c is not None:
            raise ValueError(
                f"{cname} must be None: this BrenierMap was fitted without conditions"
            )
        if C is not None and c is None:
            raise ValueError(f"{cname} is required: this BrenierMap is conditional ([N, {C}])")
        if c is None:
            Z = as_samples(X, name, features=self.n_features_in_, **spec)
        else:
            Z, c = with_context(
                X, c, name, cname, context_features=C, features=self.n_features_in_, **spec
            )
        with torch.no_grad():
            Y = chunked(f, Z, c, batch_size)
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
            >>> from otflows import BrenierMap
            >>> path = os.path.join(tempfile.mkdtemp(), "map.pt")
            >>> X = np.random.default_rng(0).normal(size=(64, 2))
            >>> otmap = BrenierMap(max_iter=2, init_iter=0, hidden_features=4, progress=False)
            >>> otmap.fit(Xs=X, Xt=X + 1).save(path)
            >>> bool(np.allclose(BrenierMap.load(path).transform(X), otmap.transform(X)))
            True
        """
        if not hasattr(self, "transform_"):
            raise RuntimeError("this BrenierMap is not fitted yet: nothing to save")
        config = self._config()
        config["dtype"] = str(next(self.transform_.parameters()).dtype).removeprefix("torch.")
        atomic_save(
            {
                "format_version": FORMAT_VERSION,
                "kind": "BrenierMap",
                "config": json.dumps(config),
                "state_dict": {k: v.cpu() for k, v in self.transform_.state_dict().items()},
                "bures": [self.bures_matrix_.cpu(), self.bures_offset_.cpu()],
                "conditions": None if self.conditions_ is None else self.conditions_.cpu(),
                "log": json.dumps(self.log_),
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> Any:
        r"""Loads a map saved by :meth:`save` (on ``device``, default the saved one or CPU)."""
        payload = safe_load(path)
        if payload.get("kind") != "BrenierMap":
            raise ValueError(f"{path} is not a BrenierMap checkpoint")
        config = json.loads(payload["config"])
        config["device"] = device if device is not None else (config["device"] or "cpu")
        estimator = cast(Any, cls)(**config)
        dtype, device = estimator._spec()
        state = payload["state_dict"]
        features = state["shift"].shape[0]
        conditions = payload.get("conditions")
        estimator.conditions_ = None if conditions is None else conditions.to(device, dtype)
        estimator.context_features_ = None if conditions is None else conditions.shape[1]
        estimator.log_ = json.loads(payload["log"])
        # the settings the fit used (a map saved before they followed the data's size: its own)
        estimator.settings_ = estimator.log_.get("settings") or {
            name: config[name] for name in CHOSEN
        }
        estimator.transform_ = estimator._transform_for(
            state, features, estimator.context_features_
        ).to(dtype=dtype, device=device)
        estimator.transform_.load_state_dict(state)
        estimator.transform_.eval()
        estimator.n_features_in_ = features
        estimator.bures_matrix_, estimator.bures_offset_ = (
            b.to(dtype=dtype, device=device) for b in payload["bures"]
        )
        return estimator
