"""What the train_gan stage writes for the stages after it (no torch: the report imports this).

``models/<dataset>/<gan>/train_summary.json`` is a :class:`TrainSummary`; ``plots/train_gan/<dataset>_<gan>.csv``
holds one row per epoch with :data:`HISTORY_COLUMNS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pipeline.io import JsonRecord

HISTORY_COLUMNS = ("epoch", "step", "loss_D", "loss_G", "D_x", "D_G_z", "aux_acc", "noise_std", "quality_fd",
                   "diversity_ratio", "images_per_s")


def train_gan_stage(dataset: str, gan: str) -> str:
    """The DVC stage that writes a (data set, GAN)'s training outputs."""
    return f"train_gan@{dataset}-{gan}"


@dataclass
class TrainSummary(JsonRecord):
    """Everything about one training run (``models/<dataset>/<gan>/train_summary.json``)."""

    dataset: str
    model: str  # the GAN
    epochs: int  # asked for
    epochs_done: int
    steps: int
    train_minutes: float
    precision: str
    best_epoch: int  # the epoch of best.pt (lowest quality FD)
    best_quality_fd: float | None  # None: no score could be computed
    best_fd_per_class: dict[str, float | None]
    best_diversity_ratio_per_class: dict[str, float | None]
    final: dict[str, float | None]  # the last epoch's losses, D outputs, noise, FD and diversity
    final_fd_per_class: dict[str, float | None]
    final_diversity_ratio_per_class: dict[str, float | None]
    images_per_s: float | None
    device: str
    world_size: int
    mlflow_run_id: str | None  # None when tracking is off
