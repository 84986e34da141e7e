"""Memorisation gate: is a synthetic image a copy of one training image?

For each fake, its nearest real training images are found twice: in the learned feature space
(Euclidean) and in pixel space (RMS difference of [0, 1] pixels: L2 / sqrt(number of values), so the
scale does not depend on resolution or channels). With ``match_flips`` each training image is also
compared mirrored (a mirrored copy is a copy); an image and its mirror count as one neighbour.

Two statistics per space, both calibrated on real images that are certainly not copies, the
validation images (other patients) against the training images:

- d, the nearest distance: a copy is closer to a training image than fresh real images are;
- r = d / mean distance of the k nearest training images (Carlini et al. 2023, "Extracting training data
  from diffusion models"): a copy is close to ONE training image, not to many.

In a space, a fake is flagged when d AND r are both below the ``percentile``-th percentile of the
validation images' d and r; it is memorised when flagged in feature space OR in pixel space. Either test
alone misfires on GAN output: d alone calls a smooth, blurry or flat fake a copy of every flat patch
(seen on a collapsed generator: every fake "memorised"), r alone calls a clean, centred fake a copy when
real images happen to be about equally far from their five nearest (r of real images lies in a narrow
band near 1). An exact or lightly noised copy passes both tests by a wide margin. A fresh real image is
flagged with probability at most about 2 x percentile / 100 (measured: ``real_flag_rate``). A fake within
half a grey level (RMS) of a training image is a copy whatever the statistics say.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

EXACT_COPY_RMS = 0.5 / 255  # at most half a grey level RMS away: an exact copy (after 8-bit quantisation)
MIRROR_SUFFIX = "#mirror"


def pixel_vectors(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (N, C*H*W) in [0, 1]."""
    return images.reshape(len(images), -1).float() / 255.0


@dataclass
class RealReference:
    """The training images a fake is compared with, in ``views`` orientations stacked view-major."""

    features: torch.Tensor  # (views * M, D) float64
    pixels: torch.Tensor  # (views * M, C*H*W) in [0, 1]
    ids: list[str]  # (M,) training image ids
    views: int  # 1, or 2 with mirrored copies

    def __len__(self) -> int:
        return len(self.ids)


def build_reference(images: torch.Tensor, features: torch.Tensor, ids: list[str],
                    feature_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    match_flips: bool = True) -> RealReference:
    """Reference set from uint8 training images and their features; ``feature_fn`` embeds the mirrors."""
    ids = [str(i) for i in ids]
    if not match_flips:
        return RealReference(features.double(), pixel_vectors(images), ids, 1)
    mirrored = images.flip(-1)
    mirror_features = feature_fn(mirrored) if feature_fn is not None else features
    return RealReference(torch.cat([features, mirror_features]).double(),
                         torch.cat([pixel_vectors(images), pixel_vectors(mirrored)]), ids, 2)


@dataclass
class Neighbours:
    distance: torch.Tensor  # (N,) to the nearest training image
    relative: torch.Tensor  # (N,) nearest distance / mean distance of the k nearest images
    index: torch.Tensor  # (N,) that image's index in the reference
    mirrored: torch.Tensor  # (N,) bool: nearest in its mirrored view


def neighbours(query: torch.Tensor, views: torch.Tensor, n_views: int, k: int, rms: bool = False,
               chunk: int = 512) -> Neighbours:
    """Nearest and k-nearest distances of ``query`` rows to images given as ``n_views`` stacked views."""
    if n_views < 1 or len(views) % n_views:
        raise ValueError(f"{len(views)} reference rows do not split into {n_views} views")
    n_ref = len(views) // n_views
    k = max(1, min(k, n_ref))
    ref = views.double()
    scale = 1.0 / np.sqrt(views.shape[1]) if rms else 1.0
    parts = []
    for s in range(0, len(query), chunk):
        d = torch.cdist(query[s:s + chunk].double(), ref).view(-1, n_views, n_ref) * scale
        best, view = d.min(dim=1)  # an image and its mirror are one neighbour
        top = best.topk(k, dim=1, largest=False)
        nearest_idx = top.indices[:, 0]
        parts.append((top.values, nearest_idx, view.gather(1, nearest_idx[:, None])[:, 0] > 0))
    if not parts:
        empty = torch.zeros(0, dtype=torch.float64)
        return Neighbours(empty, empty, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool))
    values = torch.cat([p[0] for p in parts])
    d1 = values[:, 0]
    return Neighbours(d1, d1 / values.mean(dim=1).clamp(min=1e-12), torch.cat([p[1] for p in parts]),
                      torch.cat([p[2] for p in parts]))


