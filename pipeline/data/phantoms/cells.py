"""Cell phantoms: Pap-smear-like RGB crops, one folder per class, drawn with a Beer-Lambert stain model.

Light passes through absorbing dyes (hematoxylin for nuclei, eosin or cyanophilic stain for cytoplasm),
which is what makes overlapping cytoplasm and nucleus look translucent rather than painted. Cells of one
slide share its background, stain strength and cytoplasm colour preference (the batch effect).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.special import expit

from pipeline.config import PhantomConfig
from pipeline.data.phantoms.common import _STREAM_BLANK, _STREAM_CELL, _STREAM_SLIDE, _check_replaceable, _rng
from pipeline.errors import ConfigError
from pipeline.io import atomic_dir

REFERENCE_CELL_PX = 64


@dataclass(frozen=True)
class SlideStyle:
    """What one slide's cells share: the batch effect of staining and scanning."""

    background: np.ndarray  # RGB in [0, 1]
    stain: float  # multiplier on all optical densities
    cyan_preference: float  # probability a cell's cytoplasm is cyanophilic rather than eosinophilic


# Optical densities (-log10 transmission per RGB channel) of the Papanicolaou dyes at unit amount.
_OD_HEMATOXYLIN = np.array([0.65, 0.70, 0.29]) * 1.6  # nuclei: blue-purple
_OD_EOSIN_PINK = np.array([0.05, 0.42, 0.18])  # superficial cells: pink-orange cytoplasm
_OD_CYANOPHILIC = np.array([0.42, 0.15, 0.10])  # intermediate / metaplastic cells: cyan-blue cytoplasm


def _slide_style(rng: np.random.Generator) -> SlideStyle:
    pinkish = np.array([0.96, 0.91, 0.95])
    bluish = np.array([0.91, 0.94, 0.97])
    mix = rng.uniform(0, 1)
    background = (mix * pinkish + (1 - mix) * bluish) * rng.uniform(0.97, 1.0)
    return SlideStyle(background=background, stain=float(rng.uniform(0.85, 1.15)),
                      cyan_preference=float(rng.uniform(0.3, 0.7)))


def _polar_outline(theta: np.ndarray, radius: float, rng: np.random.Generator, harmonics: range,
                   amplitude: float, ratio: float) -> np.ndarray:
    """Boundary radius as a function of angle: an ellipse of axis ``ratio`` with random harmonics."""
    rot = rng.uniform(0, np.pi)
    ellipse = radius * ratio / np.sqrt((ratio * np.cos(theta - rot)) ** 2 + np.sin(theta - rot) ** 2)
    wobble = np.ones_like(theta)
    for k in harmonics:
        wobble += rng.uniform(0, amplitude) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return ellipse * wobble


