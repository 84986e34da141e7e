"""Preprocessed split cache: later stages read uint8 arrays and never decode image files again.

Layout written by the ingest stage for data set ``<name>`` (``data_dir = data/<name>``)::

    data/<name>/splits.csv          image_id,label,group,split,source_kind
    data/<name>/meta.json           classes, modality, channels, resolution_px, counts
    data/<name>/cache/train.npz     images uint8 (N, C, H, W), labels int64 (N,), image_ids str (N,)
    data/<name>/cache/val.npz
    data/<name>/cache/test.npz
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass
class SplitArrays:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # int64 (N,)
    image_ids: np.ndarray  # str (N,)

    def __len__(self) -> int:
        return len(self.labels)


def save_split(path: Path, arrays: SplitArrays) -> None:
    np.savez(path, images=arrays.images, labels=arrays.labels, image_ids=arrays.image_ids.astype(str))


def load_split(data_dir: str | Path, split: str) -> SplitArrays:
    """Load one split of an ingested data set; raises DataError naming the fix when it is missing."""
    path = Path(data_dir) / "cache" / f"{split}.npz"
    if not path.is_file():
        raise DataError(f"{path}: split cache not found; run the ingest stage first (dvc repro ingest)")
    with np.load(path, allow_pickle=False) as z:
        return SplitArrays(images=z["images"], labels=z["labels"].astype(np.int64), image_ids=z["image_ids"])


def load_meta(data_dir: str | Path) -> dict:
    path = Path(data_dir) / "meta.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; run the ingest stage first (dvc repro ingest)")
    return json.loads(path.read_text())
