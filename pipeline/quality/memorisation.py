"""Memorisation gate: is a synthetic image a copy, or a lightly edited copy, of one training image?

For each fake, its nearest real training images are found twice:

- in the learned feature space (Euclidean); with ``match_flips`` each training image is also seen mirrored;
- in a copy space made for copy detection. Both images are reduced to luminance, average-pooled to at most
  ``COMPARE_MAX_PX`` px, low-passed and standardised (zero mean, unit variance); the distance is the RMS of
  their difference, minimised over the 8 flips and rotations of the training image (with ``match_flips``)
  and over shifts of the fake by up to ``max_shift_px`` (on two pooling grids, so that a shift of half a
  copy-space px is matched too). A generator trained with translation augmentation can emit a training
  image moved by a few pixels, and one can emit it turned, brighter or softened: each edit leaves the
  standardised low-pass image of the copy close to its source, while another cell stays far. For
  standardised images the squared RMS difference is 2 (1 - rho), with rho the normalised cross-correlation
  (the template-matching score), so matrix products score every view and shift: first of all training
  images with crops pooled ``COARSE_POOL`` x, then in full for the ``SHORTLIST`` best.
  The (near-)black background, the film border or padding at the image edge, is left out of both images
  and the correlation is taken over the px that are foreground in both (masked normalised cross-correlation,
  six matrix products instead of one): standardised with it, a large black border dominates the picture, so
  that any two edge patches of mini-MIAS looked alike. Where neither image has background this is the plain
  correlation of the standardised images.

Two statistics per space, both calibrated on real images that are certainly not copies, the
validation images (other patients) against the training images:

- d, the nearest distance: a copy is closer to a training image than fresh real images are;
- r = d / mean distance of the k nearest training images (Carlini et al. 2023, "Extracting training data
  from diffusion models"): a copy is close to ONE training image, not to many.

In a space, a fake is flagged when d AND r are both below the ``percentile``-th percentile of the
validation images' d and r; it is memorised when flagged in feature space OR in copy space. Either test
alone misfires on GAN output: d alone calls a smooth, blurry or flat fake a copy of every flat patch
(seen on a collapsed generator: every fake "memorised"), r alone calls a clean, centred fake a copy when
real images happen to be about equally far from their five nearest (r of real images lies in a narrow
band near 1). A fresh real image is flagged with probability at most about 2 x percentile / 100
(measured: ``real_flag_rate``). A fake within half a grey level (RMS, all channels, full resolution) of
a view of a training image is a copy whatever the statistics say.

Measured with generate's thresholds (percentile 1, k 5, its FeatureNet), every training image edited once per
edit kind: on Herlev (64 px, 490) and the phantom mammograms (32 px, 162) all exact, noised (sigma 3 and 8 grey
levels), mirrored, shifted (2 and 4 px), rotated (90 degrees), 10 % brighter and 3x3 mean-blurred copies are
caught but one brighter phantom; on the phantom cells (32 px, 323) all but one brighter and one blurred copy.
Real images flagged: 0 of 82 Herlev validation and 2 of 144 test images, 1 of 30 and 2 of 48 phantom
mammograms, 1 of 57 and 0 of 95 phantom cells. On mini-MIAS (64 px, 224): all exact, mirrored, 2 px shifted
and rotated copies, 221 sigma-3 and 200 sigma-8 noised, 222 4 px shifted, 223 brighter and 219 blurred ones;
0 of 37 validation and 2 of 65 test patches flagged, both in feature space. Known weak spot: the faintest
mini-MIAS texture, where sigma-8 noise is as strong as the texture itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.names import MIRROR_SUFFIX

EXACT_COPY_RMS = 0.5 / 255  # at most half a grey level RMS away: an exact copy (after 8-bit quantisation)
COMPARE_MAX_PX = 32  # copy space: images are average-pooled by an integer factor to at most this size
# Gaussian low-pass in copy-space px: a 3x3 blur or noise then moves a copy far less than the gap between two
# different images. Sigma-8 noised copies of all 224 mini-MIAS training patches caught (background left out):
# 179 at 0.6, 200 at 0.8, 203 at 1.0, where 3x3-blurred ones fall from 221 to 216 and validation flags appear.
LOW_PASS_SIGMA_PX = 0.8
# Background: a pixel whose 3x3 mean is at most this many grey levels (film border, padding at the image edge),
# grown by BACKGROUND_GROW_PX so that the step into it is left out too. It takes no part in the correlation:
# two different patches sharing a big black border are compared on their tissue only.
BACKGROUND_MAX_GREY = 8
BACKGROUND_GROW_PX = 1
MIN_OVERLAP = 0.25  # a view and shift where fewer copy-space px are foreground in both images does not count
COARSE_POOL = 2  # the shortlist compares every view and shift of every training image with crops pooled this much
SHORTLIST = 16  # training images per fake (at least 2 k) then compared in full
COPY_CHUNK_VALUES = 2 ** 25  # correlations held at once when scoring (128 MB of float32)

DIHEDRAL: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {  # view name -> view of (..., H, W) images
    "identity": lambda x: x,
    "mirror": lambda x: x.flip(-1),
    "rot90": lambda x: x.rot90(1, (-2, -1)),
    "rot180": lambda x: x.rot90(2, (-2, -1)),
    "rot270": lambda x: x.rot90(3, (-2, -1)),
    "mirror_rot90": lambda x: x.flip(-1).rot90(1, (-2, -1)),
    "mirror_rot180": lambda x: x.flip(-1).rot90(2, (-2, -1)),
    "mirror_rot270": lambda x: x.flip(-1).rot90(3, (-2, -1)),
}
RECTANGLE_VIEWS = ("identity", "mirror", "rot180", "mirror_rot180")  # the symmetries of a non-square image


def view_names(height: int, width: int, match_flips: bool) -> tuple[str, ...]:
    """The views of each training image a fake is compared with; identity first, mirror second."""
    if not match_flips:
        return ("identity",)
    return tuple(DIHEDRAL) if height == width else RECTANGLE_VIEWS


def _low_pass(x: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W), edges replicated; sums of shifted slices, so the result of
    an image does not depend on the batch it is in (an exact copy is then at distance exactly 0)."""
    radius = max(1, math.ceil(2.5 * sigma_px))
    taps = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float64) ** 2 / (2 * sigma_px ** 2))
    taps = (taps / taps.sum()).tolist()
    h, w = x.shape[-2:]
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = sum(t * x[..., :, i:i + w] for i, t in enumerate(taps))
    return sum(t * x[..., i:i + h, :] for i, t in enumerate(taps))


