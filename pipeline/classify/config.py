"""The ``evaluate`` section of params.yaml: classifier, training budget, arms, seeds and statistics.

Every arm trains with the same :class:`BudgetConfig` on the same seeds, so arms differ only in what
their arm function (``pipeline/classify/arms.py``) does to the training split. The default values
are the CPU default run (3 seeds, a few seconds of CPU per classifier); the real-data study presets are in
``pipeline/classify/PARAMS_SNIPPET.md``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.classify.arms import ARMS
from pipeline.config import register_section, rng
from pipeline.errors import ConfigError

DEFAULT_ARMS = ["real_only", "class_weighted", "oversample", "classical", "cdcgan", "acgan", "synthetic_classical"]


@dataclass
class ClassifierConfig:
    """Stride-2 conv blocks (conv, batch norm, ReLU), then one linear layer (pipeline/classify/train.py)."""

    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])  # one stride-2 conv block per entry
    head: Literal["flatten", "avgpool"] = "flatten"  # flatten the last map (MONAI's; keeps position), or average it
    dropout: float = field(default=0.2, metadata=rng(0.0, 0.9))  # before the linear layer

    def validate(self, prefix: str, where: str) -> None:
        if not self.channels or any(c < 1 or c > 1024 for c in self.channels):
            raise ConfigError(f"{where}: {prefix}.channels: {self.channels} must be 1 to 8 widths in [1, 1024]")
        if len(self.channels) > 8:
            raise ConfigError(f"{where}: {prefix}.channels: {len(self.channels)} blocks; at most 8 (64 px / 2**8 < 1)")


@dataclass
class BudgetConfig:
    """The training budget, identical for every arm (the comparison is only fair that way)."""

    max_epochs: int = field(default=30, metadata=rng(1, 10000))
    min_epochs: int = field(default=10, metadata=rng(0, 10000))  # no early stop before this (tiny sets start slow)
    patience: int = field(default=6, metadata=rng(1, 10000))  # epochs without a better monitor value -> stop
    monitor: Literal["val_balanced_loss", "val_loss", "val_macro_f1"] = "val_balanced_loss"  # real val split
    batch_size: int = field(default=32, metadata=rng(2, 65536))
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = field(default=1e-3, metadata=rng(0.0, 1.0))
    weight_decay: float = field(default=1e-4, metadata=rng(0.0, 1.0))
    momentum: float = field(default=0.9, metadata=rng(0.0, 1.0))  # sgd only


@dataclass
class ClassicalConfig:
    """Classical augmentation (albumentations 2.0.8 on uint8 HWC); each part has its own probability (0 = off)."""

    flip_p: float = field(default=0.5, metadata=rng(0.0, 1.0))  # horizontal and vertical flips, each
    affine_p: float = field(default=0.5, metadata=rng(0.0, 1.0))
    rotate_deg: float = field(default=15.0, metadata=rng(0.0, 180.0))  # +- degrees
    scale_range: list[float] = field(default_factory=lambda: [0.9, 1.1])
    translate_frac: float = field(default=0.05, metadata=rng(0.0, 0.5))  # of the side, +-
    elastic_p: float = field(default=0.2, metadata=rng(0.0, 1.0))
    elastic_alpha: float = field(default=15.0, metadata=rng(0.0, 1000.0))  # displacement strength, px
    elastic_sigma: float = field(default=5.0, metadata=rng(0.1, 100.0))  # smoothness of the displacement field
    brightness_contrast_p: float = field(default=0.5, metadata=rng(0.0, 1.0))
    brightness: float = field(default=0.1, metadata=rng(0.0, 1.0))  # +- fraction
    contrast: float = field(default=0.1, metadata=rng(0.0, 1.0))  # +- fraction
    color_jitter_p: float = field(default=0.3, metadata=rng(0.0, 1.0))  # RGB (cytology) only; never on grayscale
    saturation: float = field(default=0.1, metadata=rng(0.0, 1.0))  # +- fraction
    hue: float = field(default=0.02, metadata=rng(0.0, 0.5))  # +- fraction of the hue circle (stain drift)

    def validate(self, prefix: str, where: str) -> None:
        lo_hi = self.scale_range
        if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1] <= 4:
            raise ConfigError(f"{where}: {prefix}.scale_range: {lo_hi} must be [low, high] with 0 < low <= high <= 4")


@dataclass
class StatsConfig:
    """Intervals and tests; see pipeline/classify/stats.py for the method."""

    n_boot: int = field(default=2000, metadata=rng(100, 1000000))  # bootstrap replicates
    level: float = field(default=0.95, metadata=rng(0.5, 0.999))  # interval coverage
    seed: int = field(default=0, metadata=rng(0, 2**31 - 1))  # of the bootstrap draws


@dataclass
class EvaluateConfig:
    """Root of ``evaluate:``."""

    arms: list[str] = field(default_factory=lambda: list(DEFAULT_ARMS))  # names in pipeline/classify/arms.py ARMS
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # every arm runs every seed (paired comparison)
    synthetic_classical_gan: Literal["cdcgan", "acgan"] = "acgan"  # whose images the synthetic_classical arm adds
    minority_class: dict[str, str] = field(default_factory=dict)  # dataset -> class; absent = rarest in train
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    classical: ClassicalConfig = field(default_factory=ClassicalConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    workers: int = field(default=0, metadata=rng(0, 256))  # training processes; 0 = one per CPU core (max jobs)
    num_threads: int = field(default=0, metadata=rng(0, 1024))  # torch threads per process; 0 = cores / workers
    tracking: bool = True  # MLflow; env PIPELINE_TRACKING=0 turns it off too
    tracking_uri: str = ""  # "" = env MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlflow.db

    def validate(self, prefix: str, where: str) -> None:
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown:
            raise ConfigError(f"{where}: {prefix}.arms: unknown arm {unknown[0]!r}; use names from {', '.join(ARMS)}")
        if len(set(self.arms)) != len(self.arms):
            raise ConfigError(f"{where}: {prefix}.arms: {self.arms} lists an arm twice; list each once")
        if "real_only" not in self.arms:
            raise ConfigError(f"{where}: {prefix}.arms: real_only is missing; every gain is measured against it")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            raise ConfigError(f"{where}: {prefix}.seeds: {self.seeds} must be distinct non-negative integers "
                              "(at least 1; 5 or more for a study)")
        if self.budget.min_epochs > self.budget.max_epochs:
            raise ConfigError(f"{where}: {prefix}.budget.min_epochs: {self.budget.min_epochs} is above max_epochs "
                              f"{self.budget.max_epochs}; make min <= max")


register_section("evaluate", EvaluateConfig)
