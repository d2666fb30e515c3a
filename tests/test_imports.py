"""`import otflows` stays light: heavy modules load when the names that need them are used."""

import subprocess
import sys

import pytest

import otflows


def _loaded_after(statement: str, modules: list[str]) -> list[str]:
    code = f"import sys; {statement}; print(' '.join(m for m in {modules!r} if m in sys.modules))"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return output.split()


HEAVY = ["torch", "nflows", "ot", "sklearn", "matplotlib", "otflows.bench"]


def test_import_otflows_loads_nothing_heavy():
    assert _loaded_after("import otflows", HEAVY) == []


def test_flows_and_training_load_neither_pot_nor_the_benchmarks():
    loaded = _loaded_after("from otflows import BrenierFlow, fit_flow", HEAVY)
    assert "torch" in loaded and "nflows" in loaded
    assert not {"ot", "sklearn", "otflows.bench"} & set(loaded)


@pytest.mark.parametrize("name", otflows.__all__)
def test_every_public_name_resolves_to_its_module(name):
    value = getattr(otflows, name)
    assert value.__module__.startswith(otflows._HOMES[name])
    assert name in dir(otflows)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        otflows.nothing  # noqa: B018
