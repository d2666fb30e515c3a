r"""Checks at the public edge: samples are validated and cast once, then trusted inside;
held-out rows are drawn once; arguments are recorded, seeded and renamed in one way."""

from otflows.validation.arguments import RecordsArguments, deprecated_name, seed_of
from otflows.validation.held_out import (
    held_out_rows,
    hold_out,
    hold_out_with_context,
    split_held_out,
    with_context,
)
from otflows.validation.samples import (
    MappedSamples,
    as_device,
    as_samples,
    check_density_data,
    check_finite,
)

__all__ = [
    "MappedSamples",
    "RecordsArguments",
    "as_device",
    "as_samples",
    "check_density_data",
    "check_finite",
    "deprecated_name",
    "held_out_rows",
    "hold_out",
    "hold_out_with_context",
    "seed_of",
    "split_held_out",
    "with_context",
]
