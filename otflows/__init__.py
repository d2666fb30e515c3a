r"""otflows: optimal-transport maps as normalizing flows.

By Brenier's theorem the :math:`W_2`-optimal map between two measures is the gradient of a
convex function. otflows parameterises such maps with monotone gradient networks and uses them
as invertible flow steps :math:`T(x) = G(x) + \gamma x` with an nflows-compatible API.

The names below load their module on first use, so ``import otflows`` costs next to nothing
and ``from otflows import BrenierFlow`` loads torch and nflows but not POT.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_HOMES = {
    "BrenierFlow": "otflows.flows",
    "InverseError": "otflows.linalg",
    "InverseResult": "otflows.linalg",
    "BrenierMap": "otflows.maps",
    "EntropicMap": "otflows.maps",
    "fit_brenier_map": "otflows.maps",
    "CMGN": "otflows.nets",
    "ICGN": "otflows.nets",
    "ICNN": "otflows.nets",
    "MMGN": "otflows.nets",
    "MonotoneGradientNet": "otflows.nets",
    "PICNN": "otflows.nets",
    "QuadraticICNN": "otflows.nets",
    "build_net": "otflows.nets",
    "TrainingHistory": "otflows.training.parts",
    "fit_flow": "otflows.training.fit",
    "BrenierTransform": "otflows.transforms.brenier",
}

__all__ = [
    "CMGN",
    "ICGN",
    "ICNN",
    "MMGN",
    "PICNN",
    "BrenierFlow",
    "BrenierMap",
    "BrenierTransform",
    "EntropicMap",
    "InverseError",
    "InverseResult",
    "MonotoneGradientNet",
    "QuadraticICNN",
    "TrainingHistory",
    "build_net",
    "fit_brenier_map",
    "fit_flow",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'otflows' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])


if TYPE_CHECKING:
    from otflows.flows import BrenierFlow
    from otflows.linalg import InverseError, InverseResult
    from otflows.maps import BrenierMap, EntropicMap, fit_brenier_map
    from otflows.nets import (
        CMGN,
        ICGN,
        ICNN,
        MMGN,
        PICNN,
        MonotoneGradientNet,
        QuadraticICNN,
        build_net,
    )
    from otflows.training.fit import fit_flow
    from otflows.training.parts import TrainingHistory
    from otflows.transforms.brenier import BrenierTransform
