"""The ``report`` section of params.yaml: what the clinician report and the blinded review page show.

Registered with :mod:`pipeline.config`, so an unknown key or an out-of-range value stops with one line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.errors import ConfigError
from pipeline.schema import rng


@dataclass
class ReportConfig:
    """Root of ``report:``."""

    metric: str = "macro_f1"  # the classifier measure the summary leads with (evaluate's headline: macro_f1,
    # balanced_accuracy, minority_recall, auc_macro); the report falls back to one the evaluation has
    samples_per_class: int = field(default=6, metadata=rng(1, 200))  # kept synthetic images shown per GAN and class
    excluded_max: int = field(default=24, metadata=rng(0, 1000))  # images the memorisation gate excluded, per GAN
    thumb_px: int = field(default=128, metadata=rng(32, 512))  # size of an image in the report
    mammo_window_percentiles: list[float] = field(default_factory=lambda: [1.0, 99.0])  # per-patch contrast stretch
    review_items: int = field(default=40, metadata=rng(2, 2000))  # items on the review page, half real, half synthetic
    review_seed: int = field(default=0, metadata=rng(0, 2**31 - 1))  # which images and their order
    review_gan: str = "best"  # synthetic source: a GAN name, "best" (the best augmented arm's GAN) or "all"
    review_display_px: int = field(default=384, metadata=rng(64, 2048))  # on-screen size of a review image
    review_upscale: Literal["pixelated", "smooth"] = "pixelated"  # pixelated shows the real pixels; smooth blurs them
    tracking: bool = True  # MLflow artifacts; env PIPELINE_TRACKING=0 turns it off too

    def validate(self, prefix: str, where: str) -> None:
        lo_hi = self.mammo_window_percentiles
        if len(lo_hi) != 2 or not 0.0 <= lo_hi[0] < lo_hi[1] <= 100.0:
            raise ConfigError(f"{where}: {prefix}.mammo_window_percentiles: {lo_hi} must be [low, high] "
                              "with 0 <= low < high <= 100 (e.g. [1, 99])")
        if self.review_items % 2:
            raise ConfigError(f"{where}: {prefix}.review_items: {self.review_items} is odd; use an even number "
                              "(half real, half synthetic)")
