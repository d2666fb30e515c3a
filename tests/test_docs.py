"""The repository speaks to its users: a short README, and no word of how it was built."""

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_is_short_and_opens_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    assert lines[3].startswith("pip install torch==2.13.0") and lines[3].endswith("otflows demo")
    assert lines[7].endswith("pytest -q")


def test_no_file_speaks_of_sessions_or_issues():
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    pattern = re.compile(r"\b(session|issue) \d+\b|\.\./shared\b", re.IGNORECASE)
    found = []
    for name in files:
        if not name.endswith((".py", ".md", ".toml", ".ipynb", ".txt", ".cfg", ".yml")):
            continue
        if name == "tests/test_docs.py":
            continue
        for number, line in enumerate((ROOT / name).read_text().splitlines(), 1):
            if pattern.search(line):
                found.append(f"{name}:{number}: {line.strip()[:80]}")
    assert found == []


def _tracked() -> list[str]:
    return subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()


def _pages() -> dict[str, str]:
    r"""What a reader reads, by path: README, the docs' and benchmarks' pages, and the
    notebooks' markdown cells."""
    pages = {}
    for name in _tracked():
        if name.endswith(".md") and (name == "README.md" or name.startswith(("docs/", "bench"))):
            pages[name] = (ROOT / name).read_text()
        elif name.startswith("notebooks/") and name.endswith(".ipynb"):
            cells = json.loads((ROOT / name).read_text())["cells"]
            markdown = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
            pages[name] = "\n\n".join(markdown)
    return pages


def _prose(text: str) -> str:
    r"""``text`` without its fenced code blocks."""
    return re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.MULTILINE | re.DOTALL)


LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|<img[^>]*\ssrc=\"([^\"]+)\"")


def test_every_image_and_relative_link_resolves_to_a_tracked_file():
    """A link that resolves only on the author's disk is broken: each target must be in
    ``git ls-files`` (a file, or a folder holding one)."""
    tracked = set(_tracked())
    folders = {str(Path(name).parent) for name in tracked}
    broken, checked = [], 0
    for name, text in _pages().items():
        for match in LINK.finditer(_prose(text)):
            target = (match[1] or match[2]).split("#")[0]
            if not target or re.match(r"[a-z]+:", target):  # an anchor, a URL, mailto:
                continue
            checked += 1
            resolved = os.path.normpath(Path(name).parent / target)
            if resolved not in tracked and resolved not in folders:
                broken.append(f"{name}: {target}")
    assert broken == []
    assert checked > 30  # README's and the docs' own links were read


def _cells(row: str) -> int:
    r"""The cells of a markdown table row: its unescaped ``|`` split it."""
    return len(re.split(r"(?<!\\)\|", row.strip().removeprefix("|").removesuffix("|")))


def test_readme_shows_the_demo_and_an_ot_map_in_small_committed_figures():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert {"benchmarks/results/demo.png", "benchmarks/results/peers_900s.png"} <= set(images)
    assert all((ROOT / image).stat().st_size < 200_000 for image in images)


def test_every_table_row_has_as_many_cells_as_its_header():
    """A row with more cells than its header (an unescaped ``|`` in a cell) renders as text."""
    malformed, tables = [], 0
    for name, text in _pages().items():
        lines = _prose(text).splitlines()
        for i, line in enumerate(lines[:-1]):
            if not (
                line.startswith("|") and re.fullmatch(r"\|?(\s*:?-+:?\s*\|)+\s*", lines[i + 1])
            ):
                continue
            tables += 1
            width = _cells(line)
            for row in itertools.takewhile(lambda r: r.startswith("|"), lines[i + 1 :]):
                if _cells(row) != width:
                    malformed.append(f"{name}: {row[:70]}")
    assert malformed == []
    assert tables > 20


def test_the_docs_build_strict_with_no_warning_suppressed(tmp_path):
    """Every cross-reference, figure and page resolves: Sphinx with -W and nothing
    suppressed."""
    assert "suppress_warnings" not in (ROOT / "docs" / "conf.py").read_text()
    build = subprocess.run(
        [sys.executable, *"-m sphinx -W --keep-going -q -b html docs".split(), str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    assert "WARNING" not in build.stderr
    peers = (tmp_path / "benchmarks" / "peers.html").read_text()
    assert '<img alt="L2-UVP against CPU seconds' in peers
    assert (tmp_path / "_images" / "peers_900s.png").is_file()
    _check_offline(tmp_path)


def _check_offline(site: Path) -> None:
    r"""What a built page needs, it finds in the site: no script from another host, MathJax
    served from ``_static`` to every page with a formula; and no object's repr in the
    notebooks' outputs."""
    pages = list(site.rglob("*.html"))
    remote = [
        f"{page.relative_to(site)}: {src}"
        for page in pages
        for src in re.findall(r"<script[^>]*\ssrc=\"(https?:[^\"]+)\"", page.read_text())
    ]
    assert remote == []
    assert (site / "_static" / "mathjax" / "tex-chtml.js").stat().st_size > 100_000
    api = (site / "api.html").read_text()
    assert api.count('class="math') > 100 and '_static/mathjax/tex-chtml.js"' in api
    reprs = [
        f"{page.relative_to(site)}: {found}"
        for page in site.glob("notebooks/*.html")
        for found in re.findall(r"&lt;[\w.]+ (?:object )?at 0x[0-9a-f]+&gt;", page.read_text())
    ]
    assert reprs == []


def test_the_command_line_page_names_every_benchmark():
    from otflows.bench import BENCHMARKS

    row = next(
        line
        for line in (ROOT / "docs/guide/cli.md").read_text().splitlines()
        if line.startswith("| `otflows bench NAME`")
    )
    named = set(re.findall(r"`([a-z-]+)`", row.split("runs a benchmark (")[1].split(";")[0]))
    assert named == set(BENCHMARKS)
