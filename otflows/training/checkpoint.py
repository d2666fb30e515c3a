r"""Checkpoint files: written atomically, read back with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

__all__ = ["FORMAT_VERSION", "atomic_save", "safe_load"]

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
