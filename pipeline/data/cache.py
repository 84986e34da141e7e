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
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

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


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``final``, on error it is removed.

    A stage that fails half-way therefore leaves no half-written output folder behind.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final) if final.is_dir() else final.unlink()
    os.replace(tmp, final)


def write_json_atomic(path: str | Path, obj: object) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
