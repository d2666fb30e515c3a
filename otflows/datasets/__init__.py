r"""Data: closed-form Gaussian problems, the continuous W2 benchmark, 2-D toys, files."""

from otflows.datasets.files import load_array
from otflows.datasets.gaussian import GaussianCoupling
from otflows.datasets.toys import two_moons
from otflows.datasets.w2bench import W2BenchmarkPair

__all__ = ["GaussianCoupling", "W2BenchmarkPair", "load_array", "two_moons"]
