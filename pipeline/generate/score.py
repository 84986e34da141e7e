"""Score one GAN checkpoint the way the generate stage would: a fixed number of fakes per class through the
copy gate and the filter, quality beside the real-vs-real references, and the bar of the quality issue.

Used by ``scripts/gan_ablation.py`` and ``scripts/gan_curve.py`` so that ablation variants, time snapshots
and study runs are measured with the same classifier, feature space and filter as the pipeline.
"""
from __future__ import annotations

import copy
from pathlib import Path

from pipeline.data.cache import load_meta
from pipeline.generate.config import GenerateConfig
from pipeline.generate.run import generate_synthetic

# The bar of the GAN quality issue: fake / real-vs-real reference, per metric (lower is better for FD)
BAR = {"fd_ratio_max": 2.0, "coverage_ratio_min": 0.6, "precision_ratio_min": 0.8, "diversity_min": 0.7,
       "keep_rate_min": 0.5}


def _ratio(value, reference) -> float | None:
    if value is None or reference in (None, 0):
        return None
    return value / reference


def score_checkpoint(checkpoint: str | Path, data_dir: str | Path, cfg: GenerateConfig, per_class: int = 200,
                     diversity: dict[str, float] | None = None) -> dict:
    """Generate ``per_class`` fakes of every class (no top-up), gate and filter them, and measure them.

    ``diversity`` (class -> the collapse watch's diversity ratio) is carried into the result when given.
    Returns ``{"per_class": {class: {...}}, "overall": {...}, "bar": {...}}`` with plain numbers.
    """
    cfg = copy.deepcopy(cfg)
    cfg.target.max_attempts_factor = 1.0  # exactly per_class generated: the keep rate is kept / generated
    cfg.dicom_export = "off"
    run = generate_synthetic(cfg, checkpoint, data_dir, counts=None if per_class <= 0 else
                             {c: per_class for c in _classes(data_dir)})
    counts = run.metrics.counts
    quality = run.metrics.quality["generated"]["per_class"]
    rows: dict[str, dict] = {}
    for c, q in quality.items():
        row = {"generated": counts[c]["generated"], "kept": counts[c]["kept"],
               "keep_rate": counts[c]["kept"] / max(counts[c]["generated"], 1),
               **{f"rejected_{r}": counts[c].get(r, 0) for r in counts[c] if r not in
                  ("kept", "generated", "target", "real_train", "shortfall")}}
        for key in ("fd", "precision", "recall", "coverage", "diversity_ms_ssim"):
            row[key], row[f"{key}_reference"] = q[key]["value"], q[key]["reference"]
            row[f"{key}_ratio"] = _ratio(q[key]["value"], q[key]["reference"])
        if diversity and c in diversity:
            row["diversity_ratio"] = diversity[c]
        rows[c] = row
    overall = {key: _mean([r[key] for r in rows.values()]) for key in
               ("keep_rate", "fd_ratio", "precision_ratio", "recall_ratio", "coverage_ratio")}
    overall["fd_ratio_worst"] = _max([r["fd_ratio"] for r in rows.values()])
    overall["keep_rate_total"] = sum(r["kept"] for r in rows.values()) / max(sum(r["generated"] for r in rows.values()), 1)
    overall["diversity_ratio_lowest"] = min(diversity.values()) if diversity else None
    bar = {"fd": _le(overall["fd_ratio"], BAR["fd_ratio_max"]),
           "coverage": _ge(overall["coverage_ratio"], BAR["coverage_ratio_min"]),
           "precision": _ge(overall["precision_ratio"], BAR["precision_ratio_min"]),
           "diversity": _ge(overall["diversity_ratio_lowest"], BAR["diversity_min"]),
           "keep_rate": _ge(overall["keep_rate_total"], BAR["keep_rate_min"])}
    return {"per_class": rows, "overall": overall, "bar": bar, "checkpoint": run.metrics.checkpoint}


def _classes(data_dir: str | Path) -> list[str]:
    return [str(c) for c in load_meta(data_dir)["classes"]]


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _max(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return max(values) if values else None


def _le(value, bound) -> bool | None:
    return None if value is None else bool(value <= bound)


def _ge(value, bound) -> bool | None:
    return None if value is None else bool(value >= bound)
