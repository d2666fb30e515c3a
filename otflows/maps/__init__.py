r"""Optimal transport maps between two data sets: the estimator, its objectives, its start,
and the entropic map beside it."""

from otflows.maps.entropic import EntropicMap
from otflows.maps.estimator import BrenierMap
from otflows.maps.objectives import (
    OBJECTIVES,
    Objective,
    SemiDual,
    SinkhornDivergence,
    TargetLikelihood,
    build_objective,
    fenchel_young_gap,
)
from otflows.transforms.affine import bures_map, set_affine

__all__ = [
    "OBJECTIVES",
    "BrenierMap",
    "EntropicMap",
    "Objective",
    "SemiDual",
    "SinkhornDivergence",
    "TargetLikelihood",
    "build_objective",
    "bures_map",
    "fenchel_young_gap",
    "set_affine",
]
