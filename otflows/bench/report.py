r"""Every published table rendered from its JSON: the report script.

    python benchmarks/report.py                 # re-render every page of the repository
    python benchmarks/report.py --check         # fail when a page differs from its JSON

A table on a page is a block

    <!-- tables: NAME PATH -->
    ...
    <!-- end of tables -->

that :func:`render` rewrites from the JSON at ``PATH`` (relative to the page's folder) by the
benchmark module ``NAME`` (:data:`otflows.bench.BENCHMARKS`): its ``rendered(payload)``, or
else the JSON's ``rows`` under the module's ``COLUMNS``. A published number is what its JSON
renders, never typed by hand.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from otflows.bench import BENCHMARKS
from otflows.bench.common import markdown_table

__all__ = ["main", "pages", "render", "rendered_page"]

BLOCK = re.compile(r"<!-- tables: (\S+) (\S+) -->\n.*?<!-- end of tables -->", re.DOTALL)


def rendered_page(text: str, base: str | Path) -> str:
    r"""``text`` with each block of tables rendered anew from its JSON (paths relative to
    ``base``).

    Example:
        >>> rendered_page("no tables here", ".")
        'no tables here'
    """

    def block(match: re.Match) -> str:
        name, path = match[1], match[2]
        if name not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {name!r} in <!-- tables: {name} {path} -->")
        module = importlib.import_module(BENCHMARKS[name])
        payload = json.loads((Path(base) / path).read_text())
        if hasattr(module, "rendered"):
            tables = module.rendered(payload)
        else:  # a benchmark's table: its rows under its columns
            tables = markdown_table(payload["rows"], module.COLUMNS)
        return f"<!-- tables: {name} {path} -->\n{tables}\n<!-- end of tables -->"

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
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--check", action="store_true", help="only report pages out of date")
    args = parser.parse_args(argv)
    stale = 0
    for page in args.pages or pages(args.root):
        if render(page, args.check):
            stale += 1
            print(f"{page}: {'out of date' if args.check else 'rendered'}")
    return stale if args.check else 0


if __name__ == "__main__":
    sys.exit(main())