def _polygon_outline(theta: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Boundary radius of a random convex-ish polygon: mature squamous cells are flat polygons."""
    n_vertices = int(rng.integers(5, 8))
    # Evenly spread, jittered vertices: a gap above pi would make the edge formula below fold over.
    step = 2 * np.pi / n_vertices
    angles = rng.uniform(0, 2 * np.pi) + step * (np.arange(n_vertices) + rng.uniform(-0.3, 0.3, n_vertices))
    radii = radius * rng.uniform(0.8, 1.15, n_vertices)
    a0, a1 = angles, np.roll(angles, -1) + np.where(np.arange(n_vertices) == n_vertices - 1, 2 * np.pi, 0)
    r0, r1 = radii, np.roll(radii, -1)
    t = np.mod(theta - angles[0], 2 * np.pi) + angles[0]
    i = np.clip(np.searchsorted(a0, t, side="right") - 1, 0, n_vertices - 1)
    # Distance along the ray at angle t to the straight edge between vertices i and i+1.
    num = r0[i] * r1[i] * np.sin(a1[i] - a0[i])
    den = r0[i] * np.sin(t - a0[i]) + r1[i] * np.sin(a1[i] - t)
    return num / np.maximum(den, 1e-6)


def _neighbour_fragment(y: np.ndarray, x: np.ndarray, h: float, rng: np.random.Generator) -> np.ndarray:
    """Optical density of a neighbour's cytoplasm cut by the crop edge (real crops rarely isolate a cell)."""
    ang = rng.uniform(0, 2 * np.pi)
    ny, nx = h + 1.35 * h * np.sin(ang), h + 1.35 * h * np.cos(ang)
    outline = _polygon_outline(np.arctan2(y - ny, x - nx), 0.75 * h, rng)
    fragment = expit((outline - np.hypot(y - ny, x - nx)) / 0.8)
    return fragment[..., None] * (_OD_CYANOPHILIC if rng.random() < 0.5 else _OD_EOSIN_PINK) * 0.6


def _cytoplasm(y: np.ndarray, x: np.ndarray, centre: np.ndarray, radius: float, s: float, scale: float,
               rng: np.random.Generator) -> np.ndarray:
    """Amount of cytoplasm stain per pixel: a flat polygon for mature cells, rounder as severity rises."""
    theta = np.arctan2(y - centre[0], x - centre[1])
    dist = np.hypot(y - centre[0], x - centre[1])
    blend = min(s, 1.0)
    outline = ((1 - blend) * _polygon_outline(theta, radius, rng)
               + blend * _polar_outline(theta, radius, rng, range(2, 5), 0.06, rng.uniform(0.75, 1.0)))
    inside = expit((outline - dist) / max(0.5, 0.7 * scale))
    rim = np.exp(-((outline - dist) / max(0.6, 1.0 * scale)) ** 2)  # folded, slightly denser border
    grain = ndimage.gaussian_filter(rng.standard_normal(y.shape), 2.0 * scale)
    return inside * (1.0 + 0.12 * grain / (grain.std() + 1e-12) + 0.35 * rim)


def _nuclei(y: np.ndarray, x: np.ndarray, centre: np.ndarray, cyto_r: float, h: float, s: float,
            scale: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Nucleus mask (one nucleus, or two for a binucleated low-grade cell), first centre and radius.

    Size, elongation and membrane irregularity all grow with severity ``s``.
    """
    radius = h * (0.125 + 0.155 * s) * rng.lognormal(0, 0.12)
    centres = [centre + rng.normal(0, 0.12 * cyto_r * (1 - 0.6 * min(s, 1.0)), 2)]
    if rng.random() < 0.3 * np.exp(-((s - 0.5) / 0.2) ** 2):  # binucleation, typical of LSIL
        ang = rng.uniform(0, 2 * np.pi)
        half_step = 0.5 * rng.uniform(1.5, 2.0) * radius * np.array([np.sin(ang), np.cos(ang)])
        centres = [centre + half_step, centre - half_step]
    mask = np.zeros(y.shape)
    for ny, nx in centres:
        outline = _polar_outline(np.arctan2(y - ny, x - nx), radius, rng, range(3, 8), 0.015 + 0.09 * s,
                                 rng.uniform(0.8 - 0.15 * s, 1.0))
        mask = np.maximum(mask, expit((outline - np.hypot(y - ny, x - nx)) / max(0.4, 0.5 * scale)))
    return mask, centres[0], radius


def _cell_image(px: int, severity: float, style: SlideStyle, rng: np.random.Generator,
                blank: bool = False) -> np.ndarray:
    """One Pap-smear cell crop, uint8 RGB (px, px, 3); ``blank`` crops miss the cell (as many CRIC crops do).

    ``severity`` 0 is a normal squamous cell (large polygonal cytoplasm, small round nucleus, fine
    chromatin), 0.5 low grade (enlarged nucleus, sometimes a koilocytic halo or two nuclei), 1 high
    grade (small rounder cell, large irregular hyperchromatic nucleus with coarse chromatin). Per-cell
    jitter on severity and sizes makes neighbouring classes overlap a little.
    """
    scale = px / REFERENCE_CELL_PX
    h = px / 2.0
    s = float(np.clip(severity + rng.normal(0.0, 0.1), 0.0, 1.1))
    y, x = np.mgrid[0:px, 0:px].astype(np.float64) + 0.5
    od = _neighbour_fragment(y, x, h, rng) if rng.random() < 0.4 else np.zeros((px, px, 3))

    centre = h + rng.normal(0, 0.06 * h, 2)
    cyto_r = h * (0.78 - 0.33 * s ** 2) * rng.lognormal(0, 0.08)  # high-grade cells are small
    cytoplasm = _cytoplasm(y, x, centre, cyto_r, s, scale, rng)
    cyan = rng.random() < style.cyan_preference + 0.4 * s  # high-grade cells are mostly cyanophilic
    cyto_od = (_OD_CYANOPHILIC if cyan else _OD_EOSIN_PINK) * (0.45 + 0.4 * s)
    nucleus, nuc_centre, nuc_r = _nuclei(y, x, centre, cyto_r, h, s, scale, rng)
    if blank:  # a crop cut beside its cell: background, maybe a neighbour's edge, no nucleus
        cytoplasm, nucleus = np.zeros_like(cytoplasm), np.zeros_like(nucleus)

    # Koilocytic halo: a clear zone round the nucleus with a condensed rim (low-grade hallmark).
    if rng.random() < 0.6 * np.exp(-((s - 0.5) / 0.2) ** 2):
        halo_r = nuc_r * rng.uniform(1.7, 2.4)
        halo_d = np.hypot(y - nuc_centre[0], x - nuc_centre[1])
        rim = 0.4 * np.exp(-((halo_d - halo_r) / 1.2) ** 2) * (cytoplasm > 0.5)
        cytoplasm = cytoplasm * (1.0 - 0.8 * expit((halo_r - halo_d) / 0.8)) + rim

    # Chromatin: fine and even for normal nuclei, coarse clumps and hyperchromasia for high grade.
    chromatin = ndimage.gaussian_filter(rng.standard_normal((px, px)), (0.5 + 0.9 * s) * scale)
    chromatin /= chromatin.std() + 1e-12
    nuc_amount = nucleus * (0.75 + 0.75 * s) * np.clip(1.0 + (0.1 + 0.3 * s) * chromatin, 0.3, None)

    od += cytoplasm[..., None] * cyto_od + nuc_amount[..., None] * _OD_HEMATOXYLIN
    for _ in range(int(rng.poisson(0.8))):  # inflammatory cells / debris: small dark dots, any class
        dy, dx = rng.uniform(0, px, 2)
        dot = expit((max(0.8, 1.3 * scale) * rng.uniform(0.7, 1.3) - np.hypot(y - dy, x - dx)) / 0.5)
        od += dot[..., None] * _OD_HEMATOXYLIN * 0.8

    smear = ndimage.gaussian_filter(rng.standard_normal((px, px)), 6 * scale)  # uneven smear thickness
    light = style.background * (1.0 + 0.02 * smear / (smear.std() + 1e-12))[..., None]
    rgb = light * 10.0 ** (-style.stain * od)  # Beer-Lambert: transmitted light through the dyes
    rgb = ndimage.gaussian_filter(rgb, (max(0.3, 0.5 * scale), max(0.3, 0.5 * scale), 0))  # optics
    rgb += rng.normal(0.0, 0.012, rgb.shape)
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def _class_severities(names: list[str]) -> dict[str, float]:
    """Severity per class along the key order: first 0 (normal-like), last 1 (most abnormal)."""
    last = max(len(names) - 1, 1)
    return {name: i / last for i, name in enumerate(names)}


def write_cell_phantoms(out_dir: Path, cfg: PhantomConfig) -> Path:
    """Write folder-per-class Pap-smear-like RGB PNG crops: ``<class>/slide<SSS>_cell<CCC>.png``.

    Classes are the keys of ``cfg.cell_counts`` in order, with severity rising linearly from the first
    (normal) to the last (high grade). Cells come ``cfg.cells_per_slide`` per slide; slide numbers
    run on across classes, so ``^(slide\\d+)_`` names one slide uniquely in the whole set.

    Args:
        out_dir: Folder to (re)create; replaced atomically. It may only hold earlier phantom output.
        cfg: Phantom parameters (seed, counts per class, image size, cells per slide).

    Returns:
        ``out_dir``.

    Raises:
        DataError: ``out_dir`` holds files the writer did not write.
        ConfigError: a class name cannot be a folder name.
    """
    out_dir = Path(out_dir)
    names = list(cfg.cell_counts)
    for name in names:
        if not name or name in (".", "..") or any(c in name for c in "/\\:"):
            raise ConfigError(f"phantom.cell_counts: class {name!r} cannot be a folder name; "
                              "use letters, digits and underscores")
    _check_replaceable(out_dir, set(names))
    severities = _class_severities(names)
    per_slide = cfg.cells_per_slide
    n_slides = sum(math.ceil(n / per_slide) for n in cfg.cell_counts.values())
    slide_width, cell_width = max(3, len(str(n_slides))), max(3, len(str(per_slide)))
    with atomic_dir(out_dir) as tmp:
        slide_no = 0
        for class_index, name in enumerate(names):
            (tmp / name).mkdir()
            for cell_index in range(cfg.cell_counts[name]):
                if cell_index % per_slide == 0:
                    slide_no += 1
                    style = _slide_style(_rng(cfg.seed, _STREAM_SLIDE, slide_no))
                blank_draw = _rng(cfg.seed, _STREAM_BLANK, class_index, cell_index).random()
                blank = blank_draw < cfg.cell_blank_fraction
                image = _cell_image(cfg.cell_px, severities[name], style,
                                    _rng(cfg.seed, _STREAM_CELL, class_index, cell_index), blank)
                stem = f"slide{slide_no:0{slide_width}d}_cell{cell_index % per_slide + 1:0{cell_width}d}"
                Image.fromarray(image).save(tmp / name / f"{stem}.png", format="PNG")
    return out_dir
