"""Ground floor: atomic file writing and the JSON/CSV helpers every stage uses.

A stage that fails half-way leaves no half-written output: files and folders are written to a temporary
sibling, then renamed. JSON holds no NaN or infinity (DVC and browsers cannot parse them): they become null.
:class:`JsonRecord` is the base of the typed records each stage writes and the next stage reads.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Sequence, TypeVar

from pipeline.errors import DataError


def json_safe(obj: object) -> object:
    """``obj`` with NaN/inf floats as None and numpy scalars as Python numbers, recursively."""
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():  # numpy scalar
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def finite(value: float | None) -> float | None:
    """``None`` for NaN/inf (JSON and DVC cannot hold them), else the value as a float."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def json_text(obj: object, indent: int = 2, sort_keys: bool = True) -> str:
    return json.dumps(json_safe(obj), indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"


def write_json_atomic(path: str | Path, obj: object) -> None:
    """``obj`` as indented, key-sorted JSON with NaN/inf as null, written atomically."""
    write_bytes_atomic(path, json_text(obj).encode())


R = TypeVar("R", bound="JsonRecord")


def stale(path: str | Path, problem: str, stage: str) -> DataError:
    """The one-line error of an input another stage wrote: the file, the problem and the stage to re-run."""
    return DataError(f"{path}: {problem}; re-run: dvc repro {stage}")


class JsonRecord:
    """Base of a dataclass whose fields are the top-level keys of one JSON file, written by one stage.

    Fields without a default are required: reading a file without one of them (written by an older version)
    raises :func:`stale`'s one line. Keys the class does not know are ignored. ``JSON_STYLE``: indent and key
    order of the file (``sort_keys=False`` keeps the order of the fields).
    """

    JSON_STYLE: ClassVar[dict] = {"indent": 2, "sort_keys": True}

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_json(cls: type[R], data: object, source: str | Path, stage: str) -> R:
        """``data`` (a parsed file); ``source`` and ``stage`` name the file and its stage in the error."""
        if not isinstance(data, dict):
            raise stale(source, "not a JSON object", stage)
        known = fields(cls)  # type: ignore[arg-type]
        for f in known:
            if f.name not in data and f.default is MISSING and f.default_factory is MISSING:
                raise stale(source, f"no key {f.name!r} (written by an older version)", stage)
        return cls(**{f.name: data[f.name] for f in known if f.name in data})

    def write(self, path: str | Path) -> None:
        write_bytes_atomic(path, json_text(self.to_json(), **self.JSON_STYLE).encode())

    @classmethod
    def read(cls: type[R], path: str | Path, stage: str) -> R:
        """The record in ``path``; a missing, unparsable or old-format file raises one line naming ``stage``."""
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise stale(path, "not found", stage) from None
        except (OSError, ValueError) as exc:
            raise stale(path, f"unreadable ({exc})", stage) from None
        return cls.from_json(data, path, stage)


def csv_text(rows: Iterable[dict], columns: Sequence[str] | None = None, blank_nonfinite: bool = False) -> str:
    """CSV text with a header; ``columns`` defaults to the first row's keys, extra keys are ignored;
    ``blank_nonfinite``: NaN/inf become empty cells."""
    rows = list(rows)
    columns = list(columns if columns is not None else (rows[0] if rows else []))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(json_safe(r) if blank_nonfinite else r for r in rows)
    return text.getvalue()


def write_csv_atomic(path: str | Path, rows: Iterable[dict], columns: Sequence[str] | None = None,
                     blank_nonfinite: bool = False) -> None:
    write_bytes_atomic(path, csv_text(rows, columns, blank_nonfinite).encode())


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
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getbuffer(), fsync)


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
