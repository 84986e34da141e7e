"""Readers: each lists light-weight :class:`Item` s first (labels, patients, lesions), then decodes pixels.

Listing before decoding lets ingest count classes, size normal-tissue patches from the lesion sizes and
fail on a bad label before spending time on pixels. Registry: ``READERS[name](source_cfg) -> list[Item]``.
"""
from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from pipeline.errors import DataError

log = logging.getLogger(__name__)

# What desktops leave in folders: ignored and counted, never read as images (hidden files and folders, such as
# .DS_Store, ._name AppleDouble files and .ipynb_checkpoints, are ignored too).
LITTER_FILES = {"thumbs.db", "ehthumbs.db", "desktop.ini"}
LITTER_DIRS = {"__macosx"}


@dataclass
class ItemLesion:
    """A lesion as given by the source: x = column; y from the top, or from the bottom (mini-MIAS)."""

    x: float
    y: float
    radius: float
    label: str
    y_from_bottom: bool = False
    where: str = ""  # file:line for error messages


@dataclass
class Item:
    path: Path
    label: str
    patient: str
    image_id: str
    lesions: list[ItemLesion] = field(default_factory=list)
    # decodes the pixels: (channels) -> float32 (H, W) or (H, W, 3) in [0, 1]
    loader: Optional[Callable[[int], np.ndarray]] = None
    unlocated: bool = False  # abnormal but without a usable position (mini-MIAS '*NOTE 3*')

    def load(self, channels: int) -> np.ndarray:
        assert self.loader is not None
        return self.loader(channels)


@dataclass
class Listing:
    """What listing met besides items: litter it ignored, and bad files it skipped under on_bad_file: skip."""

    skip_bad: bool = False  # on_bad_file: skip
    litter_ignored: int = 0
    bad_files_skipped: int = 0

    def bad_file(self, error: DataError) -> None:
        """Stop with ``error``, or (skip_bad) name it in a warning, count it and go on."""
        if not self.skip_bad:
            raise error
        log.warning("skipped: %s", error)
        self.bad_files_skipped += 1


def is_litter(path: Path, folder: Path) -> bool:
    """Desktop litter or a hidden file or folder, anywhere below ``folder``."""
    parts = path.relative_to(folder).parts
    return path.name.lower() in LITTER_FILES or any(p.startswith(".") or p.lower() in LITTER_DIRS for p in parts)


def class_folders(root: Path, listing: Listing) -> list[Path]:
    """The class sub-folders of ``root`` (hidden and litter folders left out, litter counted)."""
    dirs = []
    for d in sorted(root.iterdir()):
        if d.is_dir() and not d.name.startswith("."):
            if d.name.lower() in LITTER_DIRS:
                listing.litter_ignored += 1
            else:
                dirs.append(d)
    return dirs


def class_files(folder: Path, listing: Listing, what: str) -> list[Path]:
    """The files below one class folder, litter left out and counted; an empty folder is a bad file."""
    files = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if is_litter(path, folder):
            listing.litter_ignored += 1
        else:
            files.append(path)
    if not files:
        listing.bad_file(DataError(f"{folder}: empty class folder; add {what} or remove the folder"))
    return files


def patient_key(raw: str, pattern: Optional[str], where: str) -> str:
    """Apply ``patient_pattern`` (first group) to a raw id; without a pattern the raw id is the patient."""
    if not pattern:
        return raw
    m = re.search(pattern, raw)
    if not m:
        raise DataError(f"{where}: patient id does not match patient_pattern {pattern!r}; "
                        "fix the pattern in params.yaml (source.patient_pattern) or the id")
    return m.group(1) if m.groups() else m.group(0)


def read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """Header and (line number, row) of a UTF-8 CSV (a BOM is dropped); bytes that are not UTF-8 or broken
    quoting stop with a DataError naming the line."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DataError(f"{path} line {line}: not UTF-8 text (byte {data[exc.start]:#04x}); save the CSV as UTF-8") \
            from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = list(reader.fieldnames or [])
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: {exc}; fix the line (quotes must come in pairs)") from None
    return header, rows


def canonical_label(raw: str) -> str:
    """Lower-case, spaces to underscores; CBIS-DDSM's BENIGN_WITHOUT_CALLBACK counts as benign."""
    label = raw.strip().lower().replace(" ", "_")
    return "benign" if label == "benign_without_callback" else label


def _registry() -> dict[str, Callable]:
    from pipeline.data.readers.dicom import list_dicom
    from pipeline.data.readers.folder import list_folder
    from pipeline.data.readers.manifest import list_manifest
    from pipeline.data.readers.mias import list_mias

    return {"mias": list_mias, "dicom": list_dicom, "folder": list_folder, "manifest": list_manifest}


def list_items(source, listing: Optional[Listing] = None) -> list[Item]:
    """List the items of a :class:`pipeline.config.SourceConfig` with the reader it names."""
    return _registry()[source.reader](source, listing or Listing())
