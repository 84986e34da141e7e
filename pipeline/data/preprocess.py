"""Pixel preprocessing shared by the ingest paths: breast mask, patches, resize, quality gate."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    hist = hist.astype(np.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centers) - np.cumsum(hist * centers)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(centers[int(np.argmax(between))])


def breast_mask(film: np.ndarray, step: int = 4) -> np.ndarray:
    """Boolean breast mask at full resolution: Otsu on a smoothed, subsampled film, largest component.

    Film labels and scanner artefacts are small bright components; keeping the largest one drops them.
    """
    small = ndimage.uniform_filter(film[::step, ::step], size=5)
    mask = small > otsu_threshold(small)
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    mask = ndimage.binary_fill_holes(mask)
    full = np.repeat(np.repeat(mask, step, axis=0), step, axis=1)
    return full[: film.shape[0], : film.shape[1]]


def crop(image: np.ndarray, row: float, col: float, side: int) -> np.ndarray:
    """Square crop of ``side`` pixels centred at (row, col); outside the film is filled with 0 (background)."""
    top, left = int(round(row - side / 2)), int(round(col - side / 2))
    h, w = image.shape[:2]
    out = np.zeros((side, side) + image.shape[2:], dtype=image.dtype)
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + side, h), min(left + side, w)
    if r1 > r0 and c1 > c0:
        out[r0 - top: r1 - top, c0 - left: c1 - left] = image[r0:r1, c0:c1]
    return out


def sample_tissue_centres(mask: np.ndarray, side: int, n: int, min_fraction: float,
                          rng: np.random.Generator, step: int = 4) -> list[tuple[int, int]]:
    """Up to ``n`` centres whose ``side``-pixel square lies at least ``min_fraction`` inside the mask."""
    small = mask[::step, ::step].astype(np.float32)
    k = max(1, side // step)
    inside = ndimage.uniform_filter(small, size=k, mode="constant", cval=0.0)
    candidates = np.argwhere(inside >= min_fraction)
    if len(candidates) == 0:  # small breast: take the most-inside positions
        candidates = np.argwhere(inside >= inside.max() - 1e-6)
    picks = rng.choice(len(candidates), size=min(n, len(candidates)), replace=False)
    return [(int(candidates[i][0] * step + step // 2), int(candidates[i][1] * step + step // 2)) for i in picks]


def square_pad(image: np.ndarray) -> np.ndarray:
    """Pad to a square with the median border value so the aspect ratio survives the resize."""
    h, w = image.shape[:2]
    if h == w:
        return image
    side = max(h, w)
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    fill = np.median(border, axis=0)
    out = np.empty((side, side) + image.shape[2:], dtype=image.dtype)
    out[...] = fill
    top, left = (side - h) // 2, (side - w) // 2
    out[top: top + h, left: left + w] = image
    return out


def resize_uint8(image: np.ndarray, size: int) -> np.ndarray:
    """Float [0, 1] (H, W) or (H, W, C) -> uint8 (C, size, size), antialiased."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    if t.shape[-1] != size or t.shape[-2] != size:
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (t[0].clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


def shows_object(image_u8: np.ndarray, dark_threshold: int, min_dark_fraction: float) -> bool:
    """Quality gate: enough stained (dark) pixels to show a cell. ``image_u8`` is (C, H, W) uint8."""
    grey = image_u8.mean(axis=0) if image_u8.ndim == 3 else image_u8
    return float((grey < dark_threshold).mean()) >= min_dark_fraction
