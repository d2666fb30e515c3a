"""README's examples run exactly as written: its Python blocks, and its shell lines that call
``otflows`` (the install lines are what CI itself runs)."""

import json
import re
import shlex
from pathlib import Path

import pytest

from otflows.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.DOTALL)
COMMANDS = [
    line
    for block in re.findall(r"```bash\n(.*?)```", TEXT, flags=re.DOTALL)
    for line in block.splitlines()
    if line.startswith("otflows ")
]


def test_readme_has_examples_of_each_kind():
    assert len(BLOCKS) >= 2 and COMMANDS


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block {i + 1}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # files the example writes land here
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(command)[1:]
    assert main(argv) == 0
    if argv[0] == "bench":  # a smoke run that says so, and JSON where --out says
        assert "(a smoke run, --quick: " in capsys.readouterr().out
        written = json.loads((tmp_path / argv[argv.index("--out") + 1]).read_text())
        assert written["smoke_run"] is True and written["rows"]
