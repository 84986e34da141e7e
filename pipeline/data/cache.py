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
    _remove_stale_tmp(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    try:
        yield tmp
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.filename is not None:
            raise
        raise _naming(exc, final) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final) if final.is_dir() else final.unlink()
    os.replace(tmp, final)


def _remove_stale_tmp(final: Path) -> None:
    """Remove the temporary folders of ``final`` that a killed run (SIGKILL, power cut) left behind: those
    whose process no longer runs. A live writer's folder is left alone."""
    for old in final.parent.glob(f".{final.name}.tmp-*"):
        pid = old.name[len(f".{final.name}.tmp-"):].split("-")[0]
        if pid.isdigit() and not process_exists(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


def process_exists(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _naming(exc: OSError, path: Path) -> OSError:
    """A copy of ``exc`` naming ``path``: a write that fails on a full disk names no file."""
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


def write_json_atomic(path: str | Path, obj: object) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_bytes_atomic(path: str | Path, data: bytes | memoryview, fsync: bool = False) -> None:
    """Write ``data`` to a temporary sibling, then rename it to ``path``; on a write error (full disk) the
    temporary file is removed and the error names ``path``. ``fsync``: flush to the disk before the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # unique: writers
    tmp = Path(name)  # of one cache file in parallel (two generate stages) do not mix their bytes
    try:
        with open(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is not None:
            raise
        raise _naming(exc, path) from exc
    os.replace(tmp, path)


def torch_save_atomic(obj: object, path: str | Path, fsync: bool = False) -> None:
    """``torch.save`` through memory and :func:`write_bytes_atomic`: torch's own file writer turns a full
    disk into a RuntimeError that names neither the file nor the cause."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getbuffer(), fsync)
