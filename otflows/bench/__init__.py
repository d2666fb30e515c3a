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
    return _headline(re.sub(r":math:|``?", "", text))


def _headline(text: str) -> str:
    r"""``text`` up to its first colon or full stop that ends a clause: followed by a space or
    the end, and outside parentheses.

    Example:
        >>> _headline("Steps per second (masked: on the device) or adaptive: in one run.")
        'Steps per second (masked: on the device) or adaptive'
    """
    depth = 0
    for i, character in enumerate(text):
        depth += (character == "(") - (character == ")")
        if depth == 0 and character in ":." and text[i + 1 : i + 2] in ("", " "):
            return text[:i]
    return text


def run(name: str, argv: Sequence[str] = ()) -> dict:
    """Runs the benchmark ``name`` with its command-line options ``argv``; returns its JSON.

    Example:
        >>> {"conditional", "ot-maps", "peers"} <= set(BENCHMARKS)
        True
    """
    if name not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {sorted(BENCHMARKS)}; got {name!r}")
    return importlib.import_module(BENCHMARKS[name]).main(list(argv))
