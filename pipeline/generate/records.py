"""What the generate stage writes for the stages after it (no torch: the report imports this).

In ``data/synthetic/<dataset>/<gan>/``: ``details.json`` is a :class:`GenerateDetails`, each row of
``manifest.csv`` a :class:`pipeline.data.synthetic.ManifestRow` (the contract with the classifier arms), and
``memorised/memorised.csv`` has :data:`MEMORISED_COLUMNS` (the gate's statistics of each memorised image).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.io import JsonRecord

REASONS = ("kept", "memorised", "unrealistic", "low_confidence")  # a fake gets the first that applies, after kept
FOLDER_OF = {"kept": "images", "memorised": "memorised", "unrealistic": "rejected", "low_confidence": "rejected"}
QUALITY_METRICS = ("fd", "kid", "precision", "recall", "density", "coverage", "diversity_ms_ssim")  # per block
MEMORISED_COLUMNS = ("path", "class", "seed", "nn_real_id", "nn_feature_real_id", "nn_feature_distance",
                     "feature_threshold", "nn_feature_relative", "relative_feature_threshold", "nn_pixel_real_id",
                     "nn_pixel_distance", "pixel_threshold_rms", "nn_pixel_relative", "relative_pixel_threshold")


def generate_stage(dataset: str, gan: str) -> str:
    """The DVC stage that writes ``data/synthetic/<dataset>/<gan>/``."""
    return f"generate@{dataset}-{gan}"


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


