"""The k-NN ball realism test on synthetic feature clusters and tiny images: calibration, verdicts, edge cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.quality.metrics import kth_neighbour_radii
from pipeline.quality.realism import calibrated_scale, fit_realism, image_statistics

DIM = 8


def clusters(counts: tuple[int, ...], seed: int, shift: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian features, class c centred at c x ``shift`` on every axis, and their labels."""
    gen = torch.Generator().manual_seed(seed)
    feats = [torch.randn(n, DIM, generator=gen) + c * shift for c, n in enumerate(counts)]
    labels = [torch.full((n,), c, dtype=torch.long) for c, n in enumerate(counts)]
    return torch.cat(feats), torch.cat(labels)


def no_images(n: int) -> torch.Tensor:
    return torch.zeros(n, 1, 8, 8, dtype=torch.uint8)  # the classifier space does not look at pixels


def fit(train: tuple, val: tuple, **kw):
    (tf, ty), (vf, vy) = train, val
    return fit_realism(no_images(len(tf)), tf, ty, no_images(len(vf)), vf, vy, int(ty.max()) + 1,
                       kw.pop("spaces", ["classifier"]), **kw)


def test_calibrated_scale_is_the_smallest_that_lets_the_target_share_in():
    s = torch.tensor([3.0, 0.5, 2.0, 1.2, 1.5], dtype=torch.float64)
    assert calibrated_scale(s, 0.8) == 2.0  # 4 of 5 at <= 2.0
    assert calibrated_scale(s, 0.5) == 1.5  # 3 of 5 (at least half)
    assert calibrated_scale(s, 1.0) == 3.0
    assert calibrated_scale(torch.tensor([0.2, 0.9], dtype=torch.float64), 0.95) == 1.0  # never below 1
    assert calibrated_scale(torch.zeros(0, dtype=torch.float64), 0.95) == 1.0


def test_fresh_points_pass_at_about_the_target_and_other_classes_and_outliers_do_not():
    train, val, test = clusters((200, 200), 0), clusters((100, 100), 1), clusters((1000, 1000), 2)
    rt = fit(train, val, k=3, val_pass=0.9)
    per = rt.as_dict(["a", "b"])["per_class"]
    for c, name in enumerate("ab"):
        cal = per[name]
        assert cal["scale"] > 1.0 and cal["scale_from"] == "class" and cal["n_val"] == 100 and cal["k"] == 3
        assert cal["real_val_pass_rate"] == pytest.approx(0.9, abs=0.011)  # exactly the target, up to ties
        mine, others = test[0][test[1] == c], test[0][test[1] != c]
        assert rt.realistic(no_images(len(mine)), mine, c).mean() == pytest.approx(0.9, abs=0.05)
        assert not rt.realistic(no_images(len(others)), others, c).any()
        far = torch.full((5, DIM), 100.0)
        assert not rt.realistic(no_images(5), far, c).any()
    uncalibrated = fit(train, val, k=3, val_pass=0.5)  # a lower target: smaller balls, fewer pass
    assert uncalibrated.scale(0) < rt.scale(0)


def test_every_space_must_pass():
    """A flat image with the features of a real image is inside the classifier balls, not the image ones."""
    gen = torch.Generator().manual_seed(0)
    textured = (torch.rand(60, 1, 16, 16, generator=gen) * 200 + 20).to(torch.uint8)
    feats, labels = torch.randn(60, DIM, generator=gen), torch.zeros(60, dtype=torch.long)
    rt = fit_realism(textured[:40], feats[:40], labels[:40], textured[40:], feats[40:], labels[40:], 1,
                     ["classifier", "image_stats"], k=3, val_pass=0.9)
    flat = torch.full((3, 1, 16, 16), 120, dtype=torch.uint8)
    each = rt.entry_scales(flat, feats[:3], 0, per_space=True)
    assert (each["classifier"] == 0).all() and (each["image_stats"] > 10 * rt.scale(0)).all()
    assert not rt.realistic(flat, feats[:3], 0).any()
    assert rt.realistic(textured[:3], feats[:3], 0).all()  # training images are their own balls' centres
    cal = rt.as_dict(["only"])["per_class"]["only"]
    assert set(cal["real_val_pass_rate_per_space"]) == {"classifier", "image_stats"}
    assert cal["real_val_pass_rate"] <= min(cal["real_val_pass_rate_per_space"].values())


def test_a_class_with_few_validation_images_takes_the_scale_of_all_classes():
    train, (vf, vy) = clusters((100, 100), 0), clusters((60, 60), 1)
    keep = torch.cat([torch.arange(60), torch.arange(60, 63)])  # class 1: 3 validation images
    rt = fit(train, (vf[keep], vy[keep]), k=3, val_pass=0.9, min_val_images=10)
    per = rt.as_dict(["a", "b"])
    assert per["per_class"]["b"]["scale_from"] == "all classes" and per["per_class"]["b"]["n_val"] == 3
    assert rt.scale(1) == per["global_scale"] and per["per_class"]["a"]["scale_from"] == "class"


def test_a_class_with_one_training_image_is_not_tested_and_k_shrinks_for_small_classes():
    (tf, ty), val = clusters((50, 1, 3), 0), clusters((20, 5, 5), 1)
    rt = fit((tf, ty), val, k=5)
    per = rt.as_dict(["a", "b", "c"])["per_class"]
    assert per["b"] == {"tested": False, "why": "1 training image(s): a k-NN ball needs >= 2"}
    assert rt.scale(1) == math.inf and rt.realistic(no_images(2), torch.full((2, DIM), 1e6), 1).all()
    assert per["c"]["k"] == 2 and per["a"]["k"] == 5


def test_unknown_space_is_refused():
    with pytest.raises(ValueError, match="realism spaces.*use one or more of"):
        fit(clusters((5,), 0), clusters((5,), 1), spaces=["inception"])


def test_image_statistics_see_flatness_and_texture():
    flat = torch.full((2, 3, 32, 32), 90, dtype=torch.uint8)
    stats = image_statistics(flat)
    assert stats.shape == (2, 3 * 8) and stats.dtype == torch.float64
    assert torch.allclose(stats[:, :3], torch.full((2, 3), 90 / 255, dtype=torch.float64))  # means
    assert (stats[:, 3:6] == 0).all() and (stats[:, 12:] == 0).all()  # no spread, no gradient at any scale
    checker = torch.from_numpy(((np.indices((32, 32)).sum(0) % 2) * 255).astype(np.uint8)).expand(1, 3, 32, 32)
    assert (image_statistics(checker)[0, 12:15] == 1.0).all()  # full-scale gradient at 1 px
    assert image_statistics(torch.zeros(1, 1, 4, 4, dtype=torch.uint8)).shape == (1, 8)  # too small for 8 px
    assert image_statistics(torch.zeros(0, 1, 8, 8, dtype=torch.uint8)).shape == (0, 8)


def test_kth_neighbour_radii_in_chunks_equal_the_whole_matrix():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    whole = torch.cdist(x.double(), x.double()).kthvalue(4, dim=1).values
    assert torch.equal(kth_neighbour_radii(x, 3, chunk=7), whole)
