"""Inputs that used to run without a word and give a wrong result (issue 15): a lesion labelled with its
film's worst label, colour DICOMs refused, identifiers in file names copied into image ids, desktop litter
stopping a run, transparent images cached on black, and DVC stages that do not depend on the code they run.

The bad inputs that now stop with one line (duplicate params keys, a 1 x 1 image, a DICOM named .jpg,
pydicom's multi-line errors, a DICOM header without Transfer Syntax or Bits Allocated) are cases of
``test_bad_inputs.INGEST_CASES``. Each test here runs the real ingest command (stage server, stagerun.py).
"""
from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.config import DatasetConfig, SourceConfig
from pipeline.data.cache import load_split
from pipeline.data.ingest import map_labels
from pipeline.data.readers.dicom import read_dicom
from pipeline.data.readers.mias import list_mias
from tests.conftest import REPO, shared, write_dicom, write_png
from tests.data.test_mias import make_mias
from tests.reliability.test_bad_inputs import copy_pydicom_file, ingest_case, run_ingest
from tests.reliability.test_privacy import blobs, leaks


def splits_rows(case: Path) -> list[dict]:
    with (case / "out" / "splits.csv").open() as fh:
        return list(csv.DictReader(fh))


def metrics(case: Path) -> dict:
    """The whole ingest record (the --metrics file holds only the counts)."""
    return json.loads((case / "out" / "ingest.json").read_text())


def write_params(case: Path, ds: dict) -> None:
    ds = {"resolution_px": 32, "split": {"val_fraction": 0.2, "test_fraction": 0.3, "seed": 0}, **ds}
    (case / "params.yaml").write_text(yaml.safe_dump({"datasets": {"d": ds}}))


# ------------------------------------------------------------------ 1. each lesion carries its own row's label
def test_each_lesion_patch_keeps_its_own_label(stages, tmp_path: Path) -> None:
    """Films with a benign and a malignant row (as mini-MIAS mdb144): one benign and one malignant patch."""
    rows = [f"mdb{i:03d} G NORM" for i in range(1, 9)] + [f"mdb{i:03d} F CIRC B 40 40 8" for i in range(9, 15)] \
        + [f"mdb{i:03d} D SPIC M 60 70 10" for i in range(15, 21)] \
        + [line for i in range(21, 27) for line in (f"mdb{i:03d} F MISC B 30 90 8", f"mdb{i:03d} F MISC M 90 30 8")]
    make_mias(tmp_path / "src", rows, size=128, pgm=True)
    write_params(tmp_path, {"modality": "mammography", "channels": 1, "task": "patches",
                            "source": {"reader": "mias", "root": "src"}, "patch": {"min_patch_px": 8, "max_patch_px": 64}})
    result = run_ingest(stages, tmp_path)
    assert result.returncode == 0, result.stderr
    patches = [(r["image_id"].rsplit("_", 1)[1], r["label"]) for r in splits_rows(tmp_path)]
    lesion0 = [label for crop, label in patches if crop == "lesion0"]
    lesion1 = [label for crop, label in patches if crop == "lesion1"]
    assert len(lesion1) == 6 and set(lesion1) == {"malignant"}  # the second row of each mixed film
    # first rows: 6 benign films, 6 mixed films (benign row first: was 'malignant', the film's worst), 6 malignant
    assert lesion0.count("benign") == 12 and lesion0.count("malignant") == 6, patches


def test_real_mini_mias_lesions_carry_their_row_label() -> None:
    """On the real Info.txt: every lesion's label is the severity on its own line (mdb144: MISC B and MISC M)."""
    root = shared("mias")
    items = list_mias(SourceConfig(reader="mias", root=str(root)))
    map_labels(items, DatasetConfig(modality="mammography", task="patches", channels=1,
                                    source=SourceConfig(reader="mias", root=str(root))), "datasets.mias")
    lines = (root / "Info.txt").read_text(errors="replace").splitlines()
    severity = {"B": "benign", "M": "malignant"}
    checked = 0
    for item in items:
        for lesion in item.lesions:
            line_no = int(lesion.where.rsplit("line ", 1)[1])
            assert lesion.label == severity[lines[line_no - 1].split()[3]], (item.image_id, lesion.where)
            checked += 1
    mdb144 = next(it for it in items if it.image_id == "mdb144")
    assert [les.label for les in mdb144.lesions] == ["benign", "malignant"] and mdb144.label == "malignant"
    assert checked > 100


