r"""Checkpoints: a ``state_dict`` and a JSON-serialisable config, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from otflows.flows import BrenierFlow

__all__ = ["FORMAT_VERSION", "load_flow", "save_flow"]

FORMAT_VERSION = 1


def save_flow(flow: BrenierFlow, path: str | Path) -> None:
    r"""Saves a :class:`BrenierFlow` built from a net name to ``path``.

    The file holds plain tensors and a JSON string, so :func:`load_flow` reads it with
    ``torch.load(weights_only=True)``. It is written to a temporary file and renamed, so an
    interrupted save leaves any previous file intact.

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
    payload = {
        "format_version": FORMAT_VERSION,
        "config": json.dumps(flow.config),
        "state_dict": {k: v.detach().cpu() for k, v in flow.state_dict().items()},
    }
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent or ".", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as f:
            torch.save(payload, f)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def load_flow(path: str | Path, map_location: str | torch.device = "cpu") -> BrenierFlow:
    r"""Loads a :class:`BrenierFlow` saved by :func:`save_flow` (``weights_only=True``).

    Raises:
        ValueError: When the file is not an otflows checkpoint of a known format version.
    """
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise ValueError(f"{path} is not a safe otflows checkpoint: {error}") from error
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        version = payload.get("format_version") if isinstance(payload, dict) else None
        raise ValueError(
            f"{path} is not an otflows checkpoint of format version {FORMAT_VERSION} "
            f"(found {version!r})"
        )
    config = json.loads(payload["config"])
    state = payload["state_dict"]
    flow = BrenierFlow(**config).to(next(iter(state.values())).dtype)
    flow.load_state_dict(state)
    return flow
