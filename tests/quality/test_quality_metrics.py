"""Frechet distance, KID, PRDC and MS-SSIM diversity on tiny synthetic feature sets and images."""
from __future__ import annotations

import pytest
import torch

from pipeline.quality.frechet import frechet_distance
from pipeline.quality.metrics import kid, mmd2_unbiased, ms_ssim_setup, pairwise_ms_ssim, prdc


@pytest.fixture
def feats():
    return torch.randn(200, 8, generator=torch.Generator().manual_seed(0))


def test_frechet_of_a_set_with_itself_is_zero_and_grows_with_noise(feats):
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)
    gen = torch.Generator().manual_seed(1)
    noisy = [frechet_distance(feats, feats + s * torch.randn(feats.shape, generator=gen)) for s in (0.3, 1.0, 3.0)]
    assert 0 < noisy[0] < noisy[1] < noisy[2]


def test_kid_of_a_set_against_itself_is_about_zero(feats):
    same, same_std = kid(feats, feats, n_subsets=20, subset_size=100, seed=0)
    shifted, _ = kid(feats + 1.0, feats, n_subsets=20, subset_size=100, seed=0)
    assert abs(same) < 0.05 * shifted and same_std >= 0
    assert shifted > 0


def test_mmd_is_unbiased_for_two_samples_of_one_distribution():
    gen = torch.Generator().manual_seed(2)
    values = [mmd2_unbiased(torch.randn(50, 4, generator=gen), torch.randn(50, 4, generator=gen)) for _ in range(40)]
    assert abs(sum(values) / len(values)) < 0.02  # a biased MMD^2 would be clearly positive


def test_prdc_of_identical_sets_is_one_and_of_far_sets_zero(feats):
    same = prdc(feats, feats, k=5)
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    assert same["density"] == pytest.approx(1.0, abs=0.3)
    far = prdc(feats, feats + 100.0, k=5)
    assert far["precision"] == 0.0 and far["recall"] == 0.0 and far["coverage"] == 0.0 and far["density"] == 0.0


def test_prdc_lowers_k_for_tiny_sets(feats):
    assert prdc(feats[:3], feats[3:6], k=5)["k"] == 2


def test_ms_ssim_setup_fits_the_resolution():
    kernel, weights = ms_ssim_setup(64, 7, 3)
    assert kernel == 7 and len(weights) == 3 and sum(weights) == pytest.approx(1.0)
    assert len(ms_ssim_setup(64, 7, 5)[1]) == 3  # 64 / 8 = 8 px is narrower than two 7 px windows
    assert len(ms_ssim_setup(32, 7, 3)[1]) == 2
    assert ms_ssim_setup(8, 7, 3) == (3, (1.0,))  # a smaller window when even one scale does not fit


def test_diversity_is_one_for_copies_and_lower_for_different_images():
    gen = torch.Generator().manual_seed(3)
    base = torch.randint(0, 256, (1, 1, 64, 64), generator=gen, dtype=torch.uint8)
    copies = base.repeat(6, 1, 1, 1)
    different = torch.randint(0, 256, (6, 1, 64, 64), generator=gen, dtype=torch.uint8)
    assert pairwise_ms_ssim(copies, n_pairs=10) == pytest.approx(1.0, abs=1e-4)
    assert pairwise_ms_ssim(different, n_pairs=10) < 0.5
    assert pairwise_ms_ssim(different[:1]) is None
