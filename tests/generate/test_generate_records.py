"""The generate stage's output records: written and read back the same; an old file names the stage to re-run."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pipeline.data.synthetic import MANIFEST_COLUMNS, ManifestRow, read_manifest, write_manifest
from pipeline.errors import DataError
from pipeline.generate.records import GenerateDetails, generate_stage

STAGE = generate_stage("mammo", "acgan")


def details() -> GenerateDetails:
    block = {"fd": {"value": 4.1, "std": 0.1, "reference": None, "reference_std": None}, "n_fake": 5,
             "reference": "none: 1 validation image(s), need >= 2"}
    return GenerateDetails(
        dataset="mammo", gan="acgan", checkpoint="best.pt epoch 15", ema=True, seed=0,
        counts={"malignant": {"real_train": 4, "target": 5, "generated": 7, "kept": 5, "memorised": 1,
                              "unrealistic": 1, "low_confidence": 0, "shortfall": 0}},
        totals={"target": 5, "generated": 7, "kept": 5, "memorised": 1, "unrealistic": 1, "low_confidence": 0,
                "shortfall": 0},
        throughput={"generation_images_per_s": 900.0, "threads": 2}, memorisation={"relative_feature_threshold": 0.41},
        filter={"enabled": True, "realism": {"enabled": False}},
        quality={"kept": {"per_class": {"malignant": block}, "overall": {"fd": {"value": None, "classes": []}}},
                 "generated": {"per_class": {"malignant": block}, "overall": {"fd": {"value": None, "classes": []}}}},
        settings={"reference": "real validation vs real training images of the class"}, dicom_export=False)


def rows() -> list[ManifestRow]:
    return [ManifestRow("images/syn_acgan_malignant_00000.png", "malignant", "acgan", "best.pt epoch 15", 12, "kept",
                        0.912345678, 1.5, 0.0625, "train_malignant_001_ab12"),
            ManifestRow("memorised/syn_acgan_malignant_00001.png", "malignant", "acgan", "best.pt epoch 15", 13,
                        "memorised", 0.5, 0.25, 0.03125, "train_malignant_002_cd34#mirror")]


def test_details_round_trip(tmp_path: Path) -> None:
    details().write(tmp_path / "details.json")
    assert GenerateDetails.read(tmp_path / "details.json", STAGE) == details()


def test_old_details_name_the_file_and_the_stage(tmp_path: Path) -> None:
    data = details().to_json()
    del data["quality"]
    (tmp_path / "details.json").write_text(json.dumps(data))
    with pytest.raises(DataError) as err:
        GenerateDetails.read(tmp_path / "details.json", STAGE)
    assert str(err.value) == (f"{tmp_path / 'details.json'}: no key 'quality' (written by an older version); "
                              "re-run: dvc repro generate@mammo-acgan")


def test_manifest_round_trip_in_the_format_the_arms_read(tmp_path: Path) -> None:
    path = tmp_path / "manifest.csv"
    write_manifest(path, rows())
    back = read_manifest(path, STAGE)
    assert [r.to_row() for r in back] == [r.to_row() for r in rows()]  # numbers to 6 significant digits
    assert back[1] == rows()[1] and back[0].confidence == 0.912346
    with path.open(newline="") as fh:
        written = list(csv.DictReader(fh))
    assert list(written[0]) == MANIFEST_COLUMNS and [r["kept"] for r in written] == ["true", "false"]
    assert written[0]["synthetic"] == "true" and written[0]["confidence"] == "0.912346"


def test_old_or_missing_manifest_names_the_file_and_the_stage(tmp_path: Path) -> None:
    path = tmp_path / "manifest.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, [c for c in MANIFEST_COLUMNS if c != "reason"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(r.to_row() for r in rows())
    with pytest.raises(DataError) as err:
        read_manifest(path, STAGE)
    assert str(err.value) == (f"{path}: no column 'reason' (written by an older version); "
                              "re-run: dvc repro generate@mammo-acgan")
    with pytest.raises(DataError, match=r"nothing\.csv: not found; re-run: dvc repro generate@mammo-acgan$"):
        read_manifest(tmp_path / "nothing.csv", STAGE)
