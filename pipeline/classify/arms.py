"""Training arms: name -> small function that turns the real training split into what a classifier trains on.

An arm sees only the real *training* split (and, for the GAN arms, the kept synthetic images of one
manifest); validation and test never pass through here, so an arm cannot add anything to them.
Every arm returns a :class:`TrainSet`; the training loop (``pipeline/classify/train.py``) is the same for
all of them, with the same budget and seeds, so the arms differ only in what is listed here::

    real_only            the real training split as it is
    class_weighted       cross-entropy weights inverse to class frequency (sklearn's "balanced")
    oversample           a WeightedRandomSampler that draws every class equally often
    classical            flips, affine, elastic, brightness/contrast (+ colour jitter for RGB) per image
    cdcgan, acgan        real + the kept synthetic images of that GAN's manifest
    synthetic_classical  real + synthetic (``evaluate.synthetic_classical_gan``) + classical augmentation
    acgan_discriminator  semi-supervised: the real training split, but the network starts as the trained
                         ACGAN discriminator's class head (``discriminator.py``) and is fine-tuned on it

params.yaml refers to arms by these names (``evaluate.arms``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from pipeline.data.cache import SplitArrays
from pipeline import names
from pipeline.errors import DataError

if TYPE_CHECKING:
    import torch

    from pipeline.classify.config import ClassicalConfig, EvaluateConfig

Transform = Callable[[np.ndarray], np.ndarray]  # uint8 (H, W, C) -> uint8 (H, W, C)


@dataclass
class TrainSet:
    """What one arm trains on: images, and optionally loss weights, sampler weights and a transform."""

    images: np.ndarray  # uint8 (N, C, H, W): real training images, then any synthetic ones
    labels: np.ndarray  # int64 (N,)
    image_ids: np.ndarray  # str (N,)
    n_synthetic: int = 0  # how many of the rows are synthetic (they come last)
    class_weights: np.ndarray | None = None  # float (K,) cross-entropy weights; None = unweighted
    sample_weights: np.ndarray | None = None  # float (N,) WeightedRandomSampler weights; None = shuffle
    transform: Transform | None = None  # applied to every training image, every epoch
    init_model: Callable[[], torch.nn.Module] | None = None  # the starting network; None = evaluate.classifier's


@dataclass
class ArmContext:
    """What an arm may use besides the real training split."""

    n_classes: int
    channels: int
    seed: int  # the run's seed (seeds the augmentation's random stream)
    classical: ClassicalConfig
    synthetic: dict[str, SplitArrays]  # gan name -> kept synthetic images (only the GANs the arms need)
    synthetic_classical_gan: str = "acgan"
    classes: list[str] | None = None  # the data set's class names (checked against a GAN checkpoint's)
    acgan_checkpoint: Path | None = None  # the trained ACGAN (models/<dataset>/acgan/best.pt)


def class_counts(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(labels, minlength=n_classes)


def inverse_frequency(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``N / (K * n_k)`` per class (1.0 for every class when balanced); an absent class gets 0."""
    counts = class_counts(labels, n_classes).astype(np.float64)
    weights = np.zeros(n_classes)
    present = counts > 0
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights


def add_synthetic(train: SplitArrays, synthetic: SplitArrays) -> TrainSet:
    """Real training images followed by the synthetic ones; nothing else is touched."""
    return TrainSet(images=np.concatenate([train.images, synthetic.images]),
                    labels=np.concatenate([train.labels, synthetic.labels]),
                    image_ids=np.concatenate([train.image_ids.astype(str), synthetic.image_ids.astype(str)]),
                    n_synthetic=len(synthetic))


