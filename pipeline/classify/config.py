"""The ``evaluate`` section of params.yaml: classifier, training budget, arms, seeds and statistics.

Every arm trains with the same :class:`BudgetConfig` on the same seeds, so arms differ only in what
their arm function (``pipeline/classify/arms.py``) does to the training split. The default values
are the CPU default run (3 seeds, a few seconds of CPU per classifier); the real-data study presets are
``presets/{mias,herlev,cric}.yaml``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.errors import ConfigError
from pipeline.names import ARMS
from pipeline.schema import rng

DEFAULT_ARMS = list(ARMS)


NETWORKS = ("cnn", "monai_resnet", "monai_densenet")


@dataclass
class ClassifierConfig:
    """The network every arm trains from scratch (pipeline/classify/train.py ``build_classifier``).

    ``cnn``: the project's stride-2 conv blocks (conv, batch norm, ReLU) then one linear layer (fast on a CPU).
    ``monai_resnet``: MONAI's 2D ``ResNet`` with basic blocks, ``channels`` as stage widths and ``blocks`` per
    stage ([1, 1, 1, 1] is ResNet-10, [2, 2, 2, 2] ResNet-18). ``monai_densenet``: MONAI's 2D ``DenseNet`` with
    ``blocks`` dense layers per block, ``channels[0]`` stem features and ``growth_rate``. No pretrained weights.
    """

    network: Literal["cnn", "monai_resnet", "monai_densenet"] = "cnn"
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])  # cnn: block widths; resnet: stage widths
    blocks: list[int] = field(default_factory=lambda: [1, 1, 1, 1])  # monai_*: residual blocks / dense layers per stage
    growth_rate: int = field(default=12, metadata=rng(1, 256))  # monai_densenet: features each dense layer adds
    block: Literal["strided", "conv_pool"] = "strided"  # cnn: stride-2 conv | 3x3 conv then 2x2 max pool
    head: Literal["flatten", "avgpool"] = "flatten"  # cnn: flatten the last map (keeps position) or average it
    dropout: float = field(default=0.2, metadata=rng(0.0, 0.9))  # before the linear layer (densenet: in dense layers)

    def validate(self, prefix: str, where: str) -> None:
        if not self.channels or any(c < 1 or c > 1024 for c in self.channels):
            raise ConfigError(f"{where}: {prefix}.channels: {self.channels} must be 1 to 8 widths in [1, 1024]")
        if len(self.channels) > 8:
            raise ConfigError(f"{where}: {prefix}.channels: {len(self.channels)} blocks; at most 8 (64 px / 2**8 < 1)")
        if not self.blocks or any(b < 1 or b > 64 for b in self.blocks):
            raise ConfigError(f"{where}: {prefix}.blocks: {self.blocks} must be counts in [1, 64]")
        if self.network == "monai_resnet" and not len(self.blocks) == len(self.channels) == 4:
            raise ConfigError(f"{where}: {prefix}: monai_resnet has 4 stages; give 4 channels (stage widths) and "
                              f"4 blocks (per stage), not {len(self.channels)} and {len(self.blocks)}")

    def describe(self) -> str:
        """One line naming the network that ran (params, metrics and reports say it the same way)."""
        if self.network == "cnn":
            return f"cnn channels={self.channels} block={self.block} head={self.head} dropout={self.dropout}"
        if self.network == "monai_resnet":
            return f"monai_resnet channels={self.channels} blocks={self.blocks}"
        return f"monai_densenet init_features={self.channels[0]} blocks={self.blocks} growth_rate={self.growth_rate}"


MONITORS = ("val_macro_f1", "val_balanced_accuracy", "val_loss", "val_balanced_loss")


@dataclass
class BudgetConfig:
    """The training budget and the checkpoint-selection rule, identical for every arm (the comparison is only
    fair that way).

    Selection: after each epoch the ``monitor`` score on the real validation split is averaged over the last
    ``monitor_window_epochs`` epochs; the epoch that ends the best window is kept (its weights are restored).
    A score (macro-F1, balanced accuracy) tracks the test metric; a loss can bottom out at epoch 1-3 on small,
    noisy sets while the score still rises (CRIC: best loss at epoch 1, chance-level test F1). Training stops
    at ``max_epochs``, or after ``min_epochs`` once ``patience`` epochs brought no better window.
    """

    max_epochs: int = field(default=30, metadata=rng(1, 10000))
    min_epochs: int = field(default=15, metadata=rng(0, 10000))  # no early stop before this
    patience: int = field(default=8, metadata=rng(1, 10000))  # epochs without a better smoothed monitor -> stop
    monitor: Literal["val_macro_f1", "val_balanced_accuracy", "val_loss", "val_balanced_loss"] = "val_macro_f1"
    monitor_window_epochs: int = field(default=3, metadata=rng(1, 100))  # trailing mean of the monitor; 1 = raw
    lr_schedule: Literal["cosine", "constant"] = "cosine"  # cosine: lr -> 0 over max_epochs, after the warm-up
    warmup_epochs: int = field(default=1, metadata=rng(0, 1000))  # linear warm-up from lr/10 (cosine only)
    batch_size: int = field(default=32, metadata=rng(2, 65536))
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = field(default=1e-3, metadata=rng(0.0, 1.0))
    weight_decay: float = field(default=1e-4, metadata=rng(0.0, 1.0))
    momentum: float = field(default=0.9, metadata=rng(0.0, 1.0))  # sgd only
    bf16: bool = False  # CPU/GPU bfloat16 autocast for the forward pass (weights and optimiser stay float32)


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
        if self.budget.warmup_epochs >= self.budget.max_epochs:
            raise ConfigError(f"{where}: {prefix}.budget.warmup_epochs: {self.budget.warmup_epochs} leaves no epoch of "
                              f"max_epochs {self.budget.max_epochs} after the warm-up; make it smaller")
        if self.budget.min_epochs > self.budget.max_epochs:
            raise ConfigError(f"{where}: {prefix}.budget.min_epochs: {self.budget.min_epochs} is above max_epochs "
                              f"{self.budget.max_epochs}; make min <= max")
