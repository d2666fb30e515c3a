"""The repository speaks to its users: a short README, and no word of how it was built."""

import re
import subprocess
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
