"""What the generate stage writes for the stages after it (no torch: the report imports this).

In ``data/synthetic/<dataset>/<gan>/``: ``details.json`` is a :class:`GenerateDetails`, each row of
``manifest.csv`` a :class:`ManifestRow` (columns ``pipeline.data.synthetic.MANIFEST_COLUMNS``), and
``memorised/memorised.csv`` has :data:`MEMORISED_COLUMNS` (the gate's statistics of each memorised image).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.data.synthetic import MANIFEST_COLUMNS
from pipeline.io import JsonRecord, stale, write_csv_atomic

REASONS = ("kept", "memorised", "unrealistic", "low_confidence")  # a fake gets the first that applies, after kept
FOLDER_OF = {"kept": "images", "memorised": "memorised", "unrealistic": "rejected", "low_confidence": "rejected"}
QUALITY_METRICS = ("fd", "kid", "precision", "recall", "density", "coverage", "diversity_ms_ssim")  # per block
MEMORISED_COLUMNS = ("path", "class", "seed", "nn_real_id", "nn_feature_real_id", "nn_feature_distance",
                     "feature_threshold", "nn_feature_relative", "relative_feature_threshold", "nn_pixel_real_id",
                     "nn_pixel_distance", "pixel_threshold_rms", "nn_pixel_relative", "relative_pixel_threshold")


def generate_stage(dataset: str, gan: str) -> str:
    """The DVC stage that writes ``data/synthetic/<dataset>/<gan>/``."""
    return f"generate@{dataset}-{gan}"


def fmt(x: float) -> str:
    """A number in the manifest and memorised CSVs."""
    return f"{x:.6g}"


@dataclass
class GenerateDetails(JsonRecord):
    """Every count, threshold, quality value and timing of one generate run (``details.json``)."""

    dataset: str
    gan: str
    checkpoint: str  # the generator's label, e.g. "best.pt epoch 15"
    ema: bool
    seed: int
    counts: dict[str, dict[str, int]]  # class -> real_train, target, generated, one count per REASON, shortfall
    totals: dict[str, int]  # target, generated, one count per REASON, shortfall
    throughput: dict[str, float | int | None]
    memorisation: dict[str, Any]  # the gate's thresholds (pipeline.quality.memorisation), match_flips, rule
    filter: dict[str, Any]  # confidence thresholds and pass rates, realism
    # {"kept" | "generated": {"per_class": {class: block}, "overall": block}}, a block being
    # {metric: {"value", "reference", ...}, "reference": "train_vs_val" | "none: <why>", ...}
    quality: dict[str, dict[str, Any]]
    settings: dict[str, Any]
    dicom_export: bool


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


def read_manifest(path: str | Path, stage: str) -> list[ManifestRow]:
    """The rows of ``path``; a missing file, a missing column or an unparsable row raises one line naming ``stage``."""
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
        try:
            out.append(ManifestRow.from_row(row))
        except (TypeError, ValueError) as exc:
            raise stale(path, f"line {lineno} unreadable ({exc})", stage) from None
    return out
