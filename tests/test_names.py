"""The shared name registry matches every function registry keyed by it."""
from __future__ import annotations

from pipeline import names
from pipeline.classify.arms import ARMS
from pipeline.gan.augment import AUGMENT_FNS
from pipeline.gan.losses import LOSSES
from pipeline.gan.stabilise import NOISE_SCHEDULES, SMOOTHING


def test_function_registries_hold_exactly_the_registered_names() -> None:
    assert tuple(ARMS) == names.ARMS
    assert tuple(LOSSES) == names.GAN_LOSSES
    assert tuple(NOISE_SCHEDULES) == names.NOISE_SCHEDULES
    assert set(SMOOTHING) == set(names.LABEL_SMOOTHING)
    assert set(AUGMENT_FNS) == set(names.DIFFAUGMENT_POLICIES)


def test_arm_helpers() -> None:
    assert names.arm_gan("acgan", "cdcgan") == "acgan"
    assert names.arm_gan("synthetic_classical", "cdcgan") == "cdcgan"
    assert names.arm_gan("oversample", "cdcgan") is None
    assert names.DISCRIMINATOR_ARMS == ("acgan_discriminator",)
    assert set(names.NON_GAN_ARMS) <= set(names.ARMS) and names.REAL_ONLY == names.ARMS[0]
    assert names.policy_names(" color, translation,") == ["color", "translation"]