def foreground(luminance: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luminance in [0, 1] -> float 0/1 mask, 0 on the (near-)black background and next to it."""
    local = F.avg_pool2d(F.pad(luminance, (1, 1, 1, 1), mode="replicate"), 3, 1)
    background = (local <= BACKGROUND_MAX_GREY / 255).float()
    if BACKGROUND_GROW_PX > 0:
        background = F.max_pool2d(background, 2 * BACKGROUND_GROW_PX + 1, 1, BACKGROUND_GROW_PX)
    return 1 - background


def copy_space(images: torch.Tensor, factor: int,
               phase: tuple[int, int] = (0, 0)) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, C, H, W) -> float32 (N, 1, H // factor, W // factor) twice: luminance of the foreground,
    average-pooled and low-passed (normalised convolution: the background does not bleed in), and the mask of
    copy-space px that are mostly foreground. ``phase`` (down, right) image px < factor: the pooling grid
    starts there (edges repeated)."""
    x = images.float().mean(dim=1, keepdim=True) / 255
    weight = foreground(x)
    if any(phase):
        x, weight = (F.pad(t[..., phase[0]:, phase[1]:], (0, phase[1], 0, phase[0]), mode="replicate")
                     for t in (x, weight))
    x = x * weight
    if factor > 1:
        x, weight = F.avg_pool2d(x, factor), F.avg_pool2d(weight, factor)
    mask = (weight >= 0.5).float()
    if LOW_PASS_SIGMA_PX > 0:
        x, weight = _low_pass(x, LOW_PASS_SIGMA_PX), _low_pass(weight, LOW_PASS_SIGMA_PX)
    return torch.where(weight > 1e-6, x / weight.clamp(min=1e-6), 0.0) * mask, mask


def centred(v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Rows minus their mean over the mask, 0 outside it."""
    mean = (v * mask).sum(dim=-1, keepdim=True) / mask.sum(dim=-1, keepdim=True).clamp(min=1)
    return (v - mean) * mask


def masked_correlation(a: torch.Tensor, mask_a: torch.Tensor, b: torch.Tensor, mask_b: torch.Tensor) -> torch.Tensor:
    """Normalised cross-correlation over the px foreground in both: (n, S, P) rows of ``a`` (centred, 0 off
    its mask) with (n, P, C) columns of ``b`` -> (n, S, C). Where masks are all ones this is the plain
    correlation of standardised rows; where the overlap is under MIN_OVERLAP of P, or a row is flat there, 0."""
    overlap = torch.bmm(mask_a, mask_b)
    n = overlap.clamp(min=1)
    sum_a, sum_b = torch.bmm(a, mask_b), torch.bmm(mask_a, b)
    cov = torch.bmm(a, b) - sum_a * sum_b / n
    var_a = (torch.bmm(a * a, mask_b) - sum_a ** 2 / n).clamp(min=0)
    var_b = (torch.bmm(mask_a, b * b) - sum_b ** 2 / n).clamp(min=0)
    norm = (var_a * var_b).sqrt()
    ok = (overlap >= MIN_OVERLAP * a.shape[-1]) & (norm > 1e-12)
    return torch.where(ok, cov / norm.clamp(min=1e-12), 0.0).clamp(-1, 1)


def standardise(v: torch.Tensor) -> torch.Tensor:
    """Rows minus their mean, divided by their norm: the dot product of two rows is their correlation.
    A flat row becomes 0 (correlation 0 with everything, never a copy)."""
    v = v - v.mean(dim=1, keepdim=True)
    return v / v.norm(dim=1, keepdim=True).clamp(min=1e-8)


@dataclass
class RealReference:
    """The training images a fake is compared with, in each space."""

    features: torch.Tensor  # (feature_views * M, D) float64, view-major: identity, then mirrored
    feature_views: int  # 1, or 2 with mirrored copies
    crops: torch.Tensor  # (len(views) * M, h * w) float32: central crops of the copy-space views, centred
    masks: torch.Tensor  # (len(views) * M, h * w) float32 0/1: their foreground
    coarse_crops: torch.Tensor  # (len(views) * M, h * w / COARSE_POOL^2) the same crops pooled: the shortlist
    views: tuple[str, ...]  # names in DIHEDRAL of the copy-space views, view-major in ``crops``
    images: torch.Tensor  # (M, C, H, W) uint8: the exact-copy check
    ids: list[str]  # (M,) training image ids
    factor: int  # one copy-space px is factor x factor image px
    margin: int  # shifts searched: up to this many copy-space px each way

    def __len__(self) -> int:
        return len(self.ids)


def _windows(low: torch.Tensor, margin: int) -> torch.Tensor:
    """(n, (2 margin + 1)^2, crop) windows of copy-space images, offsets (0..2 margin, 0..2 margin) row-major."""
    h, w = low.shape[-2:]
    return low.unfold(2, h - 2 * margin, 1).unfold(3, w - 2 * margin, 1).reshape(len(low), (2 * margin + 1) ** 2, -1)


def _phases(factor: int) -> list[tuple[int, int]]:
    """Pooling grids tried for a fake: a shift of half a copy-space px (an odd shift at 64 px) is then
    matched on the grid that undoes it, not only tolerated by the low-pass."""
    step = max(1, factor // 2)
    return [(py, px) for py in range(0, factor, step) for px in range(0, factor, step)]


def _pooled(windows: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(..., h * w) centred crops (0 on the background) -> (rows, h // COARSE_POOL * w // COARSE_POOL)
    standardised, for the shortlist."""
    x = F.avg_pool2d(windows.reshape(-1, 1, *size), COARSE_POOL)
    return standardise(x.flatten(1))


def build_reference(images: torch.Tensor, features: torch.Tensor, ids: list[str],
                    feature_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    match_flips: bool = True, max_shift_px: int = 4) -> RealReference:
    """Reference set from uint8 training images and their features; ``feature_fn`` embeds the mirrors."""
    ids = [str(i) for i in ids]
    height, width = images.shape[-2:]
    factor = max(1, math.ceil(max(height, width) / COMPARE_MAX_PX))
    low, mask = copy_space(images, factor)
    margin = min(math.ceil(max_shift_px / factor), min(low.shape[-2:]) // 4)
    views = view_names(height, width, match_flips)
    h, w = low.shape[-2:]
    crops, masks = (torch.cat([DIHEDRAL[v](t)[..., margin:h - margin, margin:w - margin].flatten(1) for v in views])
                    for t in (low, mask))
    crops = centred(crops, masks)
    if match_flips:
        mirror_features = feature_fn(images.flip(-1)) if feature_fn is not None else features
        features = torch.cat([features, mirror_features])
    size = (h - 2 * margin, w - 2 * margin)
    return RealReference(features.double(), 2 if match_flips else 1, crops, masks, _pooled(crops, size), views,
                         images, ids, factor, margin)


@dataclass
class Neighbours:
    distance: torch.Tensor  # (N,) to the nearest training image
    relative: torch.Tensor  # (N,) nearest distance / mean distance of the k nearest images
    index: torch.Tensor  # (N,) that image's index in the reference
    view: torch.Tensor  # (N,) the view it matched in (index into the reference's views)
    shift_px: torch.Tensor | None = None  # (N, 2) copy space: (down, right) image px the fake is moved by
    exact: torch.Tensor | None = None  # (N,) copy space: within EXACT_COPY_RMS of that view at full resolution


def _nearest_k(d: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest distance, mean distance of the k nearest and index of the nearest from (N, M) distances."""
    top = d.topk(max(1, min(k, d.shape[1])), dim=1, largest=False)
    return top.values[:, 0], top.values.mean(dim=1), top.indices[:, 0]


def feature_neighbours(query: torch.Tensor, reference: RealReference, k: int, chunk: int = 512) -> Neighbours:
    """Nearest and k-nearest feature distances; an image and its mirror count as one neighbour."""
    n_ref, n_views = len(reference), reference.feature_views
    parts = []
    for s in range(0, len(query), chunk):
        d = torch.cdist(query[s:s + chunk].double(), reference.features).view(-1, n_views, n_ref)
        best, view = d.min(dim=1)
        d1, mean_k, idx = _nearest_k(best, k)
        parts.append((d1, d1 / mean_k.clamp(min=1e-12), idx, view.gather(1, idx[:, None])[:, 0]))
    if not parts:
        return Neighbours(*(torch.zeros(0, dtype=t) for t in (torch.float64, torch.float64, torch.long, torch.long)))
    return Neighbours(*(torch.cat(p) for p in zip(*parts)))


def copy_neighbours(images: torch.Tensor, reference: RealReference, k: int) -> Neighbours:
    """Nearest and k-nearest copy-space distances of uint8 images, each training image at its best view and
    shift. A coarse search (every view and shift, crops pooled COARSE_POOL x) over all training images keeps
    the SHORTLIST most correlated; only those are compared in full, on every pooling grid. The nearest
    distance is recomputed in float64 (an exact copy is at 0)."""
    ref, m, f = reference, reference.margin, reference.factor
    n_ref, n_views = len(ref), len(ref.views)
    shortlist = min(n_ref, max(SHORTLIST, 2 * k))
    phases = _phases(f)
    lows, masks = zip(*(copy_space(images, f, p) for p in phases))
    size = (lows[0].shape[-2] - 2 * m, lows[0].shape[-1] - 2 * m)
    # the image px each window is moved by, per phase then offset; the unmoved window first so that ties go to it
    moved = torch.tensor([[(oy - m) * f + py, (ox - m) * f + px] for py, px in phases
                          for oy in range(2 * m + 1) for ox in range(2 * m + 1)])
    order = sorted(range(len(moved)), key=lambda i: (moved[i].abs().max().item(), moved[i].abs().sum().item(), i))
    moved = moved[order]
    chunk = max(1, COPY_CHUNK_VALUES // ((2 * m + 1) ** 2 * n_views * max(1, n_ref)))
    crops, crop_masks = ref.crops.view(n_views, n_ref, -1), ref.masks.view(n_views, n_ref, -1)
    out: list[tuple[torch.Tensor, ...]] = []
    for s in range(0, len(images), chunk):
        window_masks = [_windows(mask[s:s + chunk], m) for mask in masks]
        windows = [centred(_windows(low[s:s + chunk], m), wm) for low, wm in zip(lows, window_masks)]
        window_masks = torch.cat(window_masks, dim=1)[:, order]
        n = len(windows[0])
        if shortlist < n_ref:  # on the first pooling grid: a shift of half a copy-space px is a quarter px there
            rho = (_pooled(windows[0], size) @ ref.coarse_crops.T).view(n, -1, n_ref)
            candidates = rho.amax(dim=1).topk(shortlist, dim=1).indices
        else:
            candidates = torch.arange(n_ref).expand(n, n_ref)
        windows = torch.cat(windows, dim=1)[:, order]
        theirs, their_masks = (t[:, candidates].permute(1, 3, 0, 2).reshape(n, -1, n_views * shortlist)
                               for t in (crops, crop_masks))
        rho = masked_correlation(windows, window_masks, theirs, their_masks)
        best, at = rho.view(n, -1, shortlist).max(dim=1)  # over shifts x views, shift-major
        _, mean_k, j = _nearest_k((2 * (1 - best.double())).clamp(min=0).sqrt(), k)
        at, idx = at.gather(1, j[:, None])[:, 0], candidates.gather(1, j[:, None])[:, 0]
        shift, view = at // n_views, at % n_views
        pick = torch.arange(n), shift
        rho1 = masked_correlation(windows[pick].double()[:, None], window_masks[pick].double()[:, None],
                                  crops[view, idx].double()[:, :, None], crop_masks[view, idx].double()[:, :, None])
        d1 = (2 * (1 - rho1[:, 0, 0])).clamp(min=0).sqrt()
        source = torch.stack([DIHEDRAL[ref.views[v]](ref.images[i]) for v, i in zip(view.tolist(), idx.tolist())])
        rms = (images[s:s + chunk].double() - source.double()).div(255).pow(2).flatten(1).mean(dim=1).sqrt()
        out.append((d1, d1 / mean_k.clamp(min=1e-12), idx, view, moved[shift], rms <= EXACT_COPY_RMS))
    if not out:
        empty = torch.zeros(0, dtype=torch.float64)
        return Neighbours(empty, empty, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                          torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, dtype=torch.bool))
    return Neighbours(*(torch.cat(p) for p in zip(*out)))


@dataclass
class Thresholds:
    feature: float  # nearest distance in feature space
    pixel: float  # nearest distance in copy space (RMS of the standardised low-pass images)
    feature_relative: float  # relative nearest distance r in feature space
    pixel_relative: float  # relative nearest distance r in copy space
    percentile: float
    k: int
    n_real: int  # validation images the thresholds come from
    real_flag_rate: float  # fraction of those validation images the gate itself flags
    copy_space: str = ""  # what the pixel distance compares, in words

    def as_dict(self) -> dict:
        return {"feature_threshold": self.feature, "pixel_threshold_rms": self.pixel,
                "relative_feature_threshold": self.feature_relative, "relative_pixel_threshold": self.pixel_relative,
                "percentile": self.percentile, "k": self.k, "n_real_reference": self.n_real,
                "real_val_flag_rate": self.real_flag_rate, "pixel_space": self.copy_space}


def _memorised(nf: Neighbours, npx: Neighbours, t: Thresholds) -> torch.Tensor:
    in_features = (nf.distance < t.feature) & (nf.relative < t.feature_relative)
    in_pixels = (npx.distance < t.pixel) & (npx.relative < t.pixel_relative)
    return in_features | in_pixels | npx.exact


def describe_copy_space(reference: RealReference, image_px: int) -> str:
    shifts = f", shifts up to {reference.margin * reference.factor} px" if reference.margin else ""
    return (f"RMS difference of standardised luminance at {image_px // reference.factor} px (Gaussian low-pass "
            f"sigma {LOW_PASS_SIGMA_PX} px) over the px that are foreground in both (background: 3x3 mean <= "
            f"{BACKGROUND_MAX_GREY} grey levels, grown {BACKGROUND_GROW_PX} px), best of {len(reference.views)} "
            f"views{shifts} of each training image")


def fit_thresholds(reference: RealReference, val_images: torch.Tensor, val_features: torch.Tensor,
                   percentile: float, k: int = 5) -> Thresholds:
    """Percentiles of the validation images' nearest and relative nearest distances to the training images."""
    if len(val_images) == 0:
        raise ValueError("the memorisation gate needs validation images for its thresholds")
    nf = feature_neighbours(val_features, reference, k)
    npx = copy_neighbours(val_images, reference, k)

    def pct(values: torch.Tensor) -> float:
        return float(np.percentile(values.numpy(), percentile))

    t = Thresholds(pct(nf.distance), pct(npx.distance), pct(nf.relative), pct(npx.relative), percentile,
                   max(1, min(k, len(reference))), len(val_images), 0.0,
                   describe_copy_space(reference, val_images.shape[-1]))
    t.real_flag_rate = float(_memorised(nf, npx, t).double().mean())
    return t


@dataclass
class GateResult:
    memorised: np.ndarray  # bool (N,)
    feature_distance: np.ndarray  # (N,) to the nearest training image in feature space
    pixel_distance: np.ndarray  # (N,) copy-space distance to the nearest training image (at its best view, shift)
    feature_relative: np.ndarray  # (N,) nearest / mean of the k nearest, in feature space
    pixel_relative: np.ndarray
    feature_nn_id: list[str]
    pixel_nn_id: list[str]
    nn_real_id: list[str]  # of the more suspicious space: smaller (d / threshold) x (r / threshold)
    pixel_nn_view: list[str]  # how the copy-space nearest matched, e.g. "rot90, shifted (+2, -1) px"


def gate(images: torch.Tensor, features: torch.Tensor, reference: RealReference, thresholds: Thresholds) -> GateResult:
    """Nearest training images of fakes (uint8 images and their features) and the memorised verdicts."""
    t = thresholds
    nf = feature_neighbours(features, reference, t.k)
    npx = copy_neighbours(images, reference, t.k)
    memorised = _memorised(nf, npx, t).numpy()

    def ids(nb: Neighbours) -> list[str]:
        return [reference.ids[i] + (MIRROR_SUFFIX if reference.views[v] == "mirror" else "")
                for i, v in zip(nb.index.tolist(), nb.view.tolist())]

    def how(view: int, shift: list[int]) -> str:
        moved = f", shifted ({shift[0]:+d}, {shift[1]:+d}) px" if any(shift) else ""
        return reference.views[view] + moved

    feat_ids, pix_ids = ids(nf), ids(npx)
    eps = 1e-12
    score_f = (nf.distance / max(t.feature, eps) * nf.relative / max(t.feature_relative, eps)).tolist()
    score_p = (npx.distance / max(t.pixel, eps) * npx.relative / max(t.pixel_relative, eps)).tolist()
    nn_ids = [p if sp <= sf else f for f, p, sf, sp in zip(feat_ids, pix_ids, score_f, score_p)]
    return GateResult(memorised, nf.distance.numpy(), npx.distance.numpy(), nf.relative.numpy(),
                      npx.relative.numpy(), feat_ids, pix_ids, nn_ids,
                      [how(v, s) for v, s in zip(npx.view.tolist(), npx.shift_px.tolist())])
