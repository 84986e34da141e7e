"""One registry of the names that params.yaml, the stages and the report share (ground floor, no torch).

The modules that implement each variant (GAN models, losses, noise schedules, label smoothing, DiffAugment
policies, classifier arms) key their function registries by these names; ``tests/test_names.py`` checks
that each registry holds exactly the names here, so the config can validate params without importing torch.
"""
from __future__ import annotations

GANS = ("cdcgan", "acgan")  # pipeline/gan/models.py; one train_gan and one generate stage per (data set, GAN)
GAN_LOSSES = ("non_saturating", "hinge", "least_squares")  # pipeline/gan/losses.py LOSSES
NOISE_SCHEDULES = ("linear", "exponential")  # pipeline/gan/stabilise.py NOISE_SCHEDULES
LABEL_SMOOTHING = ("none", "one_sided", "two_sided")  # pipeline/gan/stabilise.py SMOOTHING
DIFFAUGMENT_POLICIES = ("brightness", "contrast", "saturation", "color", "translation", "cutout")  # gan/augment.py

# Classifier arms (pipeline/classify/arms.py ARMS), in the order of every table and chart.
REAL_ONLY = "real_only"  # the baseline every gain is measured against
ARMS = (REAL_ONLY, "class_weighted", "oversample", "classical", "cdcgan", "acgan", "synthetic_classical",
        "acgan_discriminator")
NON_GAN_ARMS = ("class_weighted", "oversample", "classical")  # re-balancing and classical augmentation
DISCRIMINATOR_SUFFIX = "_discriminator"  # <gan>_discriminator fine-tunes that GAN's trained discriminator
DISCRIMINATOR_ARMS = tuple(a for a in ARMS if a.endswith(DISCRIMINATOR_SUFFIX))
MIRROR_SUFFIX = "#mirror"  # memorisation: the nearest training image matched after a left-right mirror


def policy_names(policy: str) -> list[str]:
    """The names in a comma-separated DiffAugment policy such as ``"color,translation"``."""
    return [p.strip() for p in policy.split(",") if p.strip()]


def arm_gan(arm: str, synthetic_classical_gan: str) -> str | None:
    """The GAN whose synthetic images ``arm`` adds (None for the arms without synthetic images)."""
    return {**{g: g for g in GANS}, "synthetic_classical": synthetic_classical_gan}.get(arm)
