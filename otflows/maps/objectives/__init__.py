r"""What a Brenier map is fitted to: losses over minibatches of source and target samples.

Every objective is minimised over the transform :math:`T = \nabla\varphi`; since any such
:math:`T` is the :math:`W_2`-optimal map onto :math:`T_\#\mu`, an objective only has to make
:math:`T_\#\mu = \nu` — no dual or minimax training. The interface
(:mod:`~otflows.maps.objectives.base`), the semi-dual with exact conjugates
(:mod:`~otflows.maps.objectives.semidual`), the target's likelihood
(:mod:`~otflows.maps.objectives.likelihood`) and the Sinkhorn divergence
(:mod:`~otflows.maps.objectives.sinkhorn`), each built by name here.
"""

from __future__ import annotations

from typing import Any

from otflows.maps.objectives.base import Density, Objective
from otflows.maps.objectives.likelihood import TargetLikelihood
from otflows.maps.objectives.semidual import MATRIX_FREE_FEATURES, SemiDual, fenchel_young_gap
from otflows.maps.objectives.sinkhorn import SinkhornDivergence
from otflows.nets.base import choose

__all__ = [
    "MATRIX_FREE_FEATURES",
    "OBJECTIVES",
    "Density",
    "Objective",
    "SemiDual",
    "SinkhornDivergence",
    "TargetLikelihood",
    "build_objective",
    "fenchel_young_gap",
]


OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (SemiDual, SinkhornDivergence, TargetLikelihood)
}


def build_objective(objective: str | dict[str, Any] | Objective) -> Objective:
    r"""An :class:`Objective` from its name (``"semidual"``, ``"sinkhorn"``, ``"likelihood"``),
    its :attr:`Objective.config`, or itself.

    Example:
        >>> build_objective("sinkhorn").reg
        0.01
        >>> build_objective({"name": "sinkhorn", "reg": 0.1}).reg
        0.1
    """
    if isinstance(objective, Objective):
        return objective
    if isinstance(objective, str):
        return choose(OBJECTIVES, objective, "objective")()
    if isinstance(objective, dict) and "name" in objective:
        options = {k: v for k, v in objective.items() if k != "name"}
        return choose(OBJECTIVES, objective["name"], "objective")(**options)
    raise TypeError(
        f"objective must be a name in {sorted(OBJECTIVES)} or an Objective; "
        f"got {type(objective).__name__}"
    )
