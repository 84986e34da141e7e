"""The copy gate: exact, noised and mirrored copies are caught; a new image and a blurry one are not."""
from __future__ import annotations

import numpy as np
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


def test_gate_catches_copies_and_lets_new_images_through():
    train, val, new = blobs(60, 0), blobs(30, 1), blobs(40, 2)
    reference = build_reference(train, features(train), [f"t{i}" for i in range(60)], features)
    thresholds = fit_thresholds(reference, val, features(val), percentile=1.0, k=5)
    assert thresholds.real_flag_rate <= 0.1
    noise = torch.from_numpy(np.random.RandomState(3).normal(0, 4, train[7:8].shape))
    noised = (train[7:8].double() + noise).round().clamp(0, 255).to(torch.uint8)
    mirrored = train[11:12].flip(-1)
    fakes = torch.cat([train[5:6], noised, mirrored, new])
    result = gate(fakes, features(fakes), reference, thresholds)
    assert result.memorised[:3].tolist() == [True, True, True]
    # New images pass at about the rate real validation images do (a 1st percentile of 30 values ~ their minimum).
    assert result.memorised[3:].mean() <= 0.1
    assert result.nn_real_id[:3] == ["t5", "t7", "t11" + MIRROR_SUFFIX]
    assert result.pixel_distance[0] < 1e-6 and 0 < result.pixel_distance[1] < 0.03


def test_a_blurry_average_image_is_not_called_a_copy():
    """Absolute L2 calls a smooth image a copy of every flat patch; the relative distance does not."""
    train, val = blobs(60, 0), blobs(30, 1)
    reference = build_reference(train, features(train), [f"t{i}" for i in range(60)], features)
    thresholds = fit_thresholds(reference, val, features(val), percentile=1.0, k=5)
    flat = train.float().mean(dim=0, keepdim=True).round().to(torch.uint8)
    assert not gate(flat, features(flat), reference, thresholds).memorised[0]


def test_without_flip_matching_a_mirrored_copy_is_not_matched_to_its_source():
    train = blobs(20, 0)
    reference = build_reference(train, features(train), [f"t{i}" for i in range(20)], match_flips=False)
    assert reference.views == 1 and len(reference) == 20
