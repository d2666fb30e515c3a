r"""The Brenier transform :math:`T(x) = G(x) + \gamma x` (:mod:`~otflows.transforms.brenier`)
and its affine starts: the Bures map, whitening (:mod:`~otflows.transforms.affine`)."""

from otflows.transforms.affine import bures_map, set_affine, start_affine, whitening_map
from otflows.transforms.brenier import BrenierTransform

__all__ = ["BrenierTransform", "bures_map", "set_affine", "start_affine", "whitening_map"]
