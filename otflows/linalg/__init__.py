r"""The linear algebra behind Brenier maps: quadrature, dense log-determinants, Newton solves."""

from otflows.linalg.dense import batched_jacobian, logdet_cholesky, solve_cholesky
from otflows.linalg.newton import InverseError, InverseResult, newton_solve
from otflows.linalg.quadrature import gauss_legendre

__all__ = [
    "InverseError",
    "InverseResult",
    "batched_jacobian",
    "gauss_legendre",
    "logdet_cholesky",
    "newton_solve",
    "solve_cholesky",
]
