"""The synthetic-image manifest: the one contract between generation and the classifier arms.

The generate stage writes, per (dataset, gan), ``data/synthetic/<dataset>/<gan>/``::

    manifest.csv        one row per generated image (kept or excluded)
    images/syn_<gan>_<class>_<index>.png

Every synthetic image is marked three times: its file name starts with ``syn_``, its row has
``synthetic=true``, and (mammography DICOM export) its tags say DERIVED / SYN. Real splits never hold one:
:func:`assert_real_only` is called on validation and test data by every consumer.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.cache import SplitArrays
from pipeline.data.imageio import read_image
from pipeline.errors import DataError
from pipeline.io import stale, write_csv_atomic

MANIFEST_COLUMNS = ["path", "class", "generator", "checkpoint", "seed", "kept", "reason", "synthetic",
                    "confidence", "nn_feature_distance", "nn_pixel_distance", "nn_real_id"]
SYNTHETIC_PREFIX = "syn_"


def is_synthetic_id(image_id: str) -> bool:
    return Path(str(image_id)).name.startswith(SYNTHETIC_PREFIX)


def assert_real_only(arrays: SplitArrays, where: str) -> None:
    """Refuse a validation or test split that holds a synthetic image."""
    bad = [i for i in arrays.image_ids if is_synthetic_id(i)]
    if bad:
        raise DataError(f"{where}: {len(bad)} synthetic image(s) (e.g. {bad[0]}) in a real-only split; "
                        "synthetic images may only be added to the training split: re-run ingest")


def fmt(x: float) -> str:
    """A number in the manifest and memorised CSVs."""
    return f"{x:.6g}"


@dataclass
class ManifestRow:
    """One generated image (a row of ``manifest.csv``); ``path`` is relative to the manifest's folder."""

    path: str  # <FOLDER_OF[reason]>/syn_<gan>_<class>_<index>.png
    cls: str  # the "class" column
    generator: str
    checkpoint: str
    seed: int
    reason: str  # one of REASONS
    confidence: float  # the classifier's softmax of its class
    nn_feature_distance: float
    nn_pixel_distance: float
    nn_real_id: str  # the nearest real training image; ends with names.MIRROR_SUFFIX when matched mirrored

    @property
    def kept(self) -> bool:
        return self.reason == "kept"

    def to_row(self) -> dict[str, str | int]:
        return {"path": self.path, "class": self.cls, "generator": self.generator, "checkpoint": self.checkpoint,
                "seed": self.seed, "kept": "true" if self.kept else "false", "reason": self.reason,
                "synthetic": "true", "confidence": fmt(self.confidence),
                "nn_feature_distance": fmt(self.nn_feature_distance),
                "nn_pixel_distance": fmt(self.nn_pixel_distance), "nn_real_id": self.nn_real_id}

    @classmethod
    def from_row(cls, row: dict[str, str]) -> ManifestRow:
        return cls(row["path"], row["class"], row["generator"], row["checkpoint"], int(row["seed"]), row["reason"],
                   float(row["confidence"]), float(row["nn_feature_distance"]), float(row["nn_pixel_distance"]),
                   row["nn_real_id"])


def write_manifest(path: str | Path, rows: list[ManifestRow]) -> None:
    write_csv_atomic(path, [r.to_row() for r in rows], MANIFEST_COLUMNS)


def read_manifest(path: str | Path, stage: str = "generate") -> list[ManifestRow]:
    """The rows of ``path``; a missing file, a missing column or an unparsable row raises one line naming ``stage``
    (the generate stage that wrote it), and so does a row not marked synthetic or whose kept disagrees with reason."""
    try:
        with Path(path).open(newline="") as fh:
            reader = csv.DictReader(fh)
            absent = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
            if absent:
                raise stale(path, f"no column {absent[0]!r} (written by an older version)", stage)
            rows = list(reader)
    except FileNotFoundError:
        raise stale(path, "not found", stage) from None
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise stale(path, f"unreadable ({exc})", stage) from None
    out = []
    for lineno, row in enumerate(rows, start=2):
        if row.get("synthetic") != "true" or not is_synthetic_id(row.get("path", "")):
            raise DataError(f"{path} line {lineno}: row is not marked synthetic (synthetic=true and a syn_ file "
                            "name); the manifest was edited by hand: regenerate it")
        if row.get("kept") != ("true" if row.get("reason") == "kept" else "false"):
            raise DataError(f"{path} line {lineno}: kept={row.get('kept')!r} disagrees with reason="
                            f"{row.get('reason')!r}; the manifest was edited by hand: regenerate it")
        try:
            out.append(ManifestRow.from_row(row))
        except (TypeError, ValueError) as exc:
            raise stale(path, f"line {lineno} unreadable ({exc})", stage) from None
    return out


def load_synthetic(manifest: str | Path, classes: list[str], channels: int, resolution_px: int) -> SplitArrays:
    """Kept synthetic images of a manifest as uint8 arrays, labels in the data set's class order."""
    manifest = Path(manifest)
    rows = [r for r in read_manifest(manifest) if r.kept]
    images, labels, ids = [], [], []
    for row in rows:
        if row.cls not in classes:
            raise DataError(f"{manifest}: class {row.cls!r} is not one of {classes}; regenerate")
        img = read_image(manifest.parent / row.path, channels)
        arr = np.round(img * 255).astype(np.uint8)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if arr.shape[-1] != resolution_px:
            raise DataError(f"{manifest.parent / row.path}: {arr.shape[-1]} px, the data set is {resolution_px} px; "
                            "regenerate with the data set's resolution")
        images.append(arr)
        labels.append(classes.index(row.cls))
        ids.append(Path(row.path).name)
    shape = (0, channels, resolution_px, resolution_px)
    return SplitArrays(images=np.stack(images) if images else np.zeros(shape, np.uint8),
                       labels=np.array(labels, dtype=np.int64), image_ids=np.array(ids, dtype=str))
