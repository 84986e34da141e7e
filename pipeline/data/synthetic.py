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
from pathlib import Path

import numpy as np

from pipeline.data.cache import SplitArrays
from pipeline.data.imageio import read_image
from pipeline.errors import DataError

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


def read_manifest(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: synthetic manifest not found; run the generate stage first")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for lineno, row in enumerate(rows, start=2):
        if row.get("synthetic") != "true" or not is_synthetic_id(row.get("path", "")):
            raise DataError(f"{path} line {lineno}: row is not marked synthetic (synthetic=true and a syn_ file "
                            "name); the manifest was edited by hand: regenerate it")
    return rows


def load_synthetic(manifest: str | Path, classes: list[str], channels: int, resolution_px: int) -> SplitArrays:
    """Kept synthetic images of a manifest as uint8 arrays, labels in the data set's class order."""
    manifest = Path(manifest)
    rows = [r for r in read_manifest(manifest) if r["kept"] == "true"]
    images, labels, ids = [], [], []
    for row in rows:
        if row["class"] not in classes:
            raise DataError(f"{manifest}: class {row['class']!r} is not one of {classes}; regenerate")
        img = read_image(manifest.parent / row["path"], channels)
        arr = np.round(img * 255).astype(np.uint8)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if arr.shape[-1] != resolution_px:
            raise DataError(f"{manifest.parent / row['path']}: {arr.shape[-1]} px, the data set is {resolution_px} px; "
                            "regenerate with the data set's resolution")
        images.append(arr)
        labels.append(classes.index(row["class"]))
        ids.append(Path(row["path"]).name)
    shape = (0, channels, resolution_px, resolution_px)
    return SplitArrays(images=np.stack(images) if images else np.zeros(shape, np.uint8),
                       labels=np.array(labels, dtype=np.int64), image_ids=np.array(ids, dtype=str))
