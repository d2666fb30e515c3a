r"""Checkpoints: a ``state_dict`` and a JSON-serialisable config, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from otflows.flows import BrenierFlow

__all__ = ["FORMAT_VERSION", "atomic_save", "load_flow", "safe_load", "save_flow"]

FORMAT_VERSION = 1


def atomic_save(payload: dict, path: str | Path) -> None:
    r"""``torch.save`` to a temporary file beside ``path``, then an atomic rename: an interrupted
    save leaves any previous file intact.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "x.pt")
        >>> atomic_save({"format_version": FORMAT_VERSION, "x": torch.ones(2)}, path)
        >>> safe_load(path)["x"]
        tensor([1., 1.])
    """
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as f:
            torch.save(payload, f)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def safe_load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    r"""Loads an otflows file with ``torch.load(weights_only=True)`` and checks its format.

    Raises:
        ValueError: When the file carries pickled objects (anything but tensors and plain
            containers), or is not of format version :data:`FORMAT_VERSION`.
    """
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise ValueError(f"{path} is not a safe otflows checkpoint: {error}") from error
    version = payload.get("format_version") if isinstance(payload, dict) else None
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path} is not an otflows checkpoint of format version {FORMAT_VERSION} "
            f"(found {version!r})"
        )
    return payload


def save_flow(flow: BrenierFlow, path: str | Path) -> None:
    r"""Saves a :class:`BrenierFlow` built from a net name to ``path``.

    The file holds plain tensors and a JSON string, so :func:`load_flow` reads it with
    ``torch.load(weights_only=True)``; it is written atomically (:func:`atomic_save`).

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "flow.pt")
        >>> flow = BrenierFlow(2, hidden_features=4)
        >>> save_flow(flow, path)
        >>> load_flow(path).config == flow.config
        True
    """
    if flow.config is None:
        raise ValueError(
            "this flow was built from transforms and has no config; save its state_dict() "
            "and rebuild it with the same transforms"
        )
    atomic_save(
        {
            "format_version": FORMAT_VERSION,
            "config": json.dumps(flow.config),
            "state_dict": {k: v.detach().cpu() for k, v in flow.state_dict().items()},
        },
        path,
    )


def load_flow(path: str | Path, map_location: str | torch.device = "cpu") -> BrenierFlow:
    r"""Loads a :class:`BrenierFlow` saved by :func:`save_flow` (``weights_only=True``).

    Raises:
        ValueError: When the file is not an otflows checkpoint of a known format version.
    """
    payload = safe_load(path, map_location)
    state = payload["state_dict"]
    flow = BrenierFlow(**json.loads(payload["config"])).to(next(iter(state.values())).dtype)
    flow.load_state_dict(state)
    return flow
