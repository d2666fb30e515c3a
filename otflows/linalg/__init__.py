r"""The linear algebra behind Brenier maps: Jacobian factorisations, quadrature, Newton solves."""

from otflows.linalg.dense import DenseCholesky, batched_jacobian, logdet_cholesky
from otflows.linalg.implicit import JacobianSlot, implicit_solution
from otflows.linalg.lbfgs import lbfgs_minimize
from otflows.linalg.newton import InverseError, InverseResult, newton_solve
from otflows.linalg.quadrature import gauss_legendre
from otflows.linalg.stochastic import JacobianOperator, conjugate_gradient, slq_logdet
from otflows.linalg.structured import LowRankUpdate, RidgeFactors, factorize

__all__ = [
    "DenseCholesky",
    "InverseError",
    "InverseResult",
    "JacobianOperator",
    "JacobianSlot",
    "LowRankUpdate",
    "RidgeFactors",
    "batched_jacobian",
    "conjugate_gradient",
    "factorize",
    "gauss_legendre",
    "implicit_solution",
    "lbfgs_minimize",
    "logdet_cholesky",
    "newton_solve",
    "slq_logdet",
]
