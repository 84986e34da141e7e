"""Frechet distance between two sets of feature vectors (FID without Inception: the features are ours).

The same computation as MONAI's ``FIDMetric`` (``monai.metrics.fid.compute_frechet_distance``; a test
checks they agree), written on scipy because importing monai costs 5-7 s per process, which the GAN
stage would pay just for this formula. Adds a small ridge to both covariances: the sets here are
small (a few dozen images per class, fewer than feature dimensions), so the estimates are singular.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import linalg

RIDGE = 1e-6  # added to the covariance diagonals; negligible against real feature variances


def mean_and_cov(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) in float64 of ``features`` (N, D), N >= 2."""
    x = features.detach().double().cpu().numpy()
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need (N >= 2, D) features, got shape {tuple(x.shape)}")
    mu = x.mean(axis=0)
    xc = x - mu
    return mu, xc.T @ xc / (x.shape[0] - 1) + RIDGE * np.eye(x.shape[1])


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)); 0 for identical sets, >= 0 always."""
    mu_a, cov_a = mean_and_cov(features_a)
    mu_b, cov_b = mean_and_cov(features_b)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if np.iscomplexobj(covmean):  # rounding can leave a tiny imaginary part
        covmean = covmean.real
    diff = mu_a - mu_b
    fd = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean)
    return max(0.0, float(fd))
