"""Per-class quality of fakes against the real training images, each number beside its real-vs-real reference.

The reference of a metric is the same metric with the real validation images of the class in the
place of the fakes (train vs validation): what a fresh set of real images scores. Frechet distance and
PRDC depend on the set size, so the fakes are drawn ``fake_draws`` times at the size of the validation
set of the class and the mean and std over the draws are reported. KID is unbiased in the set size and
uses all fakes. Diversity (mean pairwise MS-SSIM) is compared with the same among the real training
images of the class. A class with fewer than ``min_reference_images`` validation images gets no
reference (``null``) rather than a number that means nothing; its fake metrics are then computed at the
size of the smaller set.
"""
from __future__ import annotations

import numpy as np
import torch

from pipeline.generate.config import MetricsConfig
from pipeline.generate.records import QUALITY_METRICS as METRIC_KEYS
from pipeline.quality.frechet import frechet_distance
from pipeline.io import finite
from pipeline.quality.metrics import kid, pairwise_ms_ssim, prdc

PRDC_KEYS = ("precision", "recall", "density", "coverage")


def _summary(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return finite(float(np.mean(values))), finite(float(np.std(values)))


def real_reference(train_features: torch.Tensor, train_images: torch.Tensor, val_features: torch.Tensor,
                   cfg: MetricsConfig, seed: int = 0) -> dict:
    """The real-vs-real numbers of one class (validation in the place of the fakes), computed once per class."""
    n_train, n_val = len(train_features), len(val_features)
    ref: dict = {"n_train": n_train, "n_val": n_val, "train_features": train_features,
                 "usable": n_val >= cfg.min_reference_images and n_train >= 2}
    ref["kind"] = "train_vs_val" if ref["usable"] else \
        f"none: {n_val} validation image(s), need >= {cfg.min_reference_images}"
    if ref["usable"]:
        ref["fd"] = (finite(frechet_distance(val_features, train_features)), None)
        ref["kid"] = kid(val_features, train_features, cfg.kid_subsets, cfg.kid_subset_size, seed)
        p = prdc(train_features, val_features, cfg.prdc_k)
        ref.update({key: (p[key], None) for key in PRDC_KEYS})
    ref["diversity_ms_ssim"] = (pairwise_ms_ssim(train_images, cfg.diversity_pairs, seed, cfg.ms_ssim_kernel_px,
                                                 cfg.ms_ssim_max_scales), None)
    return ref


def class_quality(fake_features: torch.Tensor, fake_images: torch.Tensor, reference: dict, cfg: MetricsConfig,
                  seed: int = 0) -> dict:
    """Metrics of the fakes of one class: ``{metric: {value, std, reference, reference_std}}`` and set sizes."""
    train_features = reference["train_features"]
    n_fake, n_train, n_val = len(fake_features), reference["n_train"], reference["n_val"]
    n_draw = min(n_val if reference["usable"] else n_train, n_fake)
    out: dict = {"n_fake": n_fake, "n_train": n_train, "n_val": n_val, "n_fake_per_draw": n_draw,
                 "reference": reference["kind"]}
    metrics = {k: {"value": None, "std": None, "reference": reference.get(k, (None, None))[0],
                   "reference_std": reference.get(k, (None, None))[1]} for k in METRIC_KEYS}
    rs = np.random.RandomState(seed)
    if n_draw >= 2 and n_train >= 2:
        draws = [torch.from_numpy(rs.choice(n_fake, n_draw, replace=False))
                 for _ in range(cfg.fake_draws if n_draw < n_fake else 1)]
        fds = [frechet_distance(fake_features[d], train_features) for d in draws]
        metrics["fd"]["value"], metrics["fd"]["std"] = _summary(fds)
        prdcs = [prdc(train_features, fake_features[d], cfg.prdc_k) for d in draws]
        for key in PRDC_KEYS:
            metrics[key]["value"], metrics[key]["std"] = _summary([p[key] for p in prdcs])
        out["prdc_k"] = prdcs[0]["k"]
    if n_fake >= 2 and n_train >= 2:
        metrics["kid"]["value"], metrics["kid"]["std"] = kid(fake_features, train_features, cfg.kid_subsets,
                                                             cfg.kid_subset_size, seed)
    metrics["diversity_ms_ssim"]["value"] = pairwise_ms_ssim(fake_images, cfg.diversity_pairs, seed,
                                                             cfg.ms_ssim_kernel_px, cfg.ms_ssim_max_scales)
    out.update(metrics)
    return out


def overall(per_class: dict[str, dict]) -> dict:
    """Macro average over classes of each metric, over the classes that have both a value and a reference."""
    out: dict = {}
    for key in METRIC_KEYS:
        pairs = [(c, m[key]["value"], m[key]["reference"]) for c, m in per_class.items()
                 if m[key]["value"] is not None and m[key]["reference"] is not None]
        out[key] = {"value": finite(float(np.mean([p[1] for p in pairs]))) if pairs else None,
                    "reference": finite(float(np.mean([p[2] for p in pairs]))) if pairs else None,
                    "classes": [p[0] for p in pairs]}
    return out
