"""The built-in phantoms: files, labels, determinism, DICOM encodings, lesion placement, cell classes."""
from __future__ import annotations

import csv
import io
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut
from pydicom.uid import DigitalMammographyXRayImageStorageForPresentation, ExplicitVRLittleEndian, RLELossless

from pipeline.config import PhantomConfig
from pipeline.data.phantoms import write_cell_phantoms, write_mammography_phantoms
from pipeline.data.phantoms.cells import _class_severities
from pipeline.data.phantoms.dicom import _rle_frame
from pipeline.data.phantoms.mammography import _draw_film_labels
from pipeline.errors import DataError

# 10 patients is the smallest set with the 'every class at least 3 films' guarantee.
TINY = PhantomConfig(seed=7, mammo_patients=10, mammo_film_px=128,
                     cell_counts={"normal": 10, "low_grade": 10, "high_grade": 10}, cell_px=32, cells_per_slide=5)


@pytest.fixture(scope="module")
def mammo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mammography_phantoms(tmp_path_factory.mktemp("phantom") / "mammo", TINY)


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cell_phantoms(tmp_path_factory.mktemp("phantom") / "cells", TINY)


def read_labels(root: Path) -> list[dict[str, str]]:
    with open(root / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def display(ds: pydicom.Dataset) -> np.ndarray:
    """Stored values -> brightness in [0, 1] with dense tissue bright (modality LUT, MONOCHROME1 undone)."""
    top = 2 ** int(ds.BitsStored) - 1
    values = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        values = top - values
    return values / top


def all_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------- mammography
def test_films_and_labels_are_consistent(mammo: Path) -> None:
    rows = read_labels(mammo)
    films = sorted((mammo / "films").glob("*.dcm"))
    assert (mammo / "labels.csv").read_text().splitlines()[0] == "patient_id,pathology,image_path,x,y,radius"
    assert len(films) == len(rows) == 2 * TINY.mammo_patients
    assert sorted(r["image_path"] for r in rows) == [f"films/{p.name}" for p in films]
    for row in rows:
        stem = Path(row["image_path"]).stem
        assert re.fullmatch(r"phantom_\d{4}_(LEFT|RIGHT)_CC", stem)
        ds = pydicom.dcmread(mammo / row["image_path"], stop_before_pixels=True)
        assert row["patient_id"] == ds.PatientID and ds.PatientID not in stem
        assert ds.ImageLaterality == ds.Laterality == stem.split("_")[2][0]
        if row["pathology"] == "NORMAL":
            assert row["x"] == row["y"] == row["radius"] == ""
        else:
            x, y, r = int(row["x"]), int(row["y"]), int(row["radius"])
            assert 0 <= x < TINY.mammo_film_px and 0 <= y < TINY.mammo_film_px and r >= 1
    per_patient = Counter(r["patient_id"] for r in rows)
    assert len(per_patient) == TINY.mammo_patients and set(per_patient.values()) == {2}
    classes = Counter(r["pathology"] for r in rows)
    assert set(classes) == {"NORMAL", "BENIGN", "MALIGNANT"} and min(classes.values()) >= 3


def test_rare_classes_are_topped_up_to_three_films() -> None:
    labels = _draw_film_labels(20, [0.98, 0.01, 0.01], n_patients=10, seed=0)
    assert min(Counter(labels).values()) >= 3 and len(labels) == 20
    assert 2 not in _draw_film_labels(20, [0.9, 0.1, 0.0], n_patients=10, seed=0)  # a zero fraction stays zero


def test_mammography_is_deterministic(mammo: Path, tmp_path: Path) -> None:
    again = write_mammography_phantoms(tmp_path / "again", TINY)
    assert all_bytes(again) == all_bytes(mammo)


def test_films_decode_with_varied_encodings_and_patient_tags(mammo: Path) -> None:
    seen: dict[str, set] = {"photometric": set(), "syntax": set(), "bits": set(), "slope": set(), "voi": set()}
    for path in sorted((mammo / "films").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array  # decodes RLE and uncompressed films alike
        assert arr.shape == (TINY.mammo_film_px,) * 2 and arr.dtype == np.uint16
        assert int(arr.max()) < 2 ** int(ds.BitsStored)
        assert ds.Modality == "MG" and ds.ViewPosition == "CC"
        assert ds.SOPClassUID == DigitalMammographyXRayImageStorageForPresentation
        # The phantom is input data for the privacy checks: identifiers must be there to be removed later.
        assert str(ds.PatientName).startswith("PHANTOM^PATIENT") and re.fullmatch(r"PHID-\d{4}-[A-Z]{3}", ds.PatientID)
        for tag in ("PatientBirthDate", "AccessionNumber", "InstitutionName", "StudyDate",
                    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            assert str(ds.get(tag, "")).strip(), tag
        seen["photometric"].add(ds.PhotometricInterpretation)
        seen["syntax"].add(ds.file_meta.TransferSyntaxUID)
        seen["bits"].add(int(ds.BitsStored))
        seen["slope"].add(float(ds.get("RescaleSlope", 0)))
        seen["voi"].add("lut" if "VOILUTSequence" in ds else "window" if "WindowCenter" in ds else "none")
    assert seen["photometric"] == {"MONOCHROME1", "MONOCHROME2"}
    assert seen["syntax"] == {RLELossless, ExplicitVRLittleEndian}
    assert seen["bits"] == {12, 14, 16}
    assert seen["slope"] == {0.0, 1.0, 2.0}  # 0 = no rescale tags at all
    assert seen["voi"] == {"lut", "window"}


def test_lesions_lie_inside_the_breast_and_films_are_mirrored(mammo: Path) -> None:
    for row in read_labels(mammo):
        ds = pydicom.dcmread(mammo / row["image_path"])
        breast = display(ds) > 0.08  # background is ~0.02 of full scale, the thinnest breast rim above 0.1
        half = TINY.mammo_film_px // 2
        chest_wall_left = breast[:, :half].sum() > breast[:, half:].sum()
        assert chest_wall_left == (ds.ImageLaterality == "R"), row["image_path"]
        if row["x"]:
            x, y, r = int(row["x"]), int(row["y"]), int(row["radius"])
            rows, cols = np.ogrid[:TINY.mammo_film_px, :TINY.mammo_film_px]
            disc = (rows - y) ** 2 + (cols - x) ** 2 <= r * r
            assert breast[y, x] and breast[disc].mean() > 0.95, row["image_path"]


@pytest.mark.parametrize("shape", [(7, 300), (3, 129), (3, 130), (5, 7), (1, 1), (64, 64)])
def test_rle_encoder_round_trips_through_pydicom(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    arr = rng.integers(0, 3, shape).astype(np.uint16) * 300  # many short and long runs in both bytes
    arr[:, : shape[1] // 2] = 4095  # a run longer than 128 bytes in wide rows
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.set_pixel_data(arr, "MONOCHROME2", 12, generate_instance_uid=False)
    ds.SOPClassUID, ds.SOPInstanceUID = DigitalMammographyXRayImageStorageForPresentation, "1.2.3.4"
    ds.PixelData = encapsulate([_rle_frame(arr)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = RLELossless
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    np.testing.assert_array_equal(pydicom.dcmread(buffer).pixel_array.reshape(shape), arr)


def test_a_folder_with_other_files_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="notes.txt"):
        write_mammography_phantoms(tmp_path, TINY)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


# ---------------------------------------------------------------------------------- cells
def test_cells_are_rgb_folders_per_class_grouped_by_slide(cells: Path) -> None:
    assert sorted(p.name for p in cells.iterdir()) == sorted(TINY.cell_counts)
    slides_of: dict[str, set[str]] = {}
    for name, count in TINY.cell_counts.items():
        files = sorted((cells / name).glob("*.png"))
        assert len(files) == count
        for path in files:
            assert re.fullmatch(r"slide\d{3}_cell\d{3}\.png", path.name)
            with Image.open(path) as im:
                assert im.mode == "RGB" and im.size == (TINY.cell_px, TINY.cell_px)
        slides = Counter(re.match(r"^(slide\d+)_", p.stem).group(1) for p in files)
        assert set(slides.values()) == {TINY.cells_per_slide}
        slides_of[name] = set(slides)
    assert not set.intersection(*slides_of.values())  # a slide belongs to one class


def test_cells_are_deterministic(cells: Path, tmp_path: Path) -> None:
    assert all_bytes(write_cell_phantoms(tmp_path / "again", TINY)) == all_bytes(cells)


def test_abnormal_nuclei_are_larger_and_darker(cells: Path) -> None:
    def dark_fraction(name: str) -> float:
        grey = [np.asarray(Image.open(p), dtype=np.float64).mean(axis=2) for p in (cells / name).glob("*.png")]
        return float((np.stack(grey) < 120).mean())

    normal, low, high = (dark_fraction(n) for n in ("normal", "low_grade", "high_grade"))
    assert normal < low < high
    assert high > 2 * normal


def test_more_classes_interpolate_severity() -> None:
    assert _class_severities(["a", "b", "c", "d"]) == pytest.approx({"a": 0, "b": 1 / 3, "c": 2 / 3, "d": 1})
    assert _class_severities(["normal", "abnormal"]) == {"normal": 0.0, "abnormal": 1.0}
