"""Bad inputs through the stage commands: each stops with exit 2, ONE stderr line (file or key, problem, fix)
and no half-written output. Plus ``on_bad_file: skip``, and hypothesis fuzzing of the readers.

The cases run as ``python -m stages.<name> ...`` commands through the session's stage server (stagerun.py,
milliseconds per command instead of seconds of imports); ``test_server_answers_like_python_m`` checks one
against a real ``python -m``. Paths are relative to the case folder, so the messages read as in the fault table of
docs/RELIABILITY.md.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pydicom
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.config import SourceConfig
from pipeline.data.readers.folder import list_folder
from pipeline.data.readers.manifest import list_manifest
from pipeline.data.readers.mias import list_mias, parse_info
from pipeline.errors import PipelineError
from tests.classify.fakes import write_cache as write_classify_cache
from tests.classify.fakes import write_manifest
from tests.conftest import REPO, write_dicom, write_png
from tests.data.test_mias import make_mias
from tests.generate.gen_toy import fast_generate_section, write_toy_cache, write_toy_checkpoint
from tests.reliability.conftest import assert_one_line_error, leftovers

# ------------------------------------------------------------------------------------------ the data sets
CLASSES = ["normal", "abnormal"]


def cells(root: Path, per_class: int = 10) -> None:
    """Folder reader: ``src/<class>/<class>_NN.png``, 24 px RGB."""
    rng = np.random.default_rng(0)
    for cls in CLASSES:
        for i in range(per_class):
            write_png(root / cls / f"{cls}_{i:02d}.png", rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))


def manifest(root: Path, per_class: int = 10) -> None:
    """Manifest reader: ``src/manifest.csv`` (path,label,patient_id) over ``src/images/*.png``."""
    rng = np.random.default_rng(1)
    rows = ["path,label,patient_id"]
    for cls in CLASSES:
        for i in range(per_class):
            write_png(root / "images" / f"{cls}_{i:02d}.png", rng.integers(0, 255, (24, 24), dtype=np.uint8))
            rows.append(f"images/{cls}_{i:02d}.png,{cls},pt{cls}{i}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")


def dicoms(root: Path, per_class: int = 10) -> None:
    """DICOM reader, one folder per class: ``src/<class>/film_NN.dcm``, 48 px 12-bit MG films."""
    rng = np.random.default_rng(2)
    for cls in CLASSES:
        for i in range(per_class):
            write_dicom(root / cls / f"film_{cls}_{i:02d}.dcm", (rng.random((48, 48)) * 4000).astype(np.uint16),
                        bits_stored=12, window=(2000, 4000), patient_id=f"P{cls}{i}")


def cbis(root: Path, per_class: int = 10) -> None:
    """DICOM reader with a CBIS-style CSV: lesion x, y, radius for abnormal films."""
    dicoms(root, per_class)
    rows = ["patient_id,pathology,image_path,x,y,radius"]
    for cls in CLASSES:
        for i in range(per_class):
            lesion = "24,24,6" if cls == "abnormal" else ",,"
            rows.append(f"P{cls}{i},{'MALIGNANT' if cls == 'abnormal' else 'NORMAL'},{cls}/film_{cls}_{i:02d}.dcm,"
                        + lesion)
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


MIAS_ROWS = [f"mdb{i:03d} G NORM" for i in range(1, 9)] + [f"mdb{i:03d} F CIRC B 64 64 8" for i in range(9, 15)] \
    + [f"mdb{i:03d} D SPIC M 60 70 10" for i in range(15, 21)]


def mias(root: Path) -> None:
    """mini-MIAS reader: Info.txt and 128 px PGM films."""
    make_mias(root, MIAS_ROWS, size=128, pgm=True)


SOURCES = {
    "cells": (cells, {"modality": "cytology", "channels": 3, "source": {"reader": "folder", "root": "src"}}),
    "manifest": (manifest, {"modality": "cytology", "channels": 1,
                            "source": {"reader": "manifest", "labels_csv": "src/manifest.csv"}}),
    "dicom": (dicoms, {"modality": "mammography", "channels": 1, "task": "images",
                       "source": {"reader": "dicom", "root": "src"}}),
    "cbis": (cbis, {"modality": "mammography", "channels": 1, "task": "patches",
                    "source": {"reader": "dicom", "root": "src", "labels_csv": "src/labels.csv"},
                    "patch": {"min_patch_px": 8, "max_patch_px": 32}}),
    "mias": (mias, {"modality": "mammography", "channels": 1, "task": "patches",
                    "source": {"reader": "mias", "root": "src"},
                    "patch": {"min_patch_px": 8, "max_patch_px": 64}}),
}


def ingest_case(tmp_path: Path, kind: str, **overrides) -> Path:
    """Write data set ``kind`` under tmp_path/src and tmp_path/params.yaml (data set 'd'); returns params."""
    write, ds = SOURCES[kind]
    write(tmp_path / "src")
    ds = {**ds, "resolution_px": 32, "split": {"val_fraction": 0.2, "test_fraction": 0.3, "seed": 0}}
    for key, value in overrides.items():
        ds[key] = {**ds[key], **value} if isinstance(value, dict) and isinstance(ds.get(key), dict) else value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"datasets": {"d": ds}}))
    return tmp_path / "params.yaml"


def run_ingest(stages, tmp_path: Path):
    return stages.run("stages.ingest", "--params", "params.yaml", "--dataset", "d", "--out", "out",
                      "--metrics", "metrics.json", cwd=tmp_path)


# ------------------------------------------------------------------------------------------ damaged files
def png_bytes(arr: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def huge_png_header() -> bytes:
    """A PNG that claims 30000 x 30000 pixels (900 MP): a decompression bomb, or an absurd scan."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) \
        + chunk(b"IEND", b"")


def edit_dicom(path: Path, change: Callable[[pydicom.Dataset], None], enforce: bool = True) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=enforce)


def unknown_syntax(ds: pydicom.Dataset) -> None:
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7.8.9"
    ds.PixelData = b"\x00" * 100
    ds["PixelData"].VR = "OB"


def bad_bits(ds: pydicom.Dataset) -> None:
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 24, 23


def replace_line(path: Path, old: str, new: str | None) -> None:
    lines = path.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(old))
    lines[i:i + 1] = [] if new is None else [new]
    path.write_text("\n".join(lines) + "\n")


def drop_bits_and_photometric(ds: pydicom.Dataset) -> None:
    del ds.BitsAllocated, ds.PhotometricInterpretation


def copy_pydicom_file(name: str, dst: Path) -> None:
    """One of pydicom's own test files (installed with it; never downloaded), else skip the case."""
    src = Path(pydicom.__file__).parent / "data" / "test_files" / name
    if not src.is_file():
        pytest.skip(f"pydicom's test file {name} is not installed with this pydicom")
    dst.write_bytes(src.read_bytes())


def repeat_key(params: Path, key: str, value: str) -> None:
    """Write ``key: value`` again right after its first line, at the same indent."""
    lines = params.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if line.strip().startswith(f"{key}:"))
    indent = lines[i][:len(lines[i]) - len(lines[i].lstrip())]
    lines.insert(i + 1, f"{indent}{key}: {value}")
    params.write_text("\n".join(lines) + "\n")


A_PNG = "src/normal/normal_00.png"
A_DCM = "src/normal/film_normal_00.dcm"
A_PGM = "src/mdb003.pgm"

# id -> (data set, params overrides, damage(src folder), words the one line must hold). Read
# docs/RELIABILITY.md for the line each gives.
INGEST_CASES: dict[str, tuple] = {
    "png_corrupt": ("cells", {}, lambda s: (s / "normal/normal_00.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 500),
                    [A_PNG, "cannot decode image", "re-export it or remove it"]),
    "png_truncated": ("cells", {}, lambda s: (s / "normal/normal_00.png").write_bytes(
        (s / "normal/normal_00.png").read_bytes()[:300]), [A_PNG, "cannot decode image"]),
    "png_empty": ("cells", {}, lambda s: (s / "normal/normal_00.png").write_bytes(b""),
                  [A_PNG, "empty file (0 bytes)"]),
    "png_huge": ("cells", {}, lambda s: (s / "normal/normal_00.png").write_bytes(huge_png_header()),
                 [A_PNG, "900000000 pixels"]),
    "jpeg_corrupt": ("cells", {}, lambda s: (s / "normal/normal_00.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x13" * 9),
                     ["src/normal/normal_00.jpg", "cannot decode image"]),
    "jpeg_truncated": ("cells", {}, lambda s: (s / "normal/normal_00.jpg").write_bytes(
        png_bytes(np.full((64, 64, 3), 128, np.uint8), "JPEG")[:200]), ["src/normal/normal_00.jpg", "cannot decode"]),
    "tiff_32bit_mode": ("cells", {}, lambda s: Image.fromarray(np.full((24, 24), -5, np.int32)).save(
        s / "normal/normal_00.tif"), ["src/normal/normal_00.tif", "pixel values outside 0..65535"]),
    "non_image_file": ("cells", {}, lambda s: (s / "normal/notes.txt").write_text("scanned by"),
                       ["src/normal/notes.txt", "not an image file"]),
    "empty_class_folder": ("cells", {}, lambda s: (s / "benign").mkdir(), ["src/benign", "empty class folder"]),
    "single_class": ("cells", {}, lambda s: [p.unlink() for p in (s / "abnormal").iterdir()] and
                     (s / "abnormal").rmdir(), ["src", "a single class ('normal')"]),
    "image_too_small": ("cells", {}, lambda s: write_png(s / "normal/normal_00.png", np.zeros((1, 1, 3), np.uint8)),
                        [A_PNG, "image is 1 x 1 px, smaller than min_image_px 16"]),
    "dicom_named_jpg": ("cells", {}, lambda s: write_dicom(s / "normal/normal_00.jpg", np.zeros((24, 24), np.uint16)),
                        ["src/normal/normal_00.jpg", "a DICOM file with a .jpg suffix", "rename it to .dcm"]),
    "missing_root": ("cells", {"source": {"root": "nowhere"}}, lambda s: None, ["nowhere", "image folder not found"]),
    "unknown_label_folder": ("cells", {"classes": ["normal", "benign"]}, lambda s: None,
                             ["src/abnormal/abnormal_00.png", "unknown label 'abnormal'"]),
    "manifest_unknown_label": ("manifest", {"classes": CLASSES},
                               lambda s: replace_line(s / "manifest.csv", "images/normal_03",
                                                      "images/normal_03.png,tumour,x"),
                               ["src/images/normal_03.png", "unknown label 'tumour'"]),
    "manifest_malformed_line": ("manifest", {}, lambda s: replace_line(s / "manifest.csv", "images/normal_03",
                                                                       "images/normal_03.png,normal,x,extra"),
                                ["src/manifest.csv line 5", "wrong number of columns"]),
    "manifest_duplicate_row": ("manifest", {}, lambda s: replace_line(s / "manifest.csv", "images/normal_03",
                                                                      "images/normal_02.png,normal,pt9"),
                               ["src/manifest.csv line 5", "already listed on line 4"]),
    "manifest_missing_path": ("manifest", {}, lambda s: (s / "images/normal_03.png").unlink(),
                              ["src/manifest.csv line 5", "does not exist"]),
    "manifest_not_utf8": ("manifest", {}, lambda s: (s / "manifest.csv").write_bytes(
        (s / "manifest.csv").read_bytes() + b"images/\xff\xfe.png,normal,x\n"), ["src/manifest.csv", "UTF-8"]),
    "dicom_corrupt": ("dicom", {}, lambda s: (s / "normal/film_normal_00.dcm").write_bytes(
        b"\x00" * 128 + b"DICM" + b"\xff" * 300),
                      [A_DCM, "DICOM file ends early"]),
    "dicom_not_dicom": ("dicom", {}, lambda s: (s / "normal/film_normal_00.dcm").write_text("a text file"),
                        [A_DCM, "not a DICOM file"]),
    "dicom_truncated": ("dicom", {}, lambda s: (s / "normal/film_normal_00.dcm").write_bytes(
        (s / "normal/film_normal_00.dcm").read_bytes()[:1000]), [A_DCM, "truncated or corrupt"]),
    "dicom_empty": ("dicom", {}, lambda s: (s / "normal/film_normal_00.dcm").write_bytes(b""),
                    [A_DCM, "empty file (0 bytes)"]),
    "dicom_no_pixel_data": ("dicom", {}, lambda s: edit_dicom(s / "normal/film_normal_00.dcm",
                                                              lambda ds: delattr(ds, "PixelData")),
                            [A_DCM, "DICOM has no pixel data"]),
    "dicom_photometric": ("dicom", {}, lambda s: edit_dicom(
        s / "normal/film_normal_00.dcm", lambda ds: setattr(ds, "PhotometricInterpretation", "PALETTE COLOR")),
        [A_DCM, "photometric interpretation 'PALETTE COLOR' is not supported"]),
    "dicom_transfer_syntax": ("dicom", {}, lambda s: edit_dicom(s / "normal/film_normal_00.dcm", unknown_syntax, False),
                              [A_DCM, "1.2.3.4.5.6.7.8.9"]),
    "dicom_bit_depth": ("dicom", {}, lambda s: edit_dicom(s / "normal/film_normal_00.dcm", bad_bits),
                        [A_DCM, "pixel data cannot be decoded"]),
    "dicom_no_transfer_syntax": ("dicom", {}, lambda s: edit_dicom(s / "normal/film_normal_00.dcm",
                                                                   lambda ds: delattr(ds.file_meta, "TransferSyntaxUID"),
                                                                   False),
                                 [A_DCM, "DICOM header lacks (0002,0010) Transfer Syntax UID"]),
    "dicom_no_bits_allocated": ("dicom", {}, lambda s: edit_dicom(s / "normal/film_normal_00.dcm", drop_bits_and_photometric,
                                                                  False),
                                [A_DCM, "lacks (0028,0100) Bits Allocated, (0028,0004) Photometric Interpretation"]),
    "dicom_jpeg_lossy_damaged": ("dicom", {}, lambda s: copy_pydicom_file("JPEG-lossy.dcm", s / "normal/film_normal_00.dcm"),
                                 [A_DCM, "compressed pixel data (1.2.840.10008.1.2.4.51) cannot be decoded",
                                  "re-export the file uncompressed"]),
    "dicom_j2k_bad_header": ("dicom", {}, lambda s: copy_pydicom_file("JPEG2000-embedded-sequence-delimiter.dcm",
                                                                      s / "normal/film_normal_00.dcm"),
                             [A_DCM, "failed to read the header", "re-export the file uncompressed"]),
    "csv_out_of_film": ("cbis", {}, lambda s: replace_line(
        s / "labels.csv", "Pabnormal2,", "Pabnormal2,MALIGNANT,abnormal/film_abnormal_02.dcm,300,20,6"),
                        ["src/labels.csv line 14", "lesion centre x=300, y=20 is outside the 48 x 48 film"]),
    "info_out_of_film": ("mias", {}, lambda s: replace_line(s / "Info.txt", "mdb010", "mdb010 F CIRC B 900 2000 8"),
                         ["src/Info.txt line 12", "is outside the 128 x 128 film"]),
    "info_malformed_line": ("mias", {}, lambda s: replace_line(s / "Info.txt", "mdb010", "mdb010 F CIRC B 64 sixty 8"),
                            ["src/Info.txt line 12", "are not numbers"]),
    "info_unknown_label": ("mias", {}, lambda s: replace_line(s / "Info.txt", "mdb010", "mdb010 F CIRC X 64 64 8"),
                           ["src/Info.txt line 12", "severity 'X' is not B or M"]),
    "pgm_truncated": ("mias", {}, lambda s: (s / "mdb003.pgm").write_bytes((s / "mdb003.pgm").read_bytes()[:2000]),
                      [A_PGM, "cannot decode image"]),
    "pgm_empty": ("mias", {}, lambda s: (s / "mdb003.pgm").write_bytes(b""), [A_PGM, "empty file (0 bytes)"]),
    "pgm_corrupt": ("mias", {}, lambda s: (s / "mdb003.pgm").write_bytes(b"P5\n128 x\n255\n" + b"\x00" * 99),
                    [A_PGM, "cannot decode image"]),
    "params_wrong_type": ("cells", {"resolution_px": "64"}, lambda s: None,
                          ["params.yaml: datasets.d.resolution_px", "expected an integer"]),
    "params_out_of_range": ("cells", {"split": {"test_fraction": 0.9}}, lambda s: None,
                            ["params.yaml: datasets.d.split.test_fraction", "out of range"]),
    "params_unknown_key": ("cells", {"on_bad_files": "skip"}, lambda s: None,
                           ["params.yaml: datasets.d.on_bad_files", "unknown key"]),
    "params_duplicate_key": ("cells", {}, lambda s: repeat_key(s.parent / "params.yaml", "resolution_px", "64"),
                             ["params.yaml line", "datasets.d.resolution_px: key written twice (lines"]),
    "params_duplicate_seed": ("cells", {}, lambda s: repeat_key(s.parent / "params.yaml", "seed", "7"),
                              ["params.yaml line", "datasets.d.split.seed: key written twice"]),
    "params_bad_regex": ("cells", {"source": {"patient_pattern": "(slide"}}, lambda s: None,
                         ["params.yaml: datasets.d.source.patient_pattern", "regular expression"]),
}


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_each_data_set_ingests_before_it_is_damaged(stages, tmp_path: Path, source: str) -> None:
    ingest_case(tmp_path, source)
    result = run_ingest(stages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "metrics.json").read_text())["n_images"] > 0


@pytest.mark.parametrize("case", sorted(INGEST_CASES))
def test_bad_input_stops_ingest_with_one_line(stages, tmp_path: Path, case: str) -> None:
    source, overrides, damage, words = INGEST_CASES[case]
    ingest_case(tmp_path, source, **overrides)
    damage(tmp_path / "src")
    result = run_ingest(stages, tmp_path)
    assert_one_line_error(result, *words)
    assert not (tmp_path / "out").exists() and not (tmp_path / "metrics.json").exists()
    assert leftovers(tmp_path) == []


def test_skip_counts_bad_files_and_keeps_the_good_ones(stages, tmp_path: Path) -> None:
    """on_bad_file: skip goes on past undecodable files, counts them and names each in a warning."""
    ingest_case(tmp_path, "cells", on_bad_file="skip")
    src = tmp_path / "src"
    (src / "normal" / "normal_00.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 500)
    (src / "normal" / "normal_01.png").write_bytes(b"")
    (src / "normal" / "normal_02.png").write_bytes(huge_png_header())
    for case in ("jpeg_truncated", "tiff_32bit_mode"):  # two more files: normal_00.jpg, normal_00.tif
        INGEST_CASES[case][2](src)
    (src / "abnormal" / "abnormal_05.png").write_bytes(b"")  # one of the other class too
    result = run_ingest(stages, tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "ingest.json").read_text())  # the --metrics file: counts only
    assert metrics["bad_files_skipped"] == 6 and metrics["items_listed"] == 20 + 2
    assert metrics["n_images"] == 22 - 6
    ids = [line.split(",")[0] for line in (tmp_path / "out" / "splits.csv").read_text().splitlines()[1:]]
    assert len(ids) == 16 and not {"normal_00", "normal_01", "normal_02", "abnormal_05"} & set(ids)
    warnings = [line for line in result.stderr_lines if "skipped:" in line]
    assert len(warnings) == 6 and all("; " in w for w in warnings), result.stderr
    # the same folder with on_bad_file: error stops at the first bad file
    ingest_case(tmp_path / "strict", "cells")
    for case in ("png_corrupt", "png_empty"):
        INGEST_CASES[case][2](tmp_path / "strict" / "src")
    assert_one_line_error(run_ingest(stages, tmp_path / "strict"), A_PNG)


# ------------------------------------------------------------------------------------------ later stages
def gan_case(tmp_path: Path, epochs: object) -> None:
    from tests.gan.gan_toy import tiny_gan_section, write_cache, write_params

    write_cache(tmp_path / "data" / "toy")
    gan = tiny_gan_section()
    gan["train"]["epochs"] = epochs
    write_params(tmp_path / "params.yaml", gan)


def generate_case(tmp_path: Path, checkpoint: Callable[[Path], object]) -> None:
    from tests.generate.gen_toy import write_params

    write_toy_cache(tmp_path / "data" / "toy")
    write_params(tmp_path / "params.yaml", fast_generate_section())
    checkpoint(tmp_path / "ckpt.pt")


def evaluate_case(tmp_path: Path, damage: Callable[[Path], object]) -> None:
    write_classify_cache(tmp_path / "data" / "toy")
    write_manifest(tmp_path / "syn" / "acgan", "acgan", {"malignant": 4, "benign": 2})
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["evaluate"]["tracking"] = False
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    damage(tmp_path)


def shrink_one_synthetic(root: Path) -> None:
    path = root / "syn" / "acgan" / "images" / "syn_acgan_malignant_0003.png"
    write_png(path, np.zeros((8, 8), np.uint8))


def unmark_one_row(root: Path) -> None:
    path = root / "syn" / "acgan" / "manifest.csv"
    path.write_text(path.read_text().replace("syn_acgan_benign_0004.png", "real_benign_0004.png", 1))


GAN_ARGS = ["--dataset", "toy", "--model", "acgan", "--params", "params.yaml", "--data-dir", "data/toy",
            "--run-dir", "runs", "--out-dir", "out", "--metrics", "metrics.json", "--plots", "plot.csv"]
GENERATE_ARGS = ["--checkpoint", "ckpt.pt", "--gan", "cdcgan", "--label", "bars", "-n", "2", "--out", "out",
                 "--data-dir", "data/toy", "--params", "params.yaml"]
EVALUATE_ARGS = ["--dataset", "toy", "--params", "params.yaml", "--data-dir", "data/toy", "--synthetic-dir", "syn",
                 "--arms", "real_only,acgan", "--out", "out", "--metrics", "metrics.json"]



def with_arg(args: list[str], flag: str, value: str) -> list[str]:
    i = args.index(flag)
    return [*args[:i + 1], value, *args[i + 2:]]


STAGE_CASES: dict[str, tuple] = {
    "gan_params_wrong_type": ("stages.train_gan", GAN_ARGS, lambda t: gan_case(t, "ten"),
                              ["params.yaml: gan.train.epochs", "expected an integer"]),
    "gan_params_out_of_range": ("stages.train_gan", GAN_ARGS, lambda t: gan_case(t, -3),
                                ["params.yaml: gan.train.epochs", "out of range"]),
    "gan_missing_cache": ("stages.train_gan", with_arg(GAN_ARGS, "--data-dir", "elsewhere"), lambda t: gan_case(t, 1),
                          ["elsewhere/meta.json", "not found; run the ingest stage first"]),
    "checkpoint_other_model": ("stages.generate", GENERATE_ARGS,
                               lambda t: generate_case(t, lambda p: write_toy_checkpoint(p, model="acgan")),
                               ["ckpt.pt", "a acgan checkpoint, not cdcgan"]),
    "checkpoint_other_resolution": ("stages.generate", GENERATE_ARGS,
                                    lambda t: generate_case(t, lambda p: write_toy_checkpoint(p, size_px=16)),
                                    ["ckpt.pt", "makes 16 px images but data set 'toy' is 32 px"]),
    "checkpoint_corrupt": ("stages.generate", GENERATE_ARGS,
                           lambda t: generate_case(t, lambda p: p.write_bytes(b"PK\x03\x04" + b"\x00" * 200)),
                           ["ckpt.pt", "cannot read checkpoint"]),
    "checkpoint_missing": ("stages.generate", with_arg(GENERATE_ARGS, "--checkpoint", "nowhere.pt"),
                           lambda t: generate_case(t, lambda p: None), ["nowhere.pt", "checkpoint not found"]),
    "synthetic_wrong_size": ("stages.evaluate", EVALUATE_ARGS, lambda t: evaluate_case(t, shrink_one_synthetic),
                             ["syn/acgan/images/syn_acgan_malignant_0003.png", "8 px, the data set is 16 px"]),
    "synthetic_row_unmarked": ("stages.evaluate", EVALUATE_ARGS, lambda t: evaluate_case(t, unmark_one_row),
                               ["syn/acgan/manifest.csv line 6", "not marked synthetic"]),
    "synthetic_manifest_missing": ("stages.evaluate", with_arg(EVALUATE_ARGS, "--synthetic-dir", "nosyn"),
                                   lambda t: evaluate_case(t, lambda r: None),
                                   ["nosyn/acgan/manifest.csv", "not found"]),
}


@pytest.mark.parametrize("case", sorted(STAGE_CASES))
def test_bad_input_stops_later_stages_with_one_line(stages, tmp_path: Path, case: str) -> None:
    module, args, build, words = STAGE_CASES[case]
    build(tmp_path)
    result = stages.run(module, *args, cwd=tmp_path)
    assert_one_line_error(result, *words)
    for name in ("out", "metrics.json", "plot.csv"):
        assert not (tmp_path / name).exists(), name
    assert leftovers(tmp_path) == []


def test_server_answers_like_python_m(stages, tmp_path: Path) -> None:
    """The stage server is only a faster way to start the same command: same exit code, same line."""
    ingest_case(tmp_path, "cells", resolution_px="64")
    fast = run_ingest(stages, tmp_path)
    real = subprocess.run([sys.executable, "-m", "stages.ingest", "--params", "params.yaml", "--dataset", "d",
                           "--out", "out", "--metrics", "metrics.json"], cwd=tmp_path, capture_output=True,
                          text=True, env={**stages.base_env}, timeout=120)
    assert (real.returncode, real.stderr) == (fast.returncode, fast.stderr) == (2, real.stderr)
    assert real.stderr.startswith("error: params.yaml: datasets.d.resolution_px")


# ------------------------------------------------------------------------------------------ fuzzing
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MIAS_TOKENS = st.sampled_from(["mdb001", "mdb002", "mdb0x1", "mdb001-x", "G", "F", "D", "Q", "CIRC", "NORM", "SPIC",
                               "CALC", "B", "M", "X", "*NOTE", "3*", "535", "-4", "0", "1e9", "nan", "inf", "1.5",
                               "", "\t", "\x00", "é"])
MIAS_REF = st.sampled_from(["mdb001", "mdb002", "mdb003", "mdb004", "mdb0x1", "mdb001-x", "mdb0012"])
MIAS_NUMBER = st.one_of(st.integers(-10, 2000).map(str), st.sampled_from(["nan", "inf", "1e400", "1.5", "x", "0"]))
MIAS_LINE = st.one_of(  # mostly well-formed rows with one thing wrong at times, and token soup
    st.tuples(MIAS_REF, st.sampled_from("FGDQ"), st.just("NORM")).map(" ".join),
    st.tuples(MIAS_REF, st.sampled_from("FGD"), st.sampled_from(["CIRC", "SPIC", "CALC", "BLOB"]),
              st.sampled_from(["B", "M", "X"]), st.lists(MIAS_NUMBER, max_size=4).map(" ".join)).map(" ".join),
    st.lists(MIAS_TOKENS, max_size=9).map(" ".join))


@FUZZ
@given(st.lists(MIAS_LINE, max_size=6), st.binary(max_size=40))
def test_info_txt_parser_raises_only_pipeline_errors(lines: list[str], noise: bytes) -> None:
    """Property: any Info.txt gives films, or a PipelineError; list_mias too, with films for every ref."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "Info.txt").write_bytes("\n".join(lines).encode() + b"\n" + noise)
        for ref in {line.split()[0] for line in lines if line.split()}:
            if ref.isprintable() and "/" not in ref:
                (root / f"{ref}.pgm").write_bytes(b"P5\n4 4\n255\n" + bytes(16))
        try:
            films = parse_info(root / "Info.txt")
            items = list_mias(SourceConfig(reader="mias", root=str(root)))
        except PipelineError:
            event("PipelineError")
            return
        event("films listed")
        assert films and {it.image_id for it in items} == set(films)
        for item in items:
            assert item.label in ("normal", "benign", "malignant")
            assert all(les.radius > 0 and np.isfinite([les.x, les.y, les.radius]).all() for les in item.lesions)


CSV_CELLS = st.sampled_from(["path", "label", "patient_id", "a.png", "b.png", "missing.png", "/abs/none.png",
                             "normal", "", " ", '"', '"q,uote"', "\x00", "\r", "é", "P_1"])
CSV_HEADER = st.sampled_from(["path,label,patient_id"] * 6 + ["\ufeffpath,label,patient_id", "PATH, Label ,x",
                                                               "path,label", "path,path,label", "file,label", ""])
CSV_ROW = st.tuples(st.sampled_from(["a.png", "b.png", "c.png", "d.png", "./a.png", "images/../b.png", "missing.png"]),
                    st.sampled_from(["normal", "benign", "Benign ", "normal", "benign", "normal", " "]),
                    st.sampled_from(["P_1", "P_2", "P_3", "P_4", "x", ""])).map(",".join)
CSV_LINE = st.one_of(CSV_ROW, st.lists(CSV_CELLS, max_size=4).map(",".join))


def unique_paths(line: str) -> str:
    return line.split(",")[0].lstrip("./")


@FUZZ
@given(CSV_HEADER, st.one_of(st.lists(CSV_ROW, min_size=1, max_size=4, unique_by=unique_paths),  # well-formed rows
                             st.lists(CSV_LINE, max_size=4, unique_by=unique_paths)),  # or some token soup
       st.sampled_from([b""] * 6 + [b"\xff\xfe", b"x,\"y\n", b"\x00"]), st.sampled_from([None] * 6 + [r"(P_\d+)", "x"]))
def test_manifest_reader_raises_only_pipeline_errors(header: str, lines: list[str], noise: bytes,
                                                     pattern: str | None) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for name in ("a.png", "b.png", "c.png", "d.png"):
            (root / name).write_bytes(png_bytes(np.zeros((4, 4), np.uint8)))
        (root / "m.csv").write_bytes("\n".join([header, *lines]).encode() + b"\n" + noise)
        try:
            items = list_manifest(SourceConfig(reader="manifest", labels_csv=str(root / "m.csv"),
                                               patient_pattern=pattern))
        except PipelineError:
            event("PipelineError")
            return
        event("items listed")
        assert items and all(it.path.is_file() and it.label for it in items)
        assert len({str(it.path) for it in items}) == len(items)


FILE_NAMES = st.sampled_from(["a.png", "b.jpg", "c.pgm", "d.dcm", "e.tif", "f.PNG", "g.bmp", ".hidden", "notes.txt"])


def damaged(edits: list[tuple[int, bytes]], cut: int | None) -> Callable[[bytes], bytes]:
    def apply(data: bytes) -> bytes:
        out = bytearray(data)
        for offset, chunk in edits:
            out[offset:offset + len(chunk)] = chunk
        return bytes(out[:cut])
    return apply


EDITS = st.builds(damaged, st.lists(st.tuples(st.integers(0, 600), st.binary(min_size=1, max_size=4)), max_size=3),
                  st.one_of(st.none(), st.integers(0, 700)))


def valid_file(kind: str) -> bytes:
    grey = (np.arange(64).reshape(8, 8) * 4).astype(np.uint8)
    if kind == "pgm":
        return b"P5\n8 8\n255\n" + grey.tobytes()
    if kind == "dcm":
        with tempfile.TemporaryDirectory() as d:
            return write_dicom(Path(d) / "x.dcm", grey.astype(np.uint16) * 16, bits_stored=12).read_bytes()
    if kind == "tif16":
        return png_bytes(grey.astype(np.uint16) * 256, "TIFF")
    return png_bytes(np.stack([grey] * 3, axis=2), {"png": "PNG", "jpg": "JPEG", "bmp": "BMP"}[kind])


@FUZZ
@given(st.dictionaries(st.sampled_from(["normal", "abnormal", ".git", "x y"]),
                       st.dictionaries(FILE_NAMES, st.tuples(st.sampled_from(["raw", "png", "jpg", "bmp", "pgm", "dcm",
                                                                              "tif16"]),
                                                             st.binary(max_size=64), EDITS), min_size=1, max_size=3),
                       max_size=3))
def test_folder_reader_and_decoders_raise_only_pipeline_errors(tree: dict) -> None:
    """Property: listing a class-folder tree of valid, damaged or random files and decoding every file gives
    float images in [0, 1] or PipelineErrors, nothing else."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for cls, files in tree.items():
            (root / cls).mkdir()
            for name, (kind, raw, damage) in files.items():
                (root / cls / name).write_bytes(damage(raw if kind == "raw" else valid_file(kind)))
        try:
            items = list_folder(SourceConfig(reader="folder", root=str(root)))
        except PipelineError:
            event("listing: PipelineError")
            return
        for item in items:
            for channels in (1, 3):
                try:
                    image = item.load(channels)
                except PipelineError:
                    event("decode: PipelineError")
                    continue
                event("decode: image")
                assert image.dtype == np.float32 and image.ndim == (2 if channels == 1 else 3)
                assert np.isfinite(image).all() and 0.0 <= image.min() <= image.max() <= 1.0


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 4000), st.binary(min_size=1, max_size=4)), max_size=4),
       st.integers(128, 5000))
def test_damaged_dicom_gives_an_array_or_a_pipeline_error(edits: list[tuple[int, bytes]], cut: int) -> None:
    """Property: a DICOM with bytes overwritten and its tail cut decodes or stops with a PipelineError."""
    from pipeline.data.readers.dicom import read_dicom

    with tempfile.TemporaryDirectory() as d:
        path = write_dicom(Path(d) / "x.dcm", (np.arange(256).reshape(16, 16) * 8).astype(np.uint16),
                           bits_stored=12, window=(1000, 2000))
        data = bytearray(path.read_bytes())
        for offset, chunk in edits:
            data[offset:offset + len(chunk)] = chunk
        path.write_bytes(bytes(data[:cut]))
        try:
            image = read_dicom(path, 1)
        except PipelineError:
            return
        assert image.dtype == np.float32 and np.isfinite(image).all()
