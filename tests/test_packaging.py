"""The wheel a user installs: the package, its licence and type marker, and nothing else."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import otflows

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_the_package_licence_and_type_marker_only(tmp_path):
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, str(ROOT), "-w", str(tmp_path)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("otflows-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "otflows/py.typed" in names
    info = f"otflows-{otflows.__version__}.dist-info"
    assert f"{info}/licenses/LICENSE" in names
    assert (
        zipfile.ZipFile(wheel).read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
    )
    outside = [n for n in names if not n.startswith(("otflows/", f"{info}/"))]
    assert outside == []
    assert not [n for n in names if re.search(r"\.(json|ipynb|png|npy|pt)$", n)]
    metadata = zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    assert f"Version: {otflows.__version__}\n" in metadata
    assert "License-Expression: MIT" in metadata
