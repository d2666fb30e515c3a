r"""How many training rows per dimension a flexible model needs before it beats the Gaussian
answer of the data: the one threshold behind the defaults that follow the data's size
(:func:`otflows.fit_flow`'s start, :class:`otflows.BrenierMap`'s network, learning rate and
validation score)."""

from __future__ import annotations

__all__ = ["ROWS_PER_DIMENSION", "few_rows"]

# Below it, on data nobody tuned for, a trained flow did not beat the data's Gaussian
# (benchmarks/fit_defaults_study.md) and a trained map did not beat the Bures map
# (benchmarks/small_data_study.md) on held-out rows.
ROWS_PER_DIMENSION = 100


def few_rows(rows: int, features: int) -> bool:
    r"""Whether ``rows`` training rows are fewer than :data:`ROWS_PER_DIMENSION` per dimension
    of ``features``.

    Example:
        >>> few_rows(1294, 64), few_rows(1440, 2)
        (True, False)
    """
    return rows < ROWS_PER_DIMENSION * features
