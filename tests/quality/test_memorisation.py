"""The copy gate: exact, noised, mirrored, shifted, rotated, brightened and blurred copies are caught; a new
image and a blurry one are not. Tiny synthetic blobs, plus the real Herlev cells when ../shared/data has them."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.quality.memorisation import MIRROR_SUFFIX, build_reference, fit_thresholds, gate


def blobs(n: int, seed: int, size: int = 32) -> torch.Tensor:
    """uint8 (n, 1, size, size): two bright Gaussian blobs at random places on a noisy background."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        img = 40 + rs.normal(0, 6, (size, size))
        for _ in range(2):
            cy, cx, r = rs.uniform(4, size - 4), rs.uniform(4, size - 4), rs.uniform(2, 6)
            img += 150 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        out.append(np.clip(img, 0, 255).astype(np.uint8)[None])
    return torch.from_numpy(np.stack(out))


def features(images: torch.Tensor) -> torch.Tensor:
    """A fixed stand-in for the learned feature space: 8x8 average-pooled pixels."""
    return F.avg_pool2d(images.float() / 255, 4).flatten(1)


# ------------------------------------------------------------------ the edits a generator can make
def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp(0, 255).to(torch.uint8)


def shifted(x: torch.Tensor, down: int, right: int) -> torch.Tensor:
    """Content moved by (down, right) px; the border is the edge repeated (a generator paints background)."""
    p = max(abs(down), abs(right))
    h, w = x.shape[-2:]
    padded = F.pad(x.float(), (p, p, p, p), mode="replicate")
    return to_uint8(padded[..., p - down:p - down + h, p - right:p - right + w])


def noised(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return to_uint8(x.double() + torch.from_numpy(np.random.RandomState(3).normal(0, sigma, x.shape)))


def mean_blurred(x: torch.Tensor) -> torch.Tensor:
    """3x3 mean blur per channel, edges repeated."""
    c = x.shape[1]
    return to_uint8(F.conv2d(F.pad(x.float(), (1, 1, 1, 1), mode="replicate"), torch.ones(c, 1, 3, 3) / 9, groups=c))


EDITS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "exact": lambda x: x.clone(),
    "noise_sigma3": lambda x: noised(x, 3),
    "noise_sigma8": lambda x: noised(x, 8),
    "mirror": lambda x: x.flip(-1),
    "shift_2px": lambda x: shifted(x, 2, -1),
    "shift_4px": lambda x: shifted(x, -3, 4),
    "rot90": lambda x: x.rot90(1, (-2, -1)),
    "brighter_10pct": lambda x: to_uint8(x.float() * 1.1),
    "mean_blur_3x3": mean_blurred,
    "shift_brighter_blur": lambda x: mean_blurred(to_uint8(shifted(x, 2, 2).float() * 1.1)),
}


@pytest.fixture(scope="module")
def fitted():
    train, val = blobs(60, 0), blobs(30, 1)
    reference = build_reference(train, features(train), [f"t{i}" for i in range(60)], features)
    return train, reference, fit_thresholds(reference, val, features(val), percentile=1.0, k=5)


@pytest.mark.parametrize("edit", EDITS)
def test_an_edited_copy_is_caught_and_named(fitted, edit):
    train, reference, thresholds = fitted
    source = [3, 17, 29, 41, 55]
    fakes = EDITS[edit](train[source])
    result = gate(fakes, features(fakes), reference, thresholds)
    assert result.memorised.all(), f"{edit}: {result.memorised.sum()} of {len(source)} caught"
    assert [i.removesuffix(MIRROR_SUFFIX) for i in result.pixel_nn_id] == [f"t{i}" for i in source]


def test_the_match_names_the_view_and_shift(fitted):
    train, reference, thresholds = fitted
    fakes = torch.cat([train[5:6], shifted(train[6:7], 2, -1), train[7:8].rot90(1, (-2, -1)), train[8:9].flip(-1)])
    result = gate(fakes, features(fakes), reference, thresholds)
    assert result.pixel_nn_view == ["identity", "identity, shifted (+2, -1) px", "rot90", "mirror"]
    assert result.nn_real_id[0] == "t5" and result.pixel_nn_id[3] == "t8" + MIRROR_SUFFIX
    assert result.pixel_distance[0] < 1e-6  # an exact copy: 0 up to rounding