@dataclass
class Thresholds:
    feature: float  # nearest distance in feature space
    pixel: float  # nearest RMS distance in pixel space
    feature_relative: float  # relative nearest distance r in feature space
    pixel_relative: float  # relative nearest distance r in pixel space
    percentile: float
    k: int
    n_real: int  # validation images the thresholds come from
    real_flag_rate: float  # fraction of those validation images the gate itself flags

    def as_dict(self) -> dict:
        return {"feature_threshold": self.feature, "pixel_threshold_rms": self.pixel,
                "relative_feature_threshold": self.feature_relative, "relative_pixel_threshold": self.pixel_relative,
                "percentile": self.percentile, "k": self.k, "n_real_reference": self.n_real,
                "real_val_flag_rate": self.real_flag_rate}


def _memorised(nf: Neighbours, npx: Neighbours, t: Thresholds) -> torch.Tensor:
    in_features = (nf.distance < t.feature) & (nf.relative < t.feature_relative)
    in_pixels = (npx.distance < t.pixel) & (npx.relative < t.pixel_relative)
    return in_features | in_pixels | (npx.distance <= EXACT_COPY_RMS)


def fit_thresholds(reference: RealReference, val_images: torch.Tensor, val_features: torch.Tensor,
                   percentile: float, k: int = 5) -> Thresholds:
    """Percentiles of the validation images' nearest and relative nearest distances to the training images."""
    if len(val_images) == 0:
        raise ValueError("the memorisation gate needs validation images for its thresholds")
    nf = neighbours(val_features, reference.features, reference.views, k)
    npx = neighbours(pixel_vectors(val_images), reference.pixels, reference.views, k, rms=True)

    def pct(values: torch.Tensor) -> float:
        return float(np.percentile(values.numpy(), percentile))

    t = Thresholds(pct(nf.distance), pct(npx.distance), pct(nf.relative), pct(npx.relative), percentile,
                   max(1, min(k, len(reference))), len(val_images), 0.0)
    t.real_flag_rate = float(_memorised(nf, npx, t).double().mean())
    return t


@dataclass
class GateResult:
    memorised: np.ndarray  # bool (N,)
    feature_distance: np.ndarray  # (N,) to the nearest training image in feature space
    pixel_distance: np.ndarray  # (N,) RMS on [0, 1] pixels to the nearest training image
    feature_relative: np.ndarray  # (N,) nearest / mean of the k nearest, in feature space
    pixel_relative: np.ndarray
    feature_nn_id: list[str]
    pixel_nn_id: list[str]
    nn_real_id: list[str]  # of the more suspicious space: smaller (d / threshold) x (r / threshold)


def gate(images: torch.Tensor, features: torch.Tensor, reference: RealReference, thresholds: Thresholds) -> GateResult:
    """Nearest training images of fakes (uint8 images and their features) and the memorised verdicts."""
    t = thresholds
    nf = neighbours(features, reference.features, reference.views, t.k)
    npx = neighbours(pixel_vectors(images), reference.pixels, reference.views, t.k, rms=True)
    memorised = _memorised(nf, npx, t).numpy()

    def ids(nb: Neighbours) -> list[str]:
        return [reference.ids[i] + (MIRROR_SUFFIX if m else "") for i, m in zip(nb.index.tolist(), nb.mirrored.tolist())]

    feat_ids, pix_ids = ids(nf), ids(npx)
    eps = 1e-12
    score_f = (nf.distance / max(t.feature, eps) * nf.relative / max(t.feature_relative, eps)).tolist()
    score_p = (npx.distance / max(t.pixel, eps) * npx.relative / max(t.pixel_relative, eps)).tolist()
    nn_ids = [p if sp <= sf else f for f, p, sf, sp in zip(feat_ids, pix_ids, score_f, score_p)]
    return GateResult(memorised, nf.distance.numpy(), npx.distance.numpy(), nf.relative.numpy(),
                      npx.relative.numpy(), feat_ids, pix_ids, nn_ids)
