"""What the evaluate stage writes for the stages after it (no torch, no scikit-learn: the report imports this).

In ``results/<dataset>/``: ``details.json`` is an :class:`EvaluateDetails` (every arm's means, intervals and
gains with labels), ``summary.json`` an :class:`EvaluateSummary` (the same comparison with the paired tests,
seeds, timing and every run), ``predictions/<arm>.csv`` holds :data:`PREDICTION_COLUMNS` and ``p_<class>``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pipeline.io import JsonRecord

# Metrics that get an interval, a gain and a paired test; the same names in every MLflow child run.
HEADLINE = ("macro_f1", "balanced_accuracy", "minority_recall", "auc_macro")
PREDICTION_COLUMNS = ("image_id", "actual", "predicted", "arm", "seed")  # then p_<class> per class

Interval = dict[str, float | None]  # details.json: {"mean", "low", "high"}
Gain = dict[str, Any]  # details.json: {"diff", "low", "high", "label"}; label "gain", "loss" or "no gain"


def evaluate_stage(dataset: str) -> str:
    """The DVC stage that writes ``results/<dataset>/``."""
    return f"evaluate@{dataset}"


def predictions_path(results_dir: str | Path, arm: str) -> Path:
    return Path(results_dir) / "predictions" / f"{arm}.csv"


@dataclass
class EvaluateDetails(JsonRecord):
    """``results/<dataset>/details.json``: what the headline and the stage's summary line are made from."""

    JSON_STYLE: ClassVar[dict] = {"indent": 1, "sort_keys": True}

    mlflow_parent_run_id: str  # "" when tracking is off
    n_seeds: int
    minority_class: str
    best_non_gan: str  # the arm without GAN whose mean macro-F1 is highest: the reference of gains_vs_best_non_gan
    classifier: str
    classifier_detail: str
    selection: str  # the checkpoint-selection rule in words
    best_epoch_mean: dict[str, float]  # per arm
    epochs_run_mean: dict[str, float]
    time_s: float
    train_time_s_mean: float
    train_cpu_s_mean: float
    arms: dict[str, dict[str, Interval]]  # arm -> HEADLINE metric -> interval
    gains_vs_real_only: dict[str, dict[str, Gain]]  # arm (all but real_only) -> HEADLINE metric -> gain
    gains_vs_best_non_gan: dict[str, dict[str, Gain]]  # arm (all but best_non_gan) -> HEADLINE metric -> gain


@dataclass
class EvaluateSummary(JsonRecord):
    """``results/<dataset>/summary.json``: everything, in the order written (pipeline.classify.stats.compare_arms
    for ``arms``, ``gains`` and ``level``)."""

    JSON_STYLE: ClassVar[dict] = {"indent": 1, "sort_keys": False}

    dataset: str
    classes: list[str]
    minority_class: str
    seeds: list[int]
    classifier: str
    selection: str
    # arm -> HEADLINE metric -> {"estimate", "low", "high", ...}, and "per_seed" -> metric -> one value per seed
    arms: dict[str, dict[str, Any]]
    best_non_gan: str
    n_seeds: int
    split_hash: str
    params_hash: str
    n_test: int
    n_synthetic: dict[str, int]  # GAN -> kept synthetic images read
    mlflow_parent_run_id: str | None
    timing: dict[str, float | int]
    method: str
    # reference name ("real_only", "best_non_gan") -> {"reference": arm, "arms": {arm: {metric: {"estimate", "low",
    # "high", "label", "wilcoxon_p", ...}, "mcnemar": {...}}}}
    gains: dict[str, dict[str, Any]]
    level: float
    runs: list[dict[str, Any]]  # one per (arm, seed): its scores and how its training went
