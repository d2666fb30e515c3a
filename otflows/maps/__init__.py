r"""Optimal transport maps between two data sets: the estimator and the function that fits it
(:func:`fit_brenier_map`), its objectives, its start, and the entropic map beside it."""

from otflows.maps.entropic import EntropicMap
from otflows.maps.estimator import BrenierMap
from otflows.maps.fit import MapResult, fit_brenier_map
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
    "MapResult",
    "Objective",
    "SemiDual",
    "SinkhornDivergence",
    "TargetLikelihood",
    "build_objective",
    "bures_map",
    "fenchel_young_gap",
    "fit_brenier_map",
    "set_affine",
]