def classical_transform(channels: int, cfg: ClassicalConfig, seed: int) -> Transform:
    """The classical augmentation as one albumentations pipeline with its own seeded random stream.

    Borders are reflected, not black, so a rotated patch does not carry a tell-tale frame. Colour jitter
    (saturation and hue: stain variation) is only added for RGB; grayscale mammograms get none.
    """
    import albumentations as A
    import cv2

    border = cv2.BORDER_REFLECT_101
    steps = [A.HorizontalFlip(p=cfg.flip_p), A.VerticalFlip(p=cfg.flip_p),
             A.Affine(scale=tuple(cfg.scale_range), translate_percent=(-cfg.translate_frac, cfg.translate_frac),
                      rotate=(-cfg.rotate_deg, cfg.rotate_deg), border_mode=border, p=cfg.affine_p),
             A.ElasticTransform(alpha=cfg.elastic_alpha, sigma=cfg.elastic_sigma, border_mode=border,
                                p=cfg.elastic_p),
             A.RandomBrightnessContrast(brightness_limit=cfg.brightness, contrast_limit=cfg.contrast,
                                        p=cfg.brightness_contrast_p)]
    if channels == 3:
        steps.append(A.ColorJitter(brightness=0.0, contrast=0.0, saturation=(1 - cfg.saturation, 1 + cfg.saturation),
                                   hue=(-cfg.hue, cfg.hue), p=cfg.color_jitter_p))
    compose = A.Compose([s for s in steps if s.p > 0], seed=seed)

    def apply(image: np.ndarray) -> np.ndarray:
        return compose(image=image)["image"]

    return apply


# ----------------------------------------------------------------------------------------- the arms
def real_only(train: SplitArrays, ctx: ArmContext) -> TrainSet:
    return TrainSet(images=train.images, labels=train.labels, image_ids=train.image_ids.astype(str))


def class_weighted(train: SplitArrays, ctx: ArmContext) -> TrainSet:
    return replace(real_only(train, ctx), class_weights=inverse_frequency(train.labels, ctx.n_classes))


def oversample(train: SplitArrays, ctx: ArmContext) -> TrainSet:
    per_class = inverse_frequency(train.labels, ctx.n_classes)
    return replace(real_only(train, ctx), sample_weights=per_class[train.labels])


def classical(train: SplitArrays, ctx: ArmContext) -> TrainSet:
    return replace(real_only(train, ctx), transform=classical_transform(ctx.channels, ctx.classical, ctx.seed))


def cdcgan(train: SplitArrays, ctx: ArmContext) -> TrainSet:
    return add_synthetic(train, ctx.synthetic["cdcgan"])


def acgan(train: SplitArrays, ctx: ArmContext) -> TrainSet:
    return add_synthetic(train, ctx.synthetic["acgan"])


def synthetic_classical(train: SplitArrays, ctx: ArmContext) -> TrainSet:
    return replace(add_synthetic(train, ctx.synthetic[ctx.synthetic_classical_gan]),
                   transform=classical_transform(ctx.channels, ctx.classical, ctx.seed))


def acgan_discriminator(train: SplitArrays, ctx: ArmContext) -> TrainSet:
    from pipeline.classify.discriminator import load_discriminator_classifier

    path = ctx.acgan_checkpoint
    if path is None or not Path(path).is_file():
        raise DataError(f"{path}: ACGAN checkpoint not found; arm 'acgan_discriminator' fine-tunes its discriminator: "
                        "run the train_gan stage or remove the arm from evaluate.arms")
    classes = ctx.classes or [str(k) for k in range(ctx.n_classes)]
    load_discriminator_classifier(path, classes, ctx.channels, train.images.shape[-1])  # fail here, not in training

    def init_model() -> torch.nn.Module:
        return load_discriminator_classifier(path, classes, ctx.channels, train.images.shape[-1])

    return replace(real_only(train, ctx), init_model=init_model)


ARMS: dict[str, Callable[[SplitArrays, ArmContext], TrainSet]] = {
    "real_only": real_only,
    "class_weighted": class_weighted,
    "oversample": oversample,
    "classical": classical,
    "cdcgan": cdcgan,
    "acgan": acgan,
    "synthetic_classical": synthetic_classical,
    "acgan_discriminator": acgan_discriminator,
}


def arm_gan(arm: str, cfg: EvaluateConfig) -> str | None:
    """The GAN whose synthetic images ``arm`` adds (None for the arms without synthetic images)."""
    return names.arm_gan(arm, cfg.synthetic_classical_gan)
