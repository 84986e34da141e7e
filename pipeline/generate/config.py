"""The ``generate`` section of params.yaml: typed, with ranges, registered with :mod:`pipeline.config`.

Every knob is a named field with a one-line comment; params.yaml writes the defaults out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.errors import ConfigError
from pipeline.schema import rng


@dataclass
class TargetConfig:
    """How many KEPT synthetic images each class gets (generated images that fail a check do not count)."""

    mode: Literal["balance_to_majority", "ratio", "counts"] = "balance_to_majority"
    ratio: float = field(default=1.0, metadata=rng(0.0, 100.0))  # mode ratio: top each class up to ratio x majority
    counts: dict[str, int] = field(default_factory=dict)  # mode counts: kept images per class, e.g. {malignant: 200}
    max_attempts_factor: float = field(default=4.0, metadata=rng(1.0, 1000.0))  # stop a class at this x its target

    def validate(self, prefix: str, where: str) -> None:
        if self.mode == "counts" and not self.counts:
            raise ConfigError(f"{where}: {prefix}.counts: empty with mode counts; give e.g. {{malignant: 100}}")
        bad = {k: v for k, v in self.counts.items() if v < 0}
        if bad:
            raise ConfigError(f"{where}: {prefix}.counts: {bad} must be >= 0")


@dataclass
class FilterConfig:
    """Keep a fake only when it lies among real training images of its class (realism: k-NN balls in the
    classifier's feature space and in image statistics, pipeline/quality/realism.py) and the classifier
    trained on real training images agrees with its conditioning class."""

    enabled: bool = True  # false: neither test, only the copy gate
    min_confidence: float = field(default=0.5, metadata=rng(0.0, 1.0))  # softmax of the conditioning class (cap)
    # > 0: per class, the threshold drops to the softmax that this share of the class's real validation images
    # reach (never above min_confidence), so a fake is refused only when it is less recognisable than most real
    # images of its class; 0: min_confidence for every class. Classes with < realism_min_val_images use all pooled.
    confidence_val_pass: float = field(default=0.8, metadata=rng(0.0, 1.0))
    realism: bool = True  # inside some real training image's k-NN ball of its class (Kynkaanniemi et al. 2019)
    realism_spaces: list[Literal["classifier", "image_stats"]] = field(  # the fake must pass in each
        default_factory=lambda: ["classifier", "image_stats"])
    realism_k: int = field(default=3, metadata=rng(1, 100))  # ball radius: distance to the k-th nearest of the class
    realism_val_pass: float = field(default=0.95, metadata=rng(0.5, 1.0))  # scale: this share of real val images pass
    realism_min_val_images: int = field(default=10, metadata=rng(1, 100000))  # fewer in a class: scale of all classes

    def validate(self, prefix: str, where: str) -> None:
        if self.realism and (not self.realism_spaces or len(set(self.realism_spaces)) < len(self.realism_spaces)):
            raise ConfigError(f"{where}: {prefix}.realism_spaces: {self.realism_spaces} must name each space once, "
                              "e.g. [classifier, image_stats]; or set realism: false")


@dataclass
class MemorisationConfig:
    """Copy gate (pipeline/quality/memorisation.py): a fake is memorised when, in feature space or in copy
    space (standardised low-pass luminance, best view and shift of each training image), both its nearest
    training-image distance d and its relative distance r = d / mean of the ``neighbours_k`` nearest lie
    below the ``percentile``-th percentile of the same over the real validation images. A fresh real image
    is flagged with probability <= ~2 x percentile / 100.
    """

    percentile: float = field(default=1.0, metadata=rng(0.0, 50.0))
    neighbours_k: int = field(default=5, metadata=rng(1, 1000))  # k of the relative nearest distance
    match_flips: bool = True  # compare with flipped and rotated training images (such a copy is a copy)
    max_shift_px: int = field(default=4, metadata=rng(0, 64))  # a copy moved by up to this many px is a copy


@dataclass
class ClassifierConfig:
    """The FeatureNet trained here on the real training split: its penultimate layer is the feature space
    of the metrics and the gate, its head is the filter. Class-balanced loss, dihedral flips."""

    feature_dim: int = field(default=64, metadata=rng(2, 1024))
    epochs: int = field(default=40, metadata=rng(1, 1000))  # phantom mammography: ~0.8 accuracy by 40
    batch_size: int = field(default=32, metadata=rng(2, 4096))
    lr: float = field(default=1e-3, metadata=rng(0.0, 1.0))  # Adam
    seed: int = field(default=0, metadata=rng(0, 2**31 - 1))
    cache_dir: str = "runs/generate"  # trained nets are cached here (keyed by data and settings), outside DVC outs


@dataclass
class MetricsConfig:
    """Quality metrics of fakes against the real training images, each with a real-vs-real reference."""

    kid_subsets: int = field(default=100, metadata=rng(1, 10000))  # random subsets for the KID mean and std
    kid_subset_size: int = field(default=1000, metadata=rng(2, 100000))  # capped by the set sizes
    prdc_k: int = field(default=5, metadata=rng(1, 100))  # k of the k-NN manifolds (Naeem et al. 2020)
    fake_draws: int = field(default=10, metadata=rng(1, 1000))  # size-matched draws of fakes for FD and PRDC
    min_reference_images: int = field(default=3, metadata=rng(2, 1000))  # fewer validation images: no reference
    diversity_pairs: int = field(default=500, metadata=rng(1, 1000000))  # random pairs for mean MS-SSIM
    ms_ssim_kernel_px: int = field(default=7, metadata=rng(3, 31))  # Gaussian window (11 leaves 6 px at 64/4)
    ms_ssim_max_scales: int = field(default=3, metadata=rng(1, 5))  # fewer are used when the images are small


@dataclass
class GenerateConfig:
    """Root of ``generate:``."""

    target: TargetConfig = field(default_factory=TargetConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    memorisation: MemorisationConfig = field(default_factory=MemorisationConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    seed: int = field(default=0, metadata=rng(0, 2**31 - 1))  # image i of class c uses z from seed (seed, c, i)
    batch_size: int = field(default=256, metadata=rng(1, 65536))  # generator batch
    prefer_ema: bool = True  # sample from the EMA generator when the checkpoint has one
    dicom_export: Literal["auto", "on", "off"] = "auto"  # auto: on for mammography data sets
    grid_columns: int = field(default=8, metadata=rng(1, 64))  # kept samples per class in samples.png
    num_threads: int = field(default=0, metadata=rng(0, 1024))  # torch CPU threads; 0 = all cores
    tracking: bool = True  # MLflow; env PIPELINE_TRACKING=0 turns it off too
