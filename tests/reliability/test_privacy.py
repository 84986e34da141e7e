"""Privacy end to end: phantom DICOMs carry patient names, ids, birth dates, accession numbers, institution
and study dates; after phantoms -> ingest -> train_gan -> generate -> evaluate -> report (every stage
through its command, MLflow on), none of those values is in any output file, in the MLflow store or its
artifacts, or in what the stages printed. Patient groups are salted hashes.

Searched: the bytes of every file, and inside them what a byte search alone would miss: members of zip
files (npz caches, torch checkpoints), PNG text chunks, base64 images embedded in HTML, and every text
cell of the sqlite store (sqlite splits long values over pages); each value as UTF-8, UTF-16 and UTF-32
(numpy string arrays are UTF-32).
"""
from __future__ import annotations

import base64
import csv
import io
import re
import sqlite3
import zipfile
from pathlib import Path
from typing import Iterator

import pydicom
from PIL import Image

from pipeline.data.records import hash_patient
from tests.reliability.stagerun import SALT

IDENTIFYING_TAGS = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName",
                    "InstitutionAddress", "StudyDate", "SeriesDate", "ContentDate", "ReferringPhysicianName",
                    "StationName")


def phi_values(films: Path) -> set[str]:
    """Every identifying value of the input films, dates also as YYYY-MM-DD, person names also per component."""
    values: set[str] = set()
    for path in films.glob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for tag in IDENTIFYING_TAGS:
            value = str(ds.get(tag, "") or "")
            if not value:
                continue
            values.add(value)
            if re.fullmatch(r"\d{8}", value):
                values.add(f"{value[:4]}-{value[4:6]}-{value[6:]}")
            values.update(part for part in value.split("^") if len(part) >= 6)
    return values


def blobs(path: Path, data: bytes | None = None) -> Iterator[bytes]:
    """The bytes of ``path`` and what is packed inside them."""
    data = path.read_bytes() if data is None else data
    yield data
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for name in z.namelist():
                yield from blobs(Path(name), z.read(name))
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        with Image.open(io.BytesIO(data)) as im:
            yield " ".join(f"{k} {v}" for k, v in getattr(im, "text", {}).items()).encode()
    if path.suffix in (".html", ".htm", ".svg", ".json", ".md"):
        for b64 in re.findall(rb"base64,([A-Za-z0-9+/=]+)", data):
            yield from blobs(Path("embedded.png"), base64.b64decode(b64))
    if data[:16] == b"SQLite format 3\x00":
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                for row in db.execute(f'SELECT * FROM "{table}"'):
                    yield " ".join(str(cell) for cell in row).encode()


def leaks(blob: bytes, values: set[str]) -> list[str]:
    return [v for v in values if any(v.encode(enc) in blob for enc in ("utf-8", "utf-16-le", "utf-32-le"))]


def test_no_patient_data_in_any_output(phantom_project) -> None:
    root = phantom_project.root
    films = root / "data" / "phantoms" / "mammography" / "films"
    values = phi_values(films)
    assert len(values) > 50 and any(v.startswith("PHANTOM^PATIENT") for v in values)
    # the search finds them where they are: the input films, and the patient ids in the input labels.csv
    assert leaks(next(films.glob("*.dcm")).read_bytes(), values)
    assert leaks((films.parent / "labels.csv").read_bytes(), values)

    inputs = root / "data" / "phantoms"
    outputs = sorted(p for p in root.rglob("*") if p.is_file() and inputs not in p.parents and p.name != "params.yaml")
    names = {p.relative_to(root).parts[0] for p in outputs}
    assert {"data", "models", "metrics", "plots", "results", "reports", "runs", "mlflow.db", "mlruns"} <= names, names
    assert any(p.suffix == ".dcm" for p in outputs) and any(p.suffix == ".npz" for p in outputs)
    found = {str(p.relative_to(root)): hits for p in outputs for blob in blobs(p) if (hits := leaks(blob, values))}
    for stage, result in phantom_project.logs.items():
        hits = leaks((result.stdout + result.stderr).encode(), values)
        if hits:
            found[f"output of stage {stage}"] = hits
    assert not found, found
    # nor does any output path name a patient
    assert not leaks("\n".join(str(p) for p in outputs).encode(), values)


def test_patient_groups_are_salted_hashes(phantom_project) -> None:
    root = phantom_project.root
    with open(root / "data" / "phantoms" / "mammography" / "labels.csv") as fh:
        patients = {row["patient_id"] for row in csv.DictReader(fh)}
    with open(root / "data" / "mammo" / "splits.csv") as fh:
        groups = {row["group"] for row in csv.DictReader(fh)}
    assert len(patients) == 16
    assert groups == {hash_patient(p, SALT) for p in patients}
    assert groups.isdisjoint({hash_patient(p, "another salt") for p in patients})  # the salt matters
