from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.data.cache import SplitArrays
from pipeline.data.synthetic import ManifestRow, assert_real_only, load_synthetic, read_manifest, write_manifest
from pipeline.errors import DataError
from tests.conftest import write_png


def manifest(root: Path, rows: list[dict]) -> Path:
    """A manifest as generate writes it, of rows given by path, class and kept."""
    path = root / "manifest.csv"
    write_manifest(path, [ManifestRow(r["path"], r["class"], "acgan", "best.pt", i, "kept" if r["kept"] == "true"
                                      else "memorised", 0.9, 1.0, 10.0, "x") for i, r in enumerate(rows)])
    return path


def test_load_kept_rows_only(tmp_path: Path) -> None:
    for i in range(3):
        write_png(tmp_path / "images" / f"syn_acgan_b_{i}.png", np.full((8, 8), 40 * i, np.uint8))
    rows = [{"path": f"images/syn_acgan_b_{i}.png", "class": "b", "synthetic": "true",
             "kept": "true" if i < 2 else "false"} for i in range(3)]
    arrays = load_synthetic(manifest(tmp_path, rows), ["a", "b"], 1, 8)
    assert arrays.images.shape == (2, 1, 8, 8) and list(arrays.labels) == [1, 1]
    assert arrays.images[1].max() == 40


def test_unmarked_row_refused(tmp_path: Path) -> None:
    write_png(tmp_path / "images" / "real.png", np.zeros((8, 8), np.uint8))
    path = manifest(tmp_path, [{"path": "images/real.png", "class": "b", "synthetic": "true", "kept": "true"}])
    with pytest.raises(DataError, match="line 2: row is not marked synthetic"):
        read_manifest(path)


def test_kept_that_disagrees_with_reason_refused(tmp_path: Path) -> None:
    path = manifest(tmp_path, [{"path": "images/syn_acgan_b_0.png", "class": "b", "kept": "true"}])
    path.write_text(path.read_text().replace(",true,kept,", ",false,kept,"))  # kept column flipped by hand
    with pytest.raises(DataError, match="line 2: kept='false' disagrees with reason='kept'"):
        read_manifest(path)


def test_real_only_split_check() -> None:
    arrays = SplitArrays(np.zeros((2, 1, 4, 4), np.uint8), np.zeros(2, np.int64),
                         np.array(["mdb001_lesion0", "syn_acgan_b_3.png"]))
    with pytest.raises(DataError, match="test: 1 synthetic image"):
        assert_real_only(arrays, "test")
