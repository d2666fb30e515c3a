r"""Data: closed-form Gaussian problems (conditional ones too), the continuous W2 benchmark,
2-D toys, the MAF tabular sets, files."""

from otflows.datasets.conditional import ConditionalGaussian
from otflows.datasets.files import check_array_path, csv_columns, load_array, save_array
from otflows.datasets.gaussian import GaussianCoupling
from otflows.datasets.tabular import TABULAR, load_tabular
from otflows.datasets.toys import (
    TOYS,
    checkerboard,
    domain_adaptation,
    eight_gaussians,
    swiss_roll,
    two_circles,
    two_moons,
)
from otflows.datasets.w2bench import W2BenchmarkPair

__all__ = [
    "TABULAR",
    "TOYS",
    "ConditionalGaussian",
    "GaussianCoupling",
    "W2BenchmarkPair",
    "check_array_path",
    "checkerboard",
    "csv_columns",
    "domain_adaptation",
    "eight_gaussians",
    "load_array",
    "load_tabular",
    "save_array",
    "swiss_roll",
    "two_circles",
    "two_moons",
]
