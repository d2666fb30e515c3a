"""Files in, files out: a CSV's errors name the file, the line as an editor numbers it and the
column; what is written reads back to the same values, under the input's column names."""

import warnings

import numpy as np
import pytest

from otflows.cli import main
from otflows.datasets import csv_columns, load_array, save_array


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b\n1,2\n3,x\n", r"line 3, column 2 \(b\): 'x' is not a number"),
        ("1,2\n\n3,\n", r"line 3, column 2: the cell is empty"),
        ("a,b\n1,2\n\n\n4,5,6\n", r"line 5: 3 cells where the header has 2"),
        ("1,2\n3\n", r"line 2: 1 cells where line 1 has 2"),
        ("a,b\n1,2\n3, nan\n", r"line 3, column 2 \(b\): nan is not a finite number"),
        ("a,b\n1,2\n-inf,2\n", r"line 3, column 1 \(a\): -inf is not a finite number"),
        ("", r"the file is empty; expected rows of numbers, one sample a line"),
        ("\n\n", r"the file is empty"),
        ("a,b\n", r"a header and no rows; expected rows of numbers below it"),
    ],
)
def test_a_bad_csv_names_its_file_line_and_column(tmp_path, content, message):
    path = tmp_path / "x.csv"
    path.write_text(content)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw warning from NumPy reaches the user
        with pytest.raises(ValueError, match=rf"^{tmp_path}/x.csv(, |: ){message}"):
            load_array(path)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_value_is_written_in_its_shortest_exact_form(tmp_path, dtype):
    X = np.random.default_rng(0).normal(size=(50, 3)).astype(dtype) * 1e3
    X[0] = [0.1, 2.0, 1e-8]
    path = save_array(tmp_path / "x.csv", X)
    lines = path.read_text().splitlines()
    assert lines[0] == "x0,x1,x2"
    assert lines[1] == "0.1,2.0,1e-08"
    np.testing.assert_array_equal(load_array(path).astype(dtype), X)
    digits = max(len(cell.lstrip("-").replace(".", "")) for cell in lines[2].split(","))
    assert digits <= (9 if dtype == np.float32 else 17)


def test_the_header_names_the_columns(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(" height ,weight\n1,2\n")
    assert csv_columns(path) == ["height", "weight"]
    path.write_text("1,2\n")
    assert csv_columns(path) is None and csv_columns(tmp_path / "x.npy") is None
    with pytest.raises(ValueError, match=r"--out .*y\.csv: 1 column names for 2 columns"):
        save_array(tmp_path / "y.csv", np.ones((2, 2)), "--out", columns=["a"])


def test_map_writes_the_source_header_above_its_rows(tmp_path, capsys):
    rng = np.random.default_rng(0)
    source, target = tmp_path / "a.csv", tmp_path / "b.csv"
    save_array(source, rng.normal(size=(60, 2)), columns=["height", "weight"])
    save_array(target, rng.normal(size=(60, 2)) + 1)
    out = tmp_path / "ta.csv"
    args = ["map", "--source", str(source), "--target", str(target), "--out", str(out)]
    assert main([*args, "--max-iter", "3", "--hidden-features", "4", "--no-progress"]) == 0
    assert out.read_text().splitlines()[0] == "height,weight"
    assert load_array(out).shape == (60, 2)
