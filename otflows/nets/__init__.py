r"""Monotone gradient networks: parameterisations of gradients of convex functions."""

from __future__ import annotations

from typing import Any

from otflows.nets.base import (
    ContextQuadratic,
    ConvexPotentialNet,
    MonotoneGradientNet,
    QuadraticPotential,
    choose,
)
from otflows.nets.cmgn import CMGN
from otflows.nets.entropic import EntropicPotential
from otflows.nets.icgn import ICGN
from otflows.nets.icnn import ICNN
from otflows.nets.mmgn import MMGN
from otflows.nets.picnn import PICNN
from otflows.nets.qicnn import QuadraticICNN

__all__ = [
    "CMGN",
    "CONDITIONAL_NETS",
    "ICGN",
    "ICNN",
    "MMGN",
    "NETS",
    "PICNN",
    "UNCONDITIONAL_NETS",
    "ContextQuadratic",
    "ConvexPotentialNet",
    "EntropicPotential",
    "MonotoneGradientNet",
    "QuadraticICNN",
    "QuadraticPotential",
    "build_net",
]

NETS: dict[str, type[MonotoneGradientNet]] = {
    cls.name: cls for cls in (CMGN, MMGN, ICGN, ICNN, QuadraticICNN, PICNN)
}
# the networks that take a context (``context_features``), and those that need none
CONDITIONAL_NETS = ("mmgn", "qicnn", "picnn")
UNCONDITIONAL_NETS = tuple(name for name in NETS if name != PICNN.name)


def build_net(name: str, features: int, **kwargs: Any) -> MonotoneGradientNet:
    r"""Builds a monotone gradient network by name.

    Arguments:
        name: One of ``"cmgn"``, ``"mmgn"``, ``"icgn"``, ``"icnn"``, ``"qicnn"``, ``"picnn"``
            (conditional: it needs ``context_features``; ``"mmgn"`` and ``"qicnn"`` take it too).
        features: The dimension ``D``.
        kwargs: The network's other arguments.

    Example:
        >>> build_net("mmgn", 2, hidden_features=8).arguments["hidden_features"]
        8
    """
    return choose(NETS, name, "net")(features, **kwargs)