# --------------------------------------------------------------------------- 3. images below min_image_px
def test_tiny_images_are_skipped_and_counted_under_skip(stages, tmp_path: Path) -> None:
    ingest_case(tmp_path, "cells", on_bad_file="skip")
    write_png(tmp_path / "src/normal/normal_00.png", np.zeros((1, 1, 3), np.uint8))
    write_png(tmp_path / "src/abnormal/abnormal_00.png", np.zeros((40, 8, 3), np.uint8))  # 8 px wide
    result = run_ingest(stages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert metrics(tmp_path)["bad_files_skipped"] == 2 and metrics(tmp_path)["n_images"] == 18
    assert sum("smaller than min_image_px 16" in line for line in result.stderr_lines) == 2


# ---------------------------------------------------------------- 5. colour JPEG 2000 DICOMs (YBR_RCT / ICT)
@pytest.mark.parametrize("channels", [3, 1])
def test_ybr_rct_jpeg2000_dicoms_are_read_as_rgb_or_grey(stages, tmp_path: Path, channels: int) -> None:
    ingest_case(tmp_path, "cells", channels=channels)
    for i, name in enumerate(("GDCMJ2K_TextGBR.dcm", "examples_jpeg2k.dcm")):
        copy_pydicom_file(name, tmp_path / "src" / "normal" / f"colour_{i}.dcm")
    result = run_ingest(stages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert metrics(tmp_path)["n_images"] == 22
    said = [line for line in result.stderr_lines if "YBR_RCT colour (JPEG 2000) decoded to RGB" in line]
    assert len(said) == 2, result.stderr
    text = read_dicom(tmp_path / "src/normal/colour_0.dcm", 3)  # 'red', 'green', 'blue' written in their colour
    red = text[60:100, 30:150].reshape(-1, 3)
    red = red[red[:, 0] > 0.9]
    assert len(red) > 200 and red[:, 1:].max() < 0.1
    assert read_dicom(tmp_path / "src/normal/colour_0.dcm", 1).ndim == 2


# ------------------------------------------------------------ 6. no source-file text in image ids
def test_identifiers_in_file_and_folder_names_do_not_reach_the_outputs(stages, tmp_path: Path) -> None:
    """CBIS-style stems and folders hold the patient number and the view; tags hold other values."""
    rng = np.random.default_rng(0)
    secrets = set()
    for cls in ("benign", "malignant"):
        for i in range(8):
            patient = f"P_{173 + i:05d}"
            folder = tmp_path / "src" / cls / f"Mass-Training_{patient}_LEFT_CC" / "07-20-2016-DDSM-74994"
            write_dicom(folder / f"Calc_{patient}_RIGHT_MLO_{cls}.dcm", (rng.random((48, 48)) * 4000).astype(np.uint16),
                        bits_stored=12, window=(2000, 4000), patient_id=f"ANON{i:03d}{cls}")
            secrets |= {patient, f"Mass-Training_{patient}", "RIGHT_MLO", "LEFT_CC", "DDSM-74994", "Calc_"}
    write_params(tmp_path, {"modality": "mammography", "channels": 1, "task": "images",
                            "source": {"reader": "dicom", "root": "src"}})
    result = run_ingest(stages, tmp_path)
    assert result.returncode == 0, result.stderr
    outputs = [p for p in (tmp_path / "out").rglob("*") if p.is_file()] + [tmp_path / "metrics.json"]
    for path in outputs:
        for blob in blobs(path):
            assert not leaks(blob, secrets), (path, leaks(blob, secrets))
    ids = [r["image_id"] for r in splits_rows(tmp_path)]
    cached = [str(i) for s in ("train", "val", "test") for i in load_split(tmp_path / "out", s).image_ids]
    assert sorted(ids) == sorted(cached) and len(set(ids)) == 16
    assert all(i.split("_")[0] in ("benign", "malignant") and len(i.split("_")[1]) == 12 for i in ids)


# ---------------------------------------------- 7. desktop litter ignored and counted; skip covers listing
def test_desktop_litter_is_ignored_and_counted(stages, tmp_path: Path) -> None:
    ingest_case(tmp_path, "cells")
    src = tmp_path / "src"
    (src / "normal" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(60))
    (src / "abnormal" / "desktop.ini").write_text("[.ShellClassInfo]\n")
    (src / "normal" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (src / "abnormal" / "._abnormal_00.png").write_bytes(b"\x00\x05\x16\x07")
    (src / "__MACOSX" / "normal").mkdir(parents=True)
    (src / "__MACOSX" / "normal" / "._normal_01.png").write_bytes(b"\x00\x05\x16\x07")
    result = run_ingest(stages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert metrics(tmp_path)["litter_ignored"] == 5 and metrics(tmp_path)["n_images"] == 20


def test_skip_covers_listing_errors(stages, tmp_path: Path) -> None:
    """on_bad_file: skip goes past a non-image file, an empty class folder (cells) and a DICOM whose header
    cannot be read while listing (dicom folder reader), counting each."""
    ingest_case(tmp_path / "cells", "cells", on_bad_file="skip")
    (tmp_path / "cells/src/normal/notes.txt").write_text("scanned by")
    (tmp_path / "cells/src/benign").mkdir()
    ingest_case(tmp_path / "dicom", "dicom", on_bad_file="skip")
    (tmp_path / "dicom/src/normal/film_normal_00.dcm").write_text("a text file")
    for case, skipped, kept in (("cells", 2, 20), ("dicom", 1, 19)):
        result = run_ingest(stages, tmp_path / case)
        assert result.returncode == 0, result.stderr
        assert (metrics(tmp_path / case)["bad_files_skipped"], metrics(tmp_path / case)["n_images"]) == (skipped, kept)
        assert sum("skipped:" in line for line in result.stderr_lines) == skipped


# --------------------------------------------------- 8. transparency composited on the data set's background
HERLEV_BACKGROUND = (223, 189, 205)


def test_transparent_images_are_composited_on_the_data_set_background(stages, tmp_path: Path) -> None:
    """Cells on Herlev's pink background, and one cut-out cell on a transparent background: after ingest
    no cached image has a black corner, and the metrics count the composited image."""
    rng = np.random.default_rng(0)
    for cls in ("normal", "abnormal"):
        for i in range(10):
            image = np.empty((40, 40, 3), np.uint8)
            image[...] = HERLEV_BACKGROUND
            image += rng.integers(0, 6, image.shape, dtype=np.uint8)
            image[14:26, 14:26] = (60, 40, 90)  # the nucleus
            write_png(tmp_path / "src" / cls / f"{cls}_{i:02d}.png", image)
    cut_out = np.zeros((40, 40, 4), np.uint8)  # RGB 0 where transparent, as most editors save it
    cut_out[10:30, 10:30] = (150, 110, 160, 255)
    cut_out[14:26, 14:26] = (60, 40, 90, 255)
    Image.fromarray(cut_out, "RGBA").save(tmp_path / "src" / "abnormal" / "abnormal_00.png")
    write_params(tmp_path, {"modality": "cytology", "channels": 3, "source": {"reader": "folder", "root": "src"}})
    result = run_ingest(stages, tmp_path)
    assert result.returncode == 0, result.stderr
    m = metrics(tmp_path)
    assert m["alpha_composited"] == 1 and np.allclose(m["alpha_background_rgb"], HERLEV_BACKGROUND, atol=6)
    for split in ("train", "val", "test"):
        corners = load_split(tmp_path / "out", split).images[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
        assert corners.min() > 150, split


# ------------------------------------------------------------ 9. every stage depends on the code it imports
def local_imports(module: str) -> set[Path]:
    """Files of the repository's own modules that ``module`` imports, directly or through others (every import
    statement, also those inside functions), plus non-empty package __init__ files on the way."""
    seen: set[str] = set()
    files: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = REPO / Path(*name.split("."))
        file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if not file.is_file():
            continue
        if file.name != "__init__.py" or file.read_text().strip():
            files.add(file.relative_to(REPO))
        parts = name.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts))]  # parent packages run first
        package = name if file.name == "__init__.py" else ".".join(parts[:-1])
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.split(".")[0] in ("pipeline", "stages")]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
                if base.split(".")[0] in ("pipeline", "stages"):
                    todo += [base] + [f"{base}.{a.name}" for a in node.names]  # 'from pkg import module'
    return files


def stage_deps() -> dict[str, tuple[str, list[str]]]:
    """DVC stage -> (module its cmd runs, its code deps), from dvc.yaml (foreach / matrix bodies as written)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        module = body["cmd"].split("python -m ", 1)[1].split()[0]
        out[name] = (module, [d for d in body["deps"] if not d.startswith(("data", "models", "metrics", "plots",
                                                                            "results", "$"))])
    return out


def test_every_stage_depends_on_the_code_it_imports() -> None:
    """Editing any file a stage imports must make ``dvc repro`` re-run that stage: each imported file of the
    repository lies under one of the stage's deps (a file or a folder), and every code dep exists."""
    missing = {}
    for stage, (module, deps) in stage_deps().items():
        for dep in deps:
            assert (REPO / dep).exists(), f"dvc.yaml: {stage} depends on {dep}, which does not exist"
        covered = [Path(d) for d in deps]
        absent = sorted(str(f) for f in local_imports(module)
                        if not any(f == d or d in f.parents for d in covered))
        if absent:
            missing[stage] = absent
    assert not missing, f"dvc.yaml: stages miss deps on code they import: {missing}"


def test_import_walk_finds_what_the_issue_named() -> None:
    """The walk itself: generate reaches the sample helper, config, tracking and the cache writer."""
    files = {str(f) for f in local_imports("stages.generate")}
    assert {"stages/generate.py", "stages/_common.py", "pipeline/config.py", "pipeline/tracking.py",
            "pipeline/data/cache.py", "pipeline/gan/samples.py"} <= files, sorted(files)
