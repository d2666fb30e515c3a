r"""otflows: optimal-transport maps as normalizing flows.

By Brenier's theorem the :math:`W_2`-optimal map between two measures is the gradient of a
convex function. otflows parameterises such maps with monotone gradient networks and uses them
as invertible flow steps :math:`T(x) = G(x) + \gamma x` with an nflows-compatible API.
"""

from otflows.flows import BrenierFlow
from otflows.linalg import InverseError, InverseResult
from otflows.maps import BrenierMap
from otflows.nets import CMGN, ICGN, ICNN, MMGN, MonotoneGradientNet, QuadraticICNN, build_net
from otflows.trainer import TrainingHistory
from otflows.training import fit_flow
from otflows.transforms import BrenierTransform

__all__ = [
    "CMGN",
    "ICGN",
    "ICNN",
    "MMGN",
    "BrenierFlow",
    "BrenierMap",
    "BrenierTransform",
    "InverseError",
    "InverseResult",
    "MonotoneGradientNet",
    "QuadraticICNN",
    "TrainingHistory",
    "build_net",
    "fit_flow",
]

__version__ = "0.1.0"