def test_an_odd_shift_at_64_px_is_matched_on_the_second_pooling_grid():
    """At 64 px the copy space is 32 px: a 1 or 3 px shift is half a copy-space px, undone by the other grid."""
    train, val = blobs(40, 0, size=64), blobs(20, 1, size=64)
    reference = build_reference(train, features(train), [f"t{i}" for i in range(40)], features)
    thresholds = fit_thresholds(reference, val, features(val), percentile=1.0, k=5)
    fakes = torch.cat([shifted(train[3:4], 1, -3), shifted(train[9:10].rot90(1, (-2, -1)), -4, 3)])
    result = gate(fakes, features(fakes), reference, thresholds)
    assert result.memorised.all() and result.pixel_nn_id == ["t3", "t9"]
    assert result.pixel_nn_view == ["identity, shifted (+1, -3) px", "rot90, shifted (-4, +3) px"]
    assert result.pixel_distance.max() < 0.1 * thresholds.pixel  # not 0: the low-pass reaches the repeated edge


def test_new_images_pass_at_about_the_calibrated_rate(fitted):
    _, _, thresholds = fitted
    assert thresholds.real_flag_rate <= 0.1
    new = blobs(40, 2)
    _, reference, _ = fitted
    # A 1st percentile of 30 values is about their minimum: new images pass about as often as validation images.
    assert gate(new, features(new), reference, thresholds).memorised.mean() <= 0.1


def test_a_blurry_average_image_is_not_called_a_copy(fitted):
    """Absolute distances call a smooth image a copy of every flat patch; the relative distance does not."""
    train, reference, thresholds = fitted
    flat = train.float().mean(dim=0, keepdim=True).round().to(torch.uint8)
    assert not gate(flat, features(flat), reference, thresholds).memorised[0]


def test_without_flips_and_shifts_only_the_image_itself_is_compared():
    train = blobs(20, 0)
    reference = build_reference(train, features(train), [f"t{i}" for i in range(20)], match_flips=False,
                                max_shift_px=0)
    assert reference.views == ("identity",) and reference.margin == 0 and len(reference) == 20
    assert len(build_reference(train, features(train), [str(i) for i in range(20)], features).views) == 8


# ------------------------------------------------------------------ real Herlev cells, gate fitted as generate fits it
@pytest.mark.realdata
def test_real_herlev_edited_copies_are_caught_and_real_cells_pass(tmp_path_factory):
    """Ingest Herlev (presets/herlev.yaml, 64 px), train the FeatureNet and fit the gate as generate does; inject
    20 edited copies of training images per edit kind among the fakes: >= 95 % of each kind are caught, and no
    more real validation or test images are flagged than the calibrated rate (<= 2 x percentile / 100)."""
    from pipeline.config import dataset, load_params
    from pipeline.data.cache import load_split
    from pipeline.data.ingest import ingest_dataset
    from pipeline.generate.classifier import features_and_probabilities, load_or_train_classifier
    from pipeline.generate.config import GenerateConfig
    from pipeline.quality.features import extract_features
    from tests.conftest import REPO, shared

    shared("herlev")
    params = load_params(REPO / "presets" / "herlev.yaml")
    out = tmp_path_factory.mktemp("herlev")
    ingest_dataset("herlev", dataset(params, "herlev", "presets/herlev.yaml"), "test-salt", out / "data",
                   out / "ingest.json")
    cfg: GenerateConfig = params.extra["generate"]
    split = {s: load_split(out / "data", s) for s in ("train", "val", "test")}
    train_x, val_x, test_x = (torch.from_numpy(split[s].images) for s in ("train", "val", "test"))
    net = load_or_train_classifier(train_x, torch.from_numpy(split["train"].labels),
                                   int(split["train"].labels.max()) + 1, cfg.classifier, None)
    embed = lambda x: extract_features(net, x)  # noqa: E731
    mem = cfg.memorisation
    reference = build_reference(train_x, features_and_probabilities(net, train_x)[0], list(split["train"].image_ids),
                                embed, mem.match_flips, mem.max_shift_px)
    thresholds = fit_thresholds(reference, val_x, features_and_probabilities(net, val_x)[0], mem.percentile,
                                mem.neighbours_k)
    calibrated = 2 * mem.percentile / 100
    assert thresholds.real_flag_rate <= calibrated
    assert gate(test_x, embed(test_x), reference, thresholds).memorised.mean() <= calibrated
    rs = np.random.RandomState(0)
    caught = {}
    for name, edit in EDITS.items():
        fakes = edit(train_x[rs.choice(len(train_x), 20, replace=False)])
        caught[name] = int(gate(fakes, embed(fakes), reference, thresholds).memorised.sum())
    assert all(n >= 19 for n in caught.values()), f"caught of 20 per edit: {caught}"
