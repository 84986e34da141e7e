"""Arms: what each adds, that synthetic images only ever reach the training set, and the params checks."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.names import DISCRIMINATOR_ARMS
from pipeline.classify.arms import ARMS, ArmContext, arm_gan, classical_transform, inverse_frequency
from pipeline.classify.config import ClassicalConfig, EvaluateConfig
from pipeline.config import build
from pipeline.data.cache import SplitArrays
from pipeline.errors import ConfigError
from tests.classify.fakes import CLASSES, make_split, shape_images


def synthetic_set(gan: str, n: int = 4, channels: int = 1) -> SplitArrays:
    labels = np.full(n, 2, np.int64)
    ids = np.array([f"syn_{gan}_malignant_{i:04d}.png" for i in range(n)])
    return SplitArrays(shape_images(labels, channels, seed=9), labels, ids)


def context(channels: int = 1, seed: int = 0, acgan_checkpoint=None) -> ArmContext:
    return ArmContext(n_classes=3, channels=channels, seed=seed, classical=ClassicalConfig(),
                      synthetic={"cdcgan": synthetic_set("cdcgan", 3, channels), "acgan": synthetic_set("acgan", 5, channels)},
                      classes=list(CLASSES), acgan_checkpoint=acgan_checkpoint)


@pytest.mark.parametrize("arm", list(ARMS))
def test_arms_only_add_synthetic_images_to_the_training_split(arm: str, request: pytest.FixtureRequest) -> None:
    train = make_split("train")
    before = train.images.copy()
    ctx = context(acgan_checkpoint=request.getfixturevalue("acgan_checkpoint") if arm in DISCRIMINATOR_ARMS else None)
    out = ARMS[arm](train, ctx)
    n_real = len(train)
    assert np.array_equal(out.images[:n_real], train.images) and np.array_equal(out.labels[:n_real], train.labels)
    assert list(out.image_ids[:n_real]) == list(train.image_ids)
    added = list(out.image_ids[n_real:])
    assert len(added) == out.n_synthetic
    gan = arm_gan(arm, EvaluateConfig())
    if gan is None:
        assert added == []
    else:
        assert added == list(ctx.synthetic[gan].image_ids) and all(i.startswith("syn_") for i in added)
    assert np.array_equal(train.images, before)  # the real split itself is untouched


def test_arm_functions_never_see_validation_or_test() -> None:
    import inspect

    for fn in ARMS.values():
        assert list(inspect.signature(fn).parameters) == ["train", "ctx"]
    assert not {"val", "test"} & {f.name for f in dataclasses.fields(ArmContext)}


def test_class_weights_and_oversampling_balance_the_classes() -> None:
    train = make_split("train")  # 18 / 10 / 5
    weights = inverse_frequency(train.labels, 3)
    assert weights == pytest.approx([33 / (3 * 18), 33 / (3 * 10), 33 / (3 * 5)])
    cw = ARMS["class_weighted"](train, context())
    assert cw.class_weights == pytest.approx(weights) and cw.sample_weights is None
    over = ARMS["oversample"](train, context())
    per_class = [over.sample_weights[train.labels == k].sum() for k in range(3)]
    assert per_class == pytest.approx([per_class[0]] * 3)  # each class drawn equally often
    assert over.class_weights is None and over.transform is None


@pytest.mark.parametrize("channels", [1, 3])
def test_classical_transform_is_seeded_and_keeps_shape(channels: int) -> None:
    img = make_split("train", channels).images[0].transpose(1, 2, 0).copy()
    a, b = classical_transform(channels, ClassicalConfig(), 3), classical_transform(channels, ClassicalConfig(), 3)
    outs_a = [a(img) for _ in range(8)]
    outs_b = [b(img) for _ in range(8)]
    assert all(np.array_equal(x, y) for x, y in zip(outs_a, outs_b))
    assert all(x.shape == img.shape and x.dtype == np.uint8 for x in outs_a)
    assert any(not np.array_equal(x, img) for x in outs_a)


def test_colour_jitter_only_for_rgb() -> None:
    grey_only = dataclasses.replace(ClassicalConfig(), flip_p=0, affine_p=0, elastic_p=0, brightness_contrast_p=0,
                                    color_jitter_p=1.0, hue=0.3, saturation=0.5)
    img1 = make_split("train", 1).images[0].transpose(1, 2, 0).copy()
    assert np.array_equal(classical_transform(1, grey_only, 0)(img1), img1)  # nothing applies to grayscale
    img3 = make_split("train", 3).images[0].transpose(1, 2, 0).copy()
    assert not np.array_equal(classical_transform(3, grey_only, 0)(img3), img3)


def test_synthetic_classical_uses_the_gan_in_params() -> None:
    train = make_split("train")
    ctx = context()
    assert ARMS["synthetic_classical"](train, ctx).n_synthetic == 5  # acgan, the default
    ctx.synthetic_classical_gan = "cdcgan"
    out = ARMS["synthetic_classical"](train, ctx)
    assert out.n_synthetic == 3 and out.transform is not None
    assert arm_gan("synthetic_classical", EvaluateConfig(synthetic_classical_gan="cdcgan")) == "cdcgan"


@pytest.mark.parametrize("section, message", [
    ({"arms": ["real_only", "mixup"]}, "unknown arm 'mixup'"),
    ({"arms": ["oversample"]}, "real_only is missing"),
    ({"arms": ["real_only", "real_only"]}, "lists an arm twice"),
    ({"seeds": []}, "must be distinct"),
    ({"seeds": [1, 1]}, "must be distinct"),
    ({"synthetic_classical_gan": "stylegan"}, "not allowed"),
    ({"budget": {"min_epochs": 40, "max_epochs": 30}}, "min_epochs: 40 is above max_epochs"),
    ({"classical": {"scale_range": [1.2, 0.8]}}, "scale_range"),
])
def test_config_errors_are_one_line(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        build(EvaluateConfig, section, "evaluate")
    assert "\n" not in str(err.value)
