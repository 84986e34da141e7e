from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import DatasetConfig, PatchConfig, SourceConfig
from pipeline.data.ingest import IngestReport, decode_items
from pipeline.data.readers.mias import list_mias, pair_patient, parse_info
from pipeline.errors import DataError
from tests.conftest import shared, write_png

HEADER = "MIAS header text\n=====\n"


def make_mias(root: Path, rows: list[str], size: int = 256, blobs: dict | None = None, pgm: bool = False) -> Path:
    """A tiny mini-MIAS folder: Info.txt plus films (breast = grey half-disc, optional bright blobs)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Info.txt").write_text(HEADER + "\n".join(rows) + "\n")
    yy, xx = np.mgrid[:size, :size]
    for ref in sorted({r.split()[0] for r in rows}):
        film = np.zeros((size, size), np.uint8)
        film[(xx ** 2 + (yy - size / 2) ** 2) < (0.8 * size) ** 2] = 90
        for (x, y_bottom, r) in (blobs or {}).get(ref, []):
            film[(xx - x) ** 2 + (yy - (size - y_bottom)) ** 2 < r ** 2] = 250
        if pgm:
            (root / f"{ref}.pgm").write_bytes(f"P5\n{size} {size}\n255\n".encode() + film.tobytes())
        else:
            write_png(root / "images" / f"{ref}.png", film)
    return root


def src(root: Path) -> SourceConfig:
    return SourceConfig(reader="mias", root=str(root))


def test_pairs_are_one_patient() -> None:
    assert pair_patient("mdb001") == pair_patient("mdb002") != pair_patient("mdb003")
    assert pair_patient("mdb321") == pair_patient("mdb322")


def test_several_rows_worst_severity_and_note3(tmp_path: Path) -> None:
    root = make_mias(tmp_path, ["mdb001 G CIRC B 100 100 10", "mdb001 G CALC M 50 60 8", "mdb002 G NORM",
                                "mdb003 F CALC M *NOTE 3*", "mdb004 F CIRC B"])
    films = parse_info(root / "Info.txt")
    assert films["mdb001"]["label"] == "malignant" and len(films["mdb001"]["lesions"]) == 2
    assert films["mdb002"]["label"] == "normal"
    assert films["mdb003"]["unlocated"] and films["mdb004"]["unlocated"]


def test_y_origin_is_bottom_left(tmp_path: Path) -> None:
    """A bright blob drawn at (x, y from the bottom) must sit at the centre of the lesion patch."""
    root = make_mias(tmp_path, ["mdb001 G CIRC B 60 200 12", "mdb002 G NORM"], blobs={"mdb001": [(60, 200, 12)]})
    cfg = DatasetConfig(modality="mammography", task="patches", channels=1, resolution_px=32,
                        source=src(root), patch=PatchConfig(context=2.0, min_patch_px=16, max_patch_px=128))
    samples = decode_items(list_mias(cfg.source), cfg, IngestReport(), seed=0)
    lesion = next(s for s in samples if s.image_id == "mdb001_lesion0")
    centre = lesion.image[0, 12:20, 12:20].mean()
    assert centre > 240, "lesion patch is not centred on the blob: y origin handled wrongly"
    normal = next(s for s in samples if s.image_id.startswith("mdb002"))
    assert normal.image.mean() > 60, "normal patch should lie inside the breast"


@pytest.mark.parametrize("row, message", [
    ("mdb001 G CIRC X 10 10 5", "severity 'X' is not B or M"),
    ("mdb001 Q CIRC B 10 10 5", "tissue 'Q'"),
    ("mdb001 G BLOB B 10 10 5", "abnormality class 'BLOB'"),
    ("mdb001 G CIRC B 10 ten 5", "are not numbers"),
    ("mdb001 G CIRC B 10 10", "expected 'ref tissue class severity x y radius'"),
    ("mdb001 G NORM extra", "NORM row must have 3 columns"),
])
def test_bad_info_lines_name_the_line(tmp_path: Path, row: str, message: str) -> None:
    make_mias(tmp_path, [row, "mdb002 G NORM"])
    with pytest.raises(DataError, match=r"Info.txt line 3: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_info(tmp_path / "Info.txt")


def test_coordinates_outside_the_film(tmp_path: Path) -> None:
    root = make_mias(tmp_path, ["mdb001 G CIRC B 900 10 5", "mdb002 G NORM"], size=128)
    cfg = DatasetConfig(modality="mammography", task="patches", channels=1, source=src(root))
    with pytest.raises(DataError, match="line 3: lesion centre x=900, y=10 is outside the 128 x 128 film"):
        decode_items(list_mias(cfg.source), cfg, IngestReport(), seed=0)


def test_missing_film_and_corrupt_pgm(tmp_path: Path) -> None:
    root = make_mias(tmp_path / "a", ["mdb001 G NORM", "mdb002 G NORM"])
    (root / "images" / "mdb002.png").unlink()
    with pytest.raises(DataError, match="no PGM/PNG file for mdb002"):
        list_mias(src(root))
    root = make_mias(tmp_path / "b", ["mdb001 G NORM", "mdb002 G NORM"], pgm=True)
    data = (root / "mdb002.pgm").read_bytes()
    (root / "mdb002.pgm").write_bytes(data[: len(data) // 3])
    cfg = DatasetConfig(modality="mammography", task="patches", channels=1, source=src(root))
    with pytest.raises(DataError, match="mdb002.pgm: cannot decode image"):
        decode_items(list_mias(cfg.source), cfg, IngestReport(), seed=0)
    report = IngestReport()
    cfg.on_bad_file = "skip"
    assert len(decode_items(list_mias(cfg.source), cfg, report, seed=0)) == 1 and report.bad_files_skipped == 1


@pytest.mark.realdata
def test_real_mini_mias_all_films() -> None:
    root = shared("mias")
    items = list_mias(src(root))
    assert len(items) == 322
    labels = [it.label for it in items]
    # PROVENANCE counts the first line of each film; the worst severity gives the same totals here
    assert (labels.count("normal"), labels.count("benign"), labels.count("malignant")) == (207, 63, 52)
    assert len({it.patient for it in items}) == 161
    pgm = [it for it in items if it.path.suffix == ".pgm"]
    assert {it.image_id for it in pgm} == {"mdb001", "mdb005", "mdb023"}
    # the original PGM and the lossless PNG decode to the same pixels
    for it in pgm:
        png = root / "images" / f"{it.image_id}.png"
        from pipeline.data.imageio import read_image

        np.testing.assert_array_equal(it.load(1), read_image(png, 1))
    assert sum(it.unlocated for it in items) == 4  # mdb059 and three '*NOTE 3*' calcification films
