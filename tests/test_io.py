"""The ground floor's file helpers: atomic writes, JSON without NaN, CSV text."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.io import atomic_dir, csv_text, finite, json_safe, write_csv_atomic, write_json_atomic


def test_json_safe_turns_nonfinite_into_null_and_numpy_into_python() -> None:
    obj = {"a": float("nan"), "b": [np.float32(1.5), np.int64(3), float("inf")], "c": (1, "x")}
    assert json_safe(obj) == {"a": None, "b": [1.5, 3, None], "c": [1, "x"]}
    assert finite(float("-inf")) is None and finite(2) == 2.0


def test_write_json_atomic_round_trips_and_leaves_no_temporary(tmp_path) -> None:
    path = tmp_path / "sub" / "x.json"
    write_json_atomic(path, {"z": 1, "a": float("nan")})
    assert json.loads(path.read_text()) == {"a": None, "z": 1}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_csv_text_columns_extras_and_blank_nonfinite(tmp_path) -> None:
    rows = [{"a": 1, "b": float("nan"), "extra": 9}]
    assert csv_text(rows, ["a", "b"]).splitlines() == ["a,b", "1,nan"]
    assert csv_text(rows, ["a", "b"], blank_nonfinite=True).splitlines() == ["a,b", "1,"]
    assert csv_text([], ["a"]).splitlines() == ["a"]
    write_csv_atomic(tmp_path / "t.csv", rows)
    assert (tmp_path / "t.csv").read_text().splitlines()[0] == "a,b,extra"


def test_atomic_dir_replaces_on_success_and_removes_on_error(tmp_path) -> None:
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "f").write_text("1")
    assert (final / "f").read_text() == "1"
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "g").write_text("2")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and not (final / "g").exists()
