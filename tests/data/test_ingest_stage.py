"""The ingest stage through its command line: outputs, privacy, atomicity."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from pipeline.data.cache import load_meta, load_split
from tests.conftest import REPO, write_dicom


def films(root: Path, n_patients: int = 12) -> Path:
    """CBIS-style CSV and DICOM films whose names and tags carry patient ids."""
    rng = np.random.default_rng(0)
    rows = ["patient_id,pathology,image_path,x,y,radius"]
    for p in range(n_patients):
        label = ["NORMAL", "BENIGN", "MALIGNANT"][p % 3]
        for side in ("LEFT", "RIGHT"):
            film = (rng.random((128, 128)) * 800 + 200).astype(np.uint16)
            film[:, :20] = 0  # background strip
            name = f"Mass-Training_P_{p:05d}_{side}_CC"
            write_dicom(root / "films" / f"{name}.dcm", film, bits_stored=12, window=(600, 900),
                        patient_id=name, extra={"PatientBirthDate": "19500101", "AccessionNumber": "ACC99812",
                                                "InstitutionName": "St Example Hospital"})
            xyr = "" if label == "NORMAL" else "64,64,10"
            rows.append(f"{name},{label},films/{name}.dcm,{xyr}" if xyr else f"{name},{label},films/{name}.dcm,,,")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def params_file(tmp_path: Path, root: Path, **overrides) -> Path:
    ds = {"modality": "mammography", "task": "patches", "channels": 1, "resolution_px": 32,
          "source": {"reader": "dicom", "root": str(root), "labels_csv": str(root / "labels.csv"),
                     "patient_pattern": r"(P_\d+)"},
          "patch": {"min_patch_px": 16, "max_patch_px": 64},
          "split": {"val_fraction": 0.2, "test_fraction": 0.3, "seed": 0}}
    ds.update(overrides)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"datasets": {"mammo": ds}}))
    return path


def ingest(tmp_path: Path, params: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stages.ingest", "--params", str(params), "--dataset", "mammo",
                           "--out", str(tmp_path / "out"), "--metrics", str(tmp_path / "metrics.json")],
                          cwd=REPO, capture_output=True, text=True, env={"PIPELINE_ID_SALT": "test-salt",
                                                                          "PATH": "/usr/bin:/bin"})


def test_stage_writes_cache_and_leaks_no_patient_id(tmp_path: Path) -> None:
    root = films(tmp_path / "src")
    result = ingest(tmp_path, params_file(tmp_path, root))
    assert result.returncode == 0, result.stderr
    meta = load_meta(tmp_path / "out")
    assert meta["classes"] == ["benign", "malignant", "normal"] and meta["channels"] == 1
    train = load_split(tmp_path / "out", "train")
    assert train.images.dtype == np.uint8 and train.images.shape[1:] == (1, 32, 32)
    rows = (tmp_path / "out" / "splits.csv").read_text().splitlines()
    assert rows[0] == "image_id,label,group,split,source_kind" and len(rows) == 25
    # the two films of a patient share a group and a split
    by_group: dict[str, set] = {}
    for row in rows[1:]:
        image_id, _, group, split, _ = row.split(",")
        by_group.setdefault(group, set()).add(split)
        assert re.fullmatch(r"(normal|benign|malignant)_[0-9a-f]{12}_(tissue|lesion)0", image_id), image_id
    assert len(by_group) == 12 and all(len(s) == 1 for s in by_group.values())
    # no patient identifier, name, birth date, accession or institution anywhere in the outputs
    blobs = [p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()]
    blobs.append((tmp_path / "metrics.json").read_bytes())
    for secret in (b"P_0000", b"DOE^JANE", b"19500101", b"ACC99812", b"St Example", b"PID-1"):
        assert not any(secret in b for b in blobs), secret
    assert set(json.loads((tmp_path / "metrics.json").read_text())) == {"counts", "n_images", "quality_gate_dropped"}
    metrics = json.loads((tmp_path / "out" / "ingest.json").read_text())
    assert metrics["n_images"] == 24 and metrics["patient_level_split"] is True and "time_s" not in metrics


def test_failure_leaves_no_output_and_one_line(tmp_path: Path) -> None:
    root = films(tmp_path / "src")
    bad = root / "films" / "Mass-Training_P_00004_LEFT_CC.dcm"
    bad.write_bytes(bad.read_bytes()[:300])
    result = ingest(tmp_path, params_file(tmp_path, root))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Mass-Training_P_00004_LEFT_CC.dcm" in lines[0] and lines[0].startswith("error:")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))
    # with on_bad_file: skip the stage goes on and counts it
    result = ingest(tmp_path, params_file(tmp_path, root, on_bad_file="skip"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out" / "ingest.json").read_text())["bad_files_skipped"] == 1


def test_single_class_and_missing_root(tmp_path: Path) -> None:
    root = films(tmp_path / "src", n_patients=3)
    csv = root / "labels.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0]] + [l for l in lines[1:] if ",NORMAL," in l]) + "\n")
    result = ingest(tmp_path, params_file(tmp_path, root))
    assert result.returncode == 2 and "a single class ('normal')" in result.stderr
    params = params_file(tmp_path, tmp_path / "nowhere", source={"reader": "folder", "root": str(tmp_path / "no")})
    result = ingest(tmp_path, params)
    assert result.returncode == 2 and "image folder not found" in result.stderr
