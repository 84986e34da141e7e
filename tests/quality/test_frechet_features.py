"""Frechet distance and the in-project feature space used by the GAN collapse watch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.quality.features import (extract_features, load_or_train_feature_net, mean_pairwise_distance,
                                       train_feature_net)
from pipeline.quality.frechet import frechet_distance


def test_frechet_zero_for_itself_and_grows_with_shift():
    torch.manual_seed(0)
    a = torch.randn(200, 8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifts = [frechet_distance(a, a + s) for s in (0.1, 0.5, 1.0)]
    assert shifts[0] < shifts[1] < shifts[2]
    assert shifts[2] == pytest.approx(8.0, rel=1e-3)  # a pure mean shift of 1 in 8 dimensions


def test_frechet_agrees_with_monai_fid_metric():
    from monai.metrics import FIDMetric

    torch.manual_seed(1)
    a, b = torch.randn(300, 6), torch.randn(250, 6) * 1.5 + 0.3
    assert frechet_distance(a, b) == pytest.approx(float(FIDMetric()(a, b)), rel=1e-4)


def test_frechet_small_sets_are_finite_and_few_points_rejected():
    torch.manual_seed(2)
    assert np.isfinite(frechet_distance(torch.randn(5, 32), torch.randn(7, 32)))  # singular covariances
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(torch.randn(1, 4), torch.randn(5, 4))


def test_mean_pairwise_distance():
    assert mean_pairwise_distance(torch.ones(5, 3)) == 0.0
    assert mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)


def _two_classes(n=48):
    g = torch.Generator().manual_seed(0)
    dark = torch.randint(0, 60, (n, 1, 16, 16), generator=g, dtype=torch.uint8)
    bright = torch.randint(150, 255, (n, 1, 16, 16), generator=g, dtype=torch.uint8)
    return torch.cat([dark, bright]), torch.cat([torch.zeros(n), torch.ones(n)]).long()


def test_feature_net_learns_and_keeps_the_callers_rng():
    torch.set_num_threads(1)
    images, labels = _two_classes()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    net = train_feature_net(images, labels, 2, feature_dim=8, epochs=3, seed=0)
    assert torch.equal(torch.get_rng_state(), before)
    with torch.no_grad():
        from pipeline.quality.features import to_signed_unit

        accuracy = (net(to_signed_unit(images)).argmax(1) == labels).float().mean()
    assert accuracy > 0.9
    feats = extract_features(net, images)
    assert feats.shape == (len(images), 8)


def test_feature_net_cache(tmp_path):
    torch.set_num_threads(1)
    images, labels = _two_classes(16)
    path = tmp_path / "features.pt"
    a = load_or_train_feature_net(path, images, labels, 2, feature_dim=4, epochs=1, seed=0)
    assert path.is_file()
    before = torch.get_rng_state()
    b = load_or_train_feature_net(path, images, labels, 2, feature_dim=4, epochs=1, seed=0)
    assert torch.equal(torch.get_rng_state(), before)  # loading does not draw from the RNG either
    assert torch.equal(extract_features(a, images), extract_features(b, images))
    key = torch.load(path, weights_only=True)["key"]
    load_or_train_feature_net(path, images[:-2], labels[:-2], 2, feature_dim=4, epochs=1, seed=0)
    assert torch.load(path, weights_only=True)["key"]["data"] != key["data"]  # other data: trained again
