r"""Every published table rendered from its JSON: the report script.

    python benchmarks/report.py                 # re-render every page of the repository
    python benchmarks/report.py --check         # fail when a page differs from its JSON
    python benchmarks/report.py --figures       # also redraw the figures drawn from JSON

A table on a page is a block

    <!-- tables: NAME PATH [PATH ...] -->
    ...
    <!-- end of tables -->

that :func:`render` rewrites from the JSON at each ``PATH`` (relative to the page's folder) by
the module ``NAME`` names (:data:`RENDERERS`: the benchmarks of :data:`otflows.bench.BENCHMARKS`,
``demo``, and the studies, :data:`STUDIES`, scripts of this folder). One JSON is rendered by
the module's ``rendered(payload)``, or else as the
JSON's ``rows`` under the module's ``COLUMNS``; several, one table of them side by side, by its
``rendered_together(payloads)``. A published number is what its JSON renders, never typed by
hand. A figure lives beside its JSON (``PATH.png``), written by the command that writes the
JSON; where the module draws it from the JSON alone (its ``figure(payload)``), ``--figures``
redraws it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from otflows.bench import BENCHMARKS
from otflows.bench.common import markdown_table, save_figure

__all__ = ["RENDERERS", "STUDIES", "main", "pages", "redraw", "render", "rendered_page", "study"]

# The project's own studies: scripts in the repository's benchmarks/ folder, not installed.
STUDIES = {
    "defaults": "defaults_study",
    "fit-defaults": "fit_defaults_study",
    "import-time": "import_time",
    "kl-race": "kl_race",
    "load-check": "load_check",
    "small-map-speed": "small_map_speed",
    "small-data": "small_data_study",
    "step-speed": "step_speed",
}
# a block's NAME → the module rendering it
RENDERERS = BENCHMARKS | {"demo": "otflows.cli.demo"} | STUDIES
SCRIPTS = Path(__file__).resolve().parent  # this folder: the studies beside this script


def study(name: str) -> ModuleType:
    r"""The study ``name`` of :data:`STUDIES`, imported from this folder, the repository's
    ``benchmarks/`` (put on ``sys.path``, so that the processes it starts import it too).

    Example:
        >>> study("import-time").__name__
        'import_time'
    """
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return importlib.import_module(STUDIES[name])


def _renderer(name: str) -> ModuleType:
    return study(name) if name in STUDIES else importlib.import_module(RENDERERS[name])


BLOCK = re.compile(r"<!-- tables: (\S+) ([^>]+?) -->\n.*?<!-- end of tables -->", re.DOTALL)


def rendered_page(text: str, base: str | Path) -> str:
    r"""``text`` with each block of tables rendered anew from its JSON (paths relative to
    ``base``).

    Example:
        >>> rendered_page("no tables here", ".")
        'no tables here'
    """

    def block(match: re.Match) -> str:
        name, paths = match[1], match[2].split()
        if name not in RENDERERS:
            raise ValueError(f"unknown renderer {name!r} in {match[0].splitlines()[0]}")
        module = _renderer(name)
        payloads = [json.loads((Path(base) / path).read_text()) for path in paths]
        if len(payloads) > 1:
            tables = module.rendered_together(payloads)
        elif hasattr(module, "rendered"):
            tables = module.rendered(payloads[0])
        else:  # a benchmark's table: its rows under its columns
            tables = markdown_table(payloads[0]["rows"], module.COLUMNS)
        return f"<!-- tables: {name} {match[2]} -->\n{tables}\n<!-- end of tables -->"

    return BLOCK.sub(block, text)


def render(page: str | Path, check: bool = False) -> bool:
    r"""Re-renders the page's tables in place (with ``check``, leaves it as it is); whether
    it was out of date."""
    page = Path(page)
    text = page.read_text()
    new = rendered_page(text, page.parent)
    if new != text and not check:
        page.write_text(new)
    return new != text


def redraw(page: str | Path) -> list[Path]:
    r"""Redraws the figure beside each JSON the page's tables come from, where the benchmark
    draws it from that JSON alone; returns the figures written."""
    page = Path(page)
    drawn = []
    for match in BLOCK.finditer(page.read_text()):
        module = _renderer(match[1])
        if not hasattr(module, "figure"):
            continue
        for path in match[2].split():
            json_path = (page.parent / path).resolve()
            payload = json.loads(json_path.read_text())
            drawn.append(save_figure(module.figure(payload), json_path))
    return drawn


def pages(root: str | Path) -> list[Path]:
    r"""The repository's markdown pages that hold rendered tables."""
    root = Path(root)
    candidates = [root / "README.md", *root.glob("benchmarks/*.md"), *root.glob("docs/**/*.md")]
    return sorted(p for p in candidates if p.is_file() and BLOCK.search(p.read_text()))


def main(argv: Sequence[str] | None = None) -> int:
    """Renders (or, with ``--check``, checks) the pages given, by default every page of the
    repository that holds tables; returns the number of pages out of date."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/report.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("pages", nargs="*", type=Path, help="markdown pages (default: all)")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--check", action="store_true", help="only report pages out of date")
    parser.add_argument(
        "--figures",
        action="store_true",
        help="also redraw the figures beside the JSON that the benchmark draws from it alone",
    )
    args = parser.parse_args(argv)
    stale = 0
    for page in args.pages or pages(args.root):
        if render(page, args.check):
            stale += 1
            print(f"{page}: {'out of date' if args.check else 'rendered'}")
        for figure in redraw(page) if args.figures and not args.check else []:
            print(f"{figure}: drawn")
    return stale if args.check else 0


if __name__ == "__main__":
    sys.exit(main())
