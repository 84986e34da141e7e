"""Distribution metrics of fakes against real images: KID, precision/recall/density/coverage, MS-SSIM diversity.

All take feature vectors (N, D) computed in the project's own feature space (``features.py``) except the
diversity, which works on pixels. Pure functions of their inputs and a seed.

- **KID** (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel
  k(x, y) = (x.y / D + 1)^3, averaged over random subsets (mean and std). MONAI's ``MMDMetric`` uses a
  linear kernel (plain dot products) on its inputs, which is not KID, so the kernel is computed here.
- **PRDC** (Naeem et al. 2020): k-NN balls around real points (radius = distance to the k-th nearest
  other real point) and around fake points; precision = fakes inside some real ball, recall = reals
  inside some fake ball, density = mean number of real balls holding a fake / k, coverage = reals whose
  ball holds a fake.
- **Diversity**: mean MS-SSIM over random pairs of images of one set (MONAI ``compute_ms_ssim``); lower
  is more diverse. At 64 px, 5 scales leave a 4 px image at the coarsest scale (MONAI refuses the default
  11 px window there), so :func:`ms_ssim_setup` keeps the finest scales at least two windows wide (3 at
  64 px: 64, 32, 16 px) with a 7 px window and Wang et al.'s weights of those scales, renormalised.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

# Wang, Simoncelli & Bovik (2003), finest scale first; MONAI's default weights.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


# ----------------------------------------------------------------------------------------------- KID
def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cubic polynomial kernel (x.y / D + 1)^3 of KID, (N, D) x (M, D) -> (N, M), float64."""
    x, y = x.double(), y.double()
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 between two samples of feature vectors (each >= 2 rows) with the cubic kernel."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"MMD needs >= 2 vectors per set, got {m} and {n}")
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    term_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    term_yy = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return float(term_xx + term_yy - 2.0 * k_xy.mean())


def kid(fake: torch.Tensor, real: torch.Tensor, n_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """KID: mean and std of :func:`mmd2_unbiased` over ``n_subsets`` random subsets of both sets.

    The subset size is capped by the smaller set; subsets are drawn without replacement.
    """
    m = min(subset_size, len(fake), len(real))
    if m < 2:
        raise ValueError(f"KID needs >= 2 vectors per set, got {len(fake)} fake and {len(real)} real")
    rs = np.random.RandomState(seed)
    values = []
    for _ in range(n_subsets):
        f = fake[torch.from_numpy(rs.choice(len(fake), m, replace=False))]
        r = real[torch.from_numpy(rs.choice(len(real), m, replace=False))]
        values.append(mmd2_unbiased(f, r))
    return float(np.mean(values)), float(np.std(values))


# ---------------------------------------------------------------------------------------------- PRDC
def kth_neighbour_radii(x: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance of each row to its k-th nearest other row (N,); rows in chunks, so memory stays O(chunk x N)."""
    x = x.double()
    parts = [torch.cdist(x[s:s + chunk], x).kthvalue(k + 1, dim=1).values  # +1: the point itself is at 0
             for s in range(0, len(x), chunk)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` (Naeem et al. 2020).

    ``k`` is lowered to ``min(k, len(real) - 1, len(fake) - 1)`` (returned as ``k``) for tiny sets.
    """
    k = min(k, len(real) - 1, len(fake) - 1)
    if k < 1:
        raise ValueError(f"PRDC needs >= 2 vectors per set, got {len(real)} real and {len(fake)} fake")
    real_r, fake_r = kth_neighbour_radii(real, k), kth_neighbour_radii(fake, k)
    d = torch.cdist(real.double(), fake.double())  # (R, F)
    inside_real = d < real_r[:, None]  # fake j inside the ball of real i
    return {
        "precision": float(inside_real.any(dim=0).double().mean()),
        "recall": float((d < fake_r[None, :]).any(dim=1).double().mean()),
        "density": float(inside_real.sum(dim=0).double().mean() / k),
        "coverage": float((d.min(dim=1).values < real_r).double().mean()),
        "k": k,
    }


# ------------------------------------------------------------------------------------------ MS-SSIM
def ms_ssim_setup(resolution_px: int, kernel_px: int = 7, max_scales: int = 3) -> tuple[int, tuple[float, ...]]:
    """Kernel size and scale weights that fit ``resolution_px``.

    The coarsest scale (resolution / 2^(scales-1)) must be at least two windows wide, so its SSIM
    averages over a few windows (MONAI only asks for one): 3 scales at 64 px with a 7 px window. The
    finest scales that fit are kept, with Wang et al.'s weights of those scales renormalised. Falls back
    to a smaller odd window when even one scale does not fit (tiny test images).
    """
    kernel = kernel_px
    while kernel >= 3:
        for scales in range(min(max_scales, len(MS_SSIM_WEIGHTS)), 0, -1):
            if resolution_px // 2 ** (scales - 1) >= 2 * kernel:
                w = MS_SSIM_WEIGHTS[:scales]
                return kernel, tuple(float(v) / sum(w) for v in w)
        kernel -= 2
    raise ValueError(f"{resolution_px} px images are too small for SSIM with a 3 px window")


def pairwise_ms_ssim(images: torch.Tensor, n_pairs: int = 500, seed: int = 0, kernel_px: int = 7,
                     max_scales: int = 3, batch_size: int = 256) -> float | None:
    """Mean MS-SSIM over random distinct pairs of ``images`` (uint8 (N, C, H, W)); all pairs when few.

    ``None`` for fewer than 2 images. Lower means a more diverse set (1 = all images identical).
    """
    from monai.metrics.regression import compute_ms_ssim  # importing monai takes seconds: only when used

    n = len(images)
    if n < 2:
        return None
    all_pairs = n * (n - 1) // 2
    if all_pairs <= n_pairs:
        i, j = torch.triu_indices(n, n, offset=1)
    else:
        rs = np.random.RandomState(seed)
        i = torch.from_numpy(rs.randint(0, n, size=n_pairs))
        j = torch.from_numpy((i.numpy() + rs.randint(1, n, size=n_pairs)) % n)  # never equal to i
    kernel, weights = ms_ssim_setup(images.shape[-1], kernel_px, max_scales)
    x = images.float() / 255.0
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for s in range(0, len(i), batch_size):
            a, b = x[i[s:s + batch_size]], x[j[s:s + batch_size]]
            values.append(compute_ms_ssim(a, b, spatial_dims=2, data_range=1.0, kernel_size=kernel,
                                          weights=weights).flatten())
    return float(torch.cat(values).double().mean())
