"""Tiny ingested data sets for the tests, written the way the ingest stage writes them.

Every test that needs ``data/<name>/`` writes it here, so a change to the ingest layout is made once:

    <data_dir>/cache/<split>.npz   through :func:`pipeline.data.cache.save_split` (images uint8 (N, C, H, W),
                                   labels int64 (N,), image ids str (N,))
    <data_dir>/meta.json           the keys ``pipeline/data/ingest.py`` writes (:data:`INGEST_META_KEYS`)
    <data_dir>/splits.csv          image_id, label, group, split, source_kind

Test areas with pictures of their own (shapes, blobs): they build :class:`SplitArrays` (directly or
with :func:`toy_split`) and hand them to :func:`write_ingested`; :func:`write_toy_dataset` does both with a
default drawing (:func:`shape_images`, learnable 16 px shapes) for tests that only need data of given
classes and counts.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from pipeline.data.cache import SPLITS, SplitArrays, save_split
from pipeline.io import write_json_atomic

INGEST_META_KEYS = ("dataset", "classes", "modality", "task", "channels", "resolution_px", "reader",
                    "patient_level_split", "n_groups", "counts", "synthetic")
TOY_COUNTS = {"train": (8, 6, 4), "val": (3, 3, 2), "test": (4, 4, 3)}  # imbalanced: the last class is rare

# (labels, channels, seed, size_px) -> uint8 (N, C, H, W)
Draw = Callable[[np.ndarray, int, int, int], np.ndarray]


def shape_images(labels: np.ndarray, channels: int = 1, seed: int = 0, size_px: int = 16) -> np.ndarray:
    """uint8 (N, C, H, W): class 0 a dim square, class 1 a brighter horizontal bar, class 2 a bright vertical
    bar, near the centre (like lesion-centred patches) on a noisy background; shape and brightness tell the class."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[:size_px, :size_px]
    out = np.empty((len(labels), channels, size_px, size_px), np.uint8)
    for n, label in enumerate(labels):
        cy, cx = size_px // 2 + rs.randint(-2, 3, size=2)
        if label == 0:
            mask = (abs(yy - cy) < 3) & (abs(xx - cx) < 3)
        elif label == 1:
            mask = (abs(yy - cy) < 2) & (abs(xx - cx) < 6)
        else:
            mask = (abs(xx - cx) < 2) & (abs(yy - cy) < 6)
        img = np.clip(40 + (90 + 50 * label) * mask + rs.normal(0, 10, mask.shape), 0, 255)
        out[n] = np.repeat(img[None], channels, axis=0).astype(np.uint8)
        if channels == 3:
            out[n, 2] = np.clip(out[n, 2].astype(int) - 30, 0, 255)  # a tint, so RGB differs from grey
    return out


def toy_split(split: str, counts: Sequence[int], classes: Sequence[str], channels: int = 1, size_px: int = 16,
              seed: int = 0, draw: Draw = shape_images) -> SplitArrays:
    """``counts[k]`` images of class k, in class order, drawn by ``draw``; ids ``<split>_<class>_<index>``."""
    labels = np.concatenate([np.full(n, k, np.int64) for k, n in enumerate(counts)])
    ids = np.array([f"{split}_{classes[k]}_{i:03d}" for i, k in enumerate(labels)])
    return SplitArrays(draw(labels, channels, seed, size_px), labels, ids)


def write_ingested(data_dir: Path, splits: Mapping[str, SplitArrays], classes: Sequence[str], *,
                   dataset: str = "toy", modality: str = "mammography", task: str = "patches", reader: str = "folder",
                   patient_level_split: bool = True, n_groups: int | None = None) -> Path:
    """Write ``splits`` as the ingest stage would for ``data_dir``; returns ``data_dir``.

    Channels and resolution come from the images. In ``splits.csv`` every image is its own patient (group);
    ``n_groups`` (default: the number of images) is the patient count meta.json reports.
    """
    data_dir = Path(data_dir)
    (data_dir / "cache").mkdir(parents=True, exist_ok=True)
    rows = []
    for split, arrays in splits.items():
        assert split in SPLITS and arrays.images.dtype == np.uint8 and arrays.images.ndim == 4, split
        save_split(data_dir / "cache" / f"{split}.npz", arrays)
        rows += [(str(i), classes[int(k)], f"group_{i}", split, "dataset")
                 for i, k in zip(arrays.image_ids, arrays.labels)]
    with (data_dir / "splits.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([("image_id", "label", "group", "split", "source_kind"), *rows])
    _, channels, size_px, _ = next(iter(splits.values())).images.shape
    counts = {s: {c: int((a.labels == k).sum()) for k, c in enumerate(classes)} for s, a in splits.items()}
    meta = {"dataset": dataset, "classes": list(classes), "modality": modality, "task": task, "channels": int(channels),
            "resolution_px": int(size_px), "reader": reader, "patient_level_split": patient_level_split,
            "n_groups": len(rows) if n_groups is None else n_groups, "counts": counts, "synthetic": False}
    write_json_atomic(data_dir / "meta.json", meta)
    return data_dir


def write_toy_dataset(data_dir: Path, classes: Sequence[str] = ("normal", "benign", "malignant"),
                      counts: Mapping[str, Sequence[int]] = TOY_COUNTS, channels: int = 1, size_px: int = 16,
                      seed: int = 0, draw: Draw = shape_images, **meta) -> Path:
    """A whole toy data set: :func:`toy_split` per split (seeds ``seed``, ``seed + 1``, ...), then
    :func:`write_ingested` (``meta``: its keyword arguments)."""
    splits = {split: toy_split(split, n, classes, channels, size_px, seed + i, draw)
              for i, (split, n) in enumerate(counts.items())}
    return write_ingested(data_dir, splits, classes, **meta)
