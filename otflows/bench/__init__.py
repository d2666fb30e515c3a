r"""Benchmarks that reproduce and score against the papers' tables; ``otflows bench NAME``.

Each module has ``main(argv) -> dict``: it parses its own options (``--quick`` gives a smoke
run), prints a markdown table and writes JSON (and figures) where ``--out`` says (by default
under ``otflows-results/`` in the working directory; the committed results are in
``benchmarks/results``, rewritten only when ``--out`` names them).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

__all__ = ["BENCHMARKS", "run", "summary"]

BENCHMARKS = {
    "color-transfer": "otflows.bench.color_transfer",
    "conditional": "otflows.bench.conditional",
    "gaussian": "otflows.bench.gaussian_coupling",
    "gradient-field": "otflows.bench.gradient_field",
    "density": "otflows.bench.density",
    "logdet": "otflows.bench.logdet",
    "ot-maps": "otflows.bench.ot_maps",
    "peers": "otflows.bench.peers",
    "small-data": "otflows.bench.small_data",
    "step-speed": "otflows.bench.step_speed",
}


def summary(name: str) -> str:
    r"""The benchmark ``name`` in one line: the first sentence of its module's docstring, read
    without importing the module (which loads torch and its baselines).

    Example:
        >>> summary("ot-maps")
        'OT maps between two data sets, scored against known optimal maps'
    """
    spec = importlib.util.find_spec(BENCHMARKS[name])
    assert spec is not None and spec.origin is not None
    docstring = ast.get_docstring(ast.parse(Path(spec.origin).read_text())) or ""
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", " ".join(docstring.split("\n\n")[0].split()))
    text = re.sub(r":math:|``?", "", text)
    return re.split(r"[:.](?:\s|$)", text)[0]


def run(name: str, argv: Sequence[str] = ()) -> dict:
    """Runs the benchmark ``name`` with its command-line options ``argv``; returns its JSON.

    Example:
        >>> {"conditional", "ot-maps", "peers"} <= set(BENCHMARKS)
        True
    """
    if name not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {sorted(BENCHMARKS)}; got {name!r}")
    return importlib.import_module(BENCHMARKS[name]).main(list(argv))
