"""The copy gate: exact, noised, mirrored, shifted, rotated, brightened and blurred copies are caught; a new
image and a blurry one are not, nor two film-edge patches that share a black border. Tiny synthetic images,
plus the real Herlev cells and mini-MIAS patches when ../shared/data has them."""
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


def film_edge_patches(n: int, seed: int, border_px: list[int], size: int = 32) -> torch.Tensor:
    """uint8 (n, 1, size, size) low-contrast texture (grey 120, std 8), like mammography tissue; image i has a
    black border border_px[i] px wide on its left (0: none), like a patch at the film edge."""
    g = torch.Generator().manual_seed(seed)
    x = F.avg_pool2d(torch.randn(n, 1, size + 4, size + 4, generator=g), 5, 1)
    x = to_uint8(120 + 8 * x / x.std())
    for i, width in enumerate(border_px):
        x[i, ..., :width] = 0
    return x


def test_two_patches_sharing_a_big_black_border_are_not_copies():
    """A black border over a third to half of a low-contrast patch: standardised with it, the border's step is
    nearly all of the picture, and two patches with the same border correlate whatever their tissue. The
    background is left out of the copy space, so only the tissue is compared."""
    train = film_edge_patches(60, 0, [6 + i for i in range(20)])  # 20 edge patches, each its own border width
    val = film_edge_patches(30, 1, [])
    new = film_edge_patches(10, 2, [10 + i for i in range(10)])  # new tissue, the borders of training patches 4..13
    reference = build_reference(train, features(train), [f"t{i}" for i in range(60)], features)
    thresholds = fit_thresholds(reference, val, features(val), percentile=1.0, k=5)
    result = gate(new, features(new), reference, thresholds)
    in_copy_space = (result.pixel_distance < thresholds.pixel) & (result.pixel_relative < thresholds.pixel_relative)
    assert not in_copy_space.any(), result.pixel_distance  # before the background was left out: 9 of 10
    copies = torch.cat([noised(train[4:9], 3), shifted(train[4:9], 2, -1), train[4:9].rot90(1, (-2, -1))])
    assert gate(copies, features(copies), reference, thresholds).memorised.all()  # copies of edge patches are


# ------------------------------------------------------------------ real data, gate fitted as generate fits it
def fit_real_gate(name: str, tmp_path_factory) -> tuple[dict, Callable, object, object, float]:
    """Ingest ../shared/data/<name> with presets/<name>.yaml, train the FeatureNet and fit the gate as generate
    does: (split name -> uint8 images, feature function, reference, thresholds, calibrated flag rate)."""
    from pipeline.config import dataset, load_params
    from pipeline.data.cache import load_split
    from pipeline.data.ingest import ingest_dataset
    from pipeline.generate.classifier import features_and_probabilities, load_or_train_classifier
    from pipeline.generate.config import GenerateConfig
    from pipeline.quality.features import extract_features
    from tests.conftest import REPO, shared

    shared(name)
    params = load_params(REPO / "presets" / f"{name}.yaml")
    out = tmp_path_factory.mktemp(name)
    ingest_dataset(name, dataset(params, name, f"presets/{name}.yaml"), "test-salt", out / "data", out / "ingest.json")
    cfg: GenerateConfig = params.generate
    split = {s: load_split(out / "data", s) for s in ("train", "val", "test")}
    x = {s: torch.from_numpy(split[s].images) for s in split}
    net = load_or_train_classifier(x["train"], torch.from_numpy(split["train"].labels),
                                   int(split["train"].labels.max()) + 1, cfg.classifier, None)
    embed = lambda images: extract_features(net, images)  # noqa: E731
    mem = cfg.memorisation
    reference = build_reference(x["train"], features_and_probabilities(net, x["train"])[0],
                                list(split["train"].image_ids), embed, mem.match_flips, mem.max_shift_px)
    thresholds = fit_thresholds(reference, x["val"], features_and_probabilities(net, x["val"])[0], mem.percentile,
                                mem.neighbours_k)
    return x, embed, reference, thresholds, 2 * mem.percentile / 100


def caught_per_edit(x: dict, embed: Callable, reference, thresholds, n: int = 20) -> dict[str, int]:
    """Of n edited copies of training images per edit kind, how many the gate calls memorised."""
    rs = np.random.RandomState(0)
    caught = {}
    for name, edit in EDITS.items():
        fakes = edit(x["train"][rs.choice(len(x["train"]), n, replace=False)])
        caught[name] = int(gate(fakes, embed(fakes), reference, thresholds).memorised.sum())
    return caught


@pytest.mark.realdata
def test_real_herlev_edited_copies_are_caught_and_real_cells_pass(tmp_path_factory):
    """Herlev (64 px): 20 edited copies of training images per edit kind among the fakes: >= 95 % of each kind
    are caught, and no more real validation or test images are flagged than the calibrated rate."""
    x, embed, reference, thresholds, calibrated = fit_real_gate("herlev", tmp_path_factory)
    assert thresholds.real_flag_rate <= calibrated
    assert gate(x["test"], embed(x["test"]), reference, thresholds).memorised.mean() <= calibrated
    caught = caught_per_edit(x, embed, reference, thresholds)
    assert all(n >= 19 for n in caught.values()), f"caught of 20 per edit: {caught}"


@pytest.mark.realdata
def test_real_mias_edited_copies_are_caught_and_edge_patches_pass(tmp_path_factory):
    """mini-MIAS (64 px patches of low-contrast tissue, some at the film edge with a large black border): the copy
    space flags no more real validation or held-out patches than the calibrated rate (at least one of each set:
    a 1st percentile of ~40 values is about their minimum), and >= 95 % of each edit kind are caught except
    sigma-8 noise, as strong as the faintest texture (about 90 %; before the background was left out, 7 of 20)."""
    x, embed, reference, thresholds, calibrated = fit_real_gate("mias", tmp_path_factory)
    for split in ("val", "test"):
        result = gate(x[split], embed(x[split]), reference, thresholds)
        in_copy_space = (result.pixel_distance < thresholds.pixel) & (result.pixel_relative < thresholds.pixel_relative)
        assert in_copy_space.sum() <= max(1, calibrated * len(in_copy_space)), split
    caught = caught_per_edit(x, embed, reference, thresholds)
    assert caught.pop("noise_sigma8") >= 16 and all(n >= 19 for n in caught.values()), f"of 20 per edit: {caught}"
