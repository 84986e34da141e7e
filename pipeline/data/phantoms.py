"""Built-in procedural phantoms: mammogram-like DICOM films and Pap-smear-like cell images.

The phantoms are the pipeline's default data set: they let every stage run (and every test pass)
without downloading a real data set, and they are deliberately *awkward* to read so the real readers
get exercised. Everything is drawn from ``numpy.random.default_rng([seed, stream, index])``, so the
output is bitwise identical for a given :class:`~pipeline.config.PhantomConfig` and does not depend
on the order in which films or cells are drawn.

Two public writers::

    write_mammography_phantoms(out_dir, cfg)   out_dir/films/phantom_0001_LEFT_CC.dcm ... + labels.csv
    write_cell_phantoms(out_dir, cfg)           out_dir/<class>/slide001_cell001.png ...

Mammography films are drawn in a *canonical* frame (chest wall at column 0, nipple towards the right)
in a display-brightness domain (0 = black background, 1 = the brightest calcification) and only then
mirrored and encoded; cell images are drawn with a Beer-Lambert stain model (light through absorbing
dyes), which is what makes overlapping cytoplasm and nucleus look translucent rather than painted.
"""
from __future__ import annotations

import csv
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import scipy.fft
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DigitalMammographyXRayImageStorageForPresentation,
    RLELossless,
    generate_uid,
)
from scipy import ndimage
from scipy.special import expit

from pipeline.config import PhantomConfig
from pipeline.io import atomic_dir
from pipeline.errors import ConfigError, DataError

__all__ = ["write_mammography_phantoms", "write_cell_phantoms"]

MAMMO_CLASSES = ("NORMAL", "BENIGN", "MALIGNANT")
LABELS_HEADER = ("patient_id", "pathology", "image_path", "x", "y", "radius")
REFERENCE_FILM_PX = 512  # lengths below are tuned at this size and scaled linearly for other sizes
REFERENCE_CELL_PX = 64
FILM_FIELD_OF_VIEW_MM = 240.0  # a 24 cm detector: gives PixelSpacing a realistic value
MIN_CLASS_FILMS = 3  # every class with a positive fraction appears this often once there are >= 10 patients

# Random streams: the first entry after the seed keeps e.g. film 5 and cell 5 independent.
_STREAM_FILM, _STREAM_LABELS, _STREAM_PATIENT, _STREAM_SLIDE, _STREAM_CELL, _STREAM_BLANK = range(6)


# ============================================================================ shared helpers
def _rng(seed: int, stream: int, *index: int) -> np.random.Generator:
    """An independent generator per (stream, index): reproducible whatever the drawing order."""
    return np.random.default_rng([seed, stream, *index])


def _grid(half: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of a (2*half+1)^2 patch whose centre pixel is (0, 0)."""
    axis = np.arange(-half, half + 1, dtype=np.float64)
    rows, cols = np.meshgrid(axis, axis, indexing="ij")
    return rows, cols


def _paste_add(image: np.ndarray, patch: np.ndarray, cy: int, cx: int) -> None:
    """Add a centred odd-sized ``patch`` to ``image`` at (cy, cx), clipped at the borders (in place)."""
    half_y, half_x = patch.shape[0] // 2, patch.shape[1] // 2
    y0, x0 = cy - half_y, cx - half_x
    iy0, ix0 = max(y0, 0), max(x0, 0)
    iy1, ix1 = min(y0 + patch.shape[0], image.shape[0]), min(x0 + patch.shape[1], image.shape[1])
    if iy0 < iy1 and ix0 < ix1:
        image[iy0:iy1, ix0:ix1] += patch[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]


def _power_law_noise(shape: tuple[int, int], beta: float, rng: np.random.Generator,
                     stretch_x: float = 1.0) -> np.ndarray:
    """Zero-mean, unit-std noise with a 1/f^beta power spectrum.

    Breast parenchyma has a power-law spectrum with beta close to 3 (Burgess et al.); white noise or a
    single Gaussian blur looks like sand or blobs instead. ``stretch_x`` > 1 damps horizontal
    frequencies, giving structures elongated along the columns (used for duct-like streaks).
    """
    spectrum = scipy.fft.rfft2(rng.standard_normal(shape, dtype=np.float32))
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :] * stretch_x
    freq = np.sqrt(fx * fx + fy * fy)
    freq[0, 0] = 1.0  # the DC term is zeroed just below; avoid dividing by zero
    spectrum *= freq ** (-beta / 2.0)
    spectrum[0, 0] = 0.0
    noise = scipy.fft.irfft2(spectrum, s=shape)
    return (noise - noise.mean()) / (noise.std() + 1e-12)


def _check_replaceable(out_dir: Path, allowed: set[str]) -> None:
    """Refuse to replace a folder holding anything the phantom writer did not write itself.

    The writers replace ``out_dir`` atomically; a typo such as ``out_dir=.`` must not wipe a project.
    """
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a folder; remove it or choose another phantom folder")
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in allowed)
    if foreign:
        raise DataError(f"{out_dir}: holds {foreign[0]!r}, which the phantom writer did not write; "
                        "empty the folder or choose another phantom folder")


# ============================================================================ mammography
@dataclass(frozen=True)
class FilmEncoding:
    """How one film's pixels are stored: a different mix per film so a DICOM reader is exercised."""

    bits_stored: int  # 12, 14 or 16 (always uint16 storage)
    monochrome1: bool  # stored values inverted: dense tissue has LOW values
    rescale: Optional[tuple[int, int]]  # (slope, intercept); None = no Modality LUT tags at all
    voi: str  # 'window', 'two_windows' (multi-valued WindowCenter/Width) or 'lut' (VOI LUT Sequence)
    rle: bool  # RLE Lossless transfer syntax instead of Explicit VR Little Endian


def _film_encoding(film_index: int) -> FilmEncoding:
    """Encoding of film ``film_index`` (0-based), from cycles of co-prime-ish periods.

    A fixed cycle rather than random draws guarantees that even a 6-patient test set holds every
    variant: MONOCHROME1 for films 3-5 of every 9, RLE for film 3 of every 10, and so on.
    """
    i = film_index
    return FilmEncoding(
        bits_stored=(12, 14, 16)[i % 3],
        monochrome1=(i // 3) % 3 == 1,
        rescale={0: None, 1: (1, 0), 2: (2, 0), 3: None}[i % 4],
        voi="lut" if i % 7 == 5 else "two_windows" if i % 7 == 2 else "window",
        rle=i % 10 == 3,
    )


def _draw_film_labels(n_films: int, fractions: list[float], n_patients: int, seed: int) -> list[int]:
    """Class index per film, drawn i.i.d. from ``fractions``; rare classes topped up to 3 films.

    With 10% malignant and 240 films an unlucky draw is harmless, but with 20 films it could leave a
    class with one film, which breaks stratified splits downstream; hence the top-up, which takes
    randomly chosen films of the most frequent class.
    """
    probs = np.asarray(fractions, dtype=np.float64)
    if probs.shape != (3,) or (probs < 0).any() or probs.sum() <= 0:
        raise ConfigError(f"phantom.mammo_class_fractions: {fractions} must be 3 non-negative numbers "
                          "(normal, benign, malignant) with a positive sum")
    rng = _rng(seed, _STREAM_LABELS)
    labels = rng.choice(3, size=n_films, p=probs / probs.sum())
    if n_patients >= 10:
        for cls in np.flatnonzero(probs > 0):
            missing = MIN_CLASS_FILMS - int((labels == cls).sum())
            if missing > 0:
                donor = int(np.argmax(np.bincount(labels, minlength=3)))
                take = rng.choice(np.flatnonzero(labels == donor), size=missing, replace=False)
                labels[take] = cls
    return [int(v) for v in labels]


def _coarse_axes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row (m, 1) and column (1, m) coordinates, in film pixels, of a half-resolution grid.

    Breast shape and parenchyma are smooth, so they are drawn on this grid (4x fewer pixels) and
    brought to film size by :func:`_upsample2`; coarse pixel j covers film pixels 2j and 2j+1.
    """
    centres = np.arange((n + 1) // 2, dtype=np.float32) * 2 + 0.5
    return centres[:, None], centres[None, :]


def _upsample2(a: np.ndarray) -> np.ndarray:
    """Bilinear 2x upsampling along the first two axes (pixel-area aligned, edges replicated).

    Identical to ``ndimage.zoom(a, 2, order=1, grid_mode=True, mode='nearest')`` but about 5x faster.
    """
    pad = [(1, 1), (1, 1)] + [(0, 0)] * (a.ndim - 2)
    p = np.pad(a, pad, mode="edge")
    rows = np.empty((2 * a.shape[0],) + p.shape[1:], a.dtype)
    rows[0::2] = 0.75 * p[1:-1] + 0.25 * p[:-2]
    rows[1::2] = 0.75 * p[1:-1] + 0.25 * p[2:]
    out = np.empty((rows.shape[0], 2 * a.shape[1]) + a.shape[2:], a.dtype)
    out[:, 0::2] = 0.75 * rows[:, 1:-1] + 0.25 * rows[:, :-2]
    out[:, 1::2] = 0.75 * rows[:, 1:-1] + 0.25 * rows[:, 2:]
    return out


def _breast_shape(y: np.ndarray, x: np.ndarray, n: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Breast silhouette in the canonical frame (chest wall at column 0), on the grid ``y``, ``x``.

    A compressed breast seen cranio-caudally is roughly a half super-ellipse standing on the chest wall;
    a skew, a few low harmonics of the outline and a nipple bump keep every film's shape different.

    Returns:
        rho: normalised radius, 0 at the chest-wall centre and 1 on the skin (the breast is rho < 1).
        edge_px: approximate distance to the skin in film pixels, (1 - rho) / |grad rho|, negative
            outside; first-order accurate near the outline, which is where it is used.
        geometry: centre row ``yc``, half-height ``b``, depth ``a``, nipple ``nipple_y``/``nipple_x``.
    """
    yc = n * rng.uniform(0.46, 0.54)
    b = n * rng.uniform(0.36, 0.46)  # half of the chest-wall extent
    a = n * rng.uniform(0.52, 0.80)  # depth from chest wall to nipple
    power = rng.uniform(1.8, 2.5)
    skew = rng.uniform(-0.12, 0.12)  # lateral and medial halves are rarely symmetric
    dy = (y - yc - skew * x) / b
    dx = x / a
    theta = np.arctan2(dy, dx)
    wobble = np.ones_like(theta)
    apex_wobble = 1.0
    for k in (2, 3, 4):
        amp, phase = rng.uniform(0.0, 0.025), rng.uniform(0, 2 * np.pi)
        wobble += amp * np.cos(k * theta + phase)
        apex_wobble += amp * np.cos(phase)
    rho = (np.abs(dx) ** power + np.abs(dy) ** power) ** (1.0 / power) / wobble
    # The nipple: a low, broad bump on the outline rather than a bead stuck onto it.
    nipple_r = n * rng.uniform(0.012, 0.02)
    nipple_x, nipple_y = a * apex_wobble - 0.3 * nipple_r, yc + skew * a
    rho = np.minimum(rho, np.hypot((x - nipple_x) / nipple_r, (y - nipple_y) / (2.0 * nipple_r)))
    grad_y, grad_x = np.gradient(rho, 2.0)  # coarse spacing = 2 film pixels
    edge_px = (1.0 - rho) / (np.hypot(grad_y, grad_x) + 1e-6)
    geometry = {"yc": yc, "b": b, "a": a, "nipple_y": nipple_y, "nipple_x": nipple_x}
    return rho, edge_px, geometry


def _tissue_texture(y: np.ndarray, x: np.ndarray, rng: np.random.Generator,
                    geometry: dict[str, float]) -> np.ndarray:
    """Zero-mean, unit-std parenchymal texture on the grid ``y``, ``x``: clutter plus converging ducts.

    The clutter is power-law noise; the duct streaks are elongated noise resampled in polar
    coordinates around the nipple, so linear structures converge on it as in a real CC view.
    """
    m = y.shape[0]
    clutter = _power_law_noise((m, m), 3.0, rng)
    streak_src = _power_law_noise((m, m), 2.4, rng, stretch_x=6.0)
    dist = np.hypot(y - geometry["nipple_y"], x - geometry["nipple_x"]) / 2.0  # in coarse pixels
    angle = np.arctan2(y - geometry["nipple_y"], geometry["nipple_x"] - x)  # 0 = towards the chest wall
    rows = (angle / np.pi + 1.0) * 1.5 * (m - 1)  # spread the fan over 3 noise heights: thinner ducts
    ducts = ndimage.map_coordinates(streak_src, [rows, np.clip(dist, 0, m - 1)], order=1, mode="grid-wrap")
    # Ducts fade in close to the nipple, where a real image shows the retroareolar region, not a star.
    ducts *= np.clip(dist / (0.08 * m), 0.0, 1.0)
    texture = 0.8 * clutter + 0.3 * ducts
    return ((texture - texture.mean()) / texture.std()).astype(np.float32)


def _benign_mass(radius_px: float, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Circumscribed round/oval mass: sharp smooth border, gentle dome, sometimes coarse calcifications."""
    half = int(math.ceil(radius_px * 1.3 + 4 * scale))
    dy, dx = _grid(half)
    rot = rng.uniform(0, np.pi)
    u = dx * np.cos(rot) + dy * np.sin(rot)
    v = -dx * np.sin(rot) + dy * np.cos(rot)
    ratio = rng.uniform(0.7, 1.0)  # oval rather than a perfect disc
    lobes = 1.0 + rng.uniform(0.0, 0.06) * np.cos(rng.integers(2, 4) * np.arctan2(v, u) + rng.uniform(0, 6.3))
    d = np.hypot(u / radius_px, v / (radius_px * ratio)) / lobes  # 1 on the border
    edge = max(0.8, 1.2 * scale) / radius_px  # border width in units of d: well defined, not pixel-sharp
    body = expit((1.0 - d) / edge) * (0.75 + 0.25 * np.sqrt(np.clip(1.0 - d * d, 0.0, 1.0)))
    mass = rng.uniform(0.09, 0.26) * body
    if rng.random() < 0.35:  # involuting fibroadenoma: a few large 'popcorn' calcifications
        mass += _calcifications(0.6 * radius_px, half, int(rng.integers(1, 5)),
                                (max(1.0, 1.5 * scale), max(1.5, 3.2 * scale)), (0.2, 0.4), 0.0, rng)
    return mass


def _spiculated_mass(radius_px: float, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Spiculated mass: an irregular, ill-defined core with thin tapering spicules radiating out."""
    n_spicules = int(rng.integers(8, 21))
    lengths = radius_px * rng.uniform(1.3, 2.8, n_spicules)
    half = int(math.ceil(lengths.max() + 3 * scale))
    dy, dx = _grid(half)
    dist = np.hypot(dy, dx)
    theta = np.arctan2(dy, dx)
    outline = np.ones_like(dist)
    for k in range(2, 10):  # lumpy low harmonics plus weaker high ones: irregular, not a flower
        outline += rng.uniform(0.0, 0.3 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    core = expit((radius_px * outline - dist) / max(0.8, 2.0 * scale))  # blurrier border than benign
    spicules = np.zeros_like(dist)
    for length in lengths:
        phi = rng.uniform(-np.pi, np.pi)
        curve = rng.normal(0.0, 0.15)  # spicules bend slightly
        ang = np.angle(np.exp(1j * (theta - phi - curve * dist / length)))
        along, across = dist * np.cos(ang), dist * np.sin(ang)
        width = max(0.5, rng.uniform(0.5, 1.2) * scale) * np.clip(1.0 - 0.6 * along / length, 0.3, 1.0)
        profile = np.exp(-(across / width) ** 2) * (along > 0.4 * radius_px)
        profile *= np.clip(1.0 - along / length, 0.0, 1.0) ** 0.6 * rng.uniform(0.4, 0.8)
        spicules = np.maximum(spicules, profile)  # max, not sum: crossings must not glow
    return rng.uniform(0.10, 0.28) * (core + spicules * (1.0 - core))


def _calcifications(cluster_radius_px: float, half: int, count: int, size_px: tuple[float, float],
                    brightness: tuple[float, float], max_elongation: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Bright calcification dots scattered in a disc, on a (2*half+1)^2 patch.

    Fine pleomorphic (malignant) calcifications are tiny, of varied size and partly elongated
    (``max_elongation`` > 0, linear/branching look); benign coarse ones are large and round.
    """
    dy, dx = _grid(half)
    out = np.zeros_like(dy)
    r = cluster_radius_px * np.sqrt(rng.uniform(0, 1, count))
    a = rng.uniform(0, 2 * np.pi, count)
    for cy, cx in zip(r * np.sin(a), r * np.cos(a)):
        size = rng.uniform(*size_px)
        rot = rng.uniform(0, np.pi)
        stretch = 1.0 + rng.uniform(0, max_elongation)
        u = (dx - cx) * np.cos(rot) + (dy - cy) * np.sin(rot)
        v = -(dx - cx) * np.sin(rot) + (dy - cy) * np.cos(rot)
        d = np.hypot(u / stretch, v)
        out = np.maximum(out, rng.uniform(*brightness) * expit((size - d) / 0.35))
    return out


def _microcalcification_cluster(radius_px: float, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Cluster of fine pleomorphic microcalcifications over a faint asymmetric density."""
    half = int(math.ceil(radius_px + 4 * scale))
    dy, dx = _grid(half)
    haze = rng.uniform(0.0, 0.05) * np.exp(-(dy ** 2 + dx ** 2) / (2 * (0.7 * radius_px) ** 2))
    dots = _calcifications(0.9 * radius_px, half, int(rng.integers(6, 26)),
                           (max(0.45, 0.4 * scale), max(0.7, 0.9 * scale)), (0.15, 0.4), 1.5, rng)
    return haze + dots


def _lesion_site(rho: np.ndarray, edge_px: np.ndarray, density: np.ndarray, radius_px: float,
                 rng: np.random.Generator) -> tuple[int, int]:
    """A lesion centre well inside the breast, more often in fibroglandular tissue (where masses arise)."""
    n = rho.shape[0]
    margin = int(math.ceil(radius_px)) + 3
    inside = (rho < 0.85) & (edge_px > margin)
    inside[:margin] = inside[n - margin:] = False  # keep the lesion off the film border ...
    inside[:, :margin] = False  # ... and off the chest wall
    candidates = np.flatnonzero(inside)
    if candidates.size == 0:  # a tiny breast and a big lesion: take the deepest point
        candidates = np.array([int(np.argmax(np.where(rho < 1.0, edge_px, -np.inf)))])
    weights = 0.3 + density.ravel()[candidates].astype(np.float64)
    pick = int(rng.choice(candidates, p=weights / weights.sum()))
    row, col = divmod(pick, n)
    return row, col


def _lesion_patch(label: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Brightness patch of a benign (1) or malignant (2) lesion on an ``n`` px film, and its ROI radius.

    Size ranges of the classes overlap and contrasts vary, so size alone does not give the class away.
    """
    scale = n / REFERENCE_FILM_PX
    if label == 1:
        radius = n * rng.uniform(0.025, 0.065)
        return _benign_mass(radius, scale, rng), radius
    if rng.random() < 0.6:
        radius = n * rng.uniform(0.02, 0.045)
        # An ROI drawn round a spiculated mass includes the roots of the spicules.
        return _spiculated_mass(radius, scale, rng), 1.6 * radius
    radius = n * rng.uniform(0.02, 0.055)
    return _microcalcification_cluster(radius, scale, rng), radius


def _film_image(n: int, label: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Optional[tuple[int, int, int]]]:
    """One film in the canonical frame (chest wall at column 0).

    Returns:
        Display brightness in [0, 1] (float32), the breast mask, and the lesion (row, col, radius) or None.
    """
    scale = n / REFERENCE_FILM_PX
    y, x = _coarse_axes(n)
    rho, edge_px, geometry = _breast_shape(y, x, n, rng)
    texture = _tissue_texture(y, x, rng, geometry)

    # Fibroglandular tissue: the texture thresholded softly, under an envelope that is densest behind
    # the nipple towards the chest wall, fades at the periphery and leaves a thin retromammary fat band.
    envelope = np.clip(1.0 - rho ** 2, 0.0, 1.0) ** 0.7
    envelope *= np.exp(-(((y - geometry["yc"]) / (0.8 * geometry["b"])) ** 4))
    envelope *= (1.0 - 0.45 * x / geometry["a"]) * (1.0 - 0.7 * np.exp(-x / (0.05 * geometry["a"])))
    threshold = rng.uniform(-0.4, 1.1)  # per-film breast density (extremely dense ... fatty)
    density = envelope * expit(2.5 * (texture - threshold))
    tissue = rng.uniform(0.24, 0.32) + 0.035 * texture + rng.uniform(0.32, 0.45) * density

    tissue, rho, edge_px = (_upsample2(a.astype(np.float32))[:n, :n] for a in (tissue, rho, edge_px))

    lesion: Optional[tuple[int, int, int]] = None
    if label:
        patch, label_radius = _lesion_patch(label, n, rng)
        density = _upsample2(density.astype(np.float32))[:n, :n]
        cy, cx = _lesion_site(rho, edge_px, density, label_radius, rng)
        _paste_add(tissue, patch.astype(np.float32), cy, cx)
        lesion = (cy, cx, max(1, int(round(label_radius))))

    # Thinner tissue at the periphery of the compressed breast lets more X-rays through: a darker rim,
    # then the skin line, a thin brighter band along the outline.
    thickness = 0.55 + 0.45 * np.sqrt(np.clip(edge_px / (0.08 * n), 0.0, 1.0))
    skin = 0.12 * np.exp(-np.maximum(edge_px, 0.0) / max(0.6, 1.2 * scale))
    background = 0.02
    image = np.where(rho < 1.0, background + (tissue - background) * thickness + skin, background)
    image = ndimage.gaussian_filter(image, max(0.4, 0.6 * scale))  # detector blur: no pixel-sharp edges
    image += rng.standard_normal(image.shape, dtype=np.float32) * (0.004 + 0.008 * image)  # quantum-like
    return np.clip(image, 0.0, 1.0), rho < 1.0, lesion


def _packbits_rows(plane: np.ndarray) -> bytes:
    """PackBits-encode a uint8 byte plane row by row, vectorised (one DICOM RLE segment).

    pydicom's own RLE encoder loops over runs in Python (about 1 s per 512 px film); this builds the
    same kind of stream with array operations. Runs of 3 or more equal bytes become replicate runs
    (header 257 - length, then the byte), everything between them literal runs (header length - 1,
    then the bytes); both are cut at 128 bytes and at every row end, as DICOM PS3.5 Annex G requires.
    """
    flat = np.ascontiguousarray(plane, dtype=np.uint8).ravel()
    n, cols = flat.size, plane.shape[1]
    idx = np.arange(n)
    row_start = idx % cols == 0
    run_start = row_start.copy()
    run_start[1:] |= flat[1:] != flat[:-1]
    run_lengths = np.diff(np.append(np.flatnonzero(run_start), n))
    replicate = np.repeat(run_lengths >= 3, run_lengths)  # per byte: part of a replicate run
    # A new run of output starts at each row, each replicate run and each literal stretch after one.
    piece_start = row_start | (run_start & replicate)
    piece_start[1:] |= ~replicate[1:] & replicate[:-1]
    piece_first = np.maximum.accumulate(np.where(piece_start, idx, 0))
    chunk_start = (idx - piece_first) % 128 == 0
    starts = np.flatnonzero(chunk_start)
    lengths = np.diff(np.append(starts, n))
    is_repeat = replicate[starts] & (lengths >= 2)  # a 1-byte leftover of a long run goes out as a literal
    header = np.zeros(n, np.uint8)
    header[starts] = np.where(is_repeat, 257 - lengths, lengths - 1)
    emitted = ~replicate | chunk_start  # a replicate chunk writes its byte once
    keep = np.stack([chunk_start, emitted], axis=1).ravel()
    data = np.stack([header, flat], axis=1).ravel()[keep].tobytes()
    return data + b"\x00" * (len(data) % 2)  # segments have even length


def _rle_frame(stored: np.ndarray) -> bytes:
    """One RLE Lossless frame of a uint16 image: 64-byte header, then the high-byte and low-byte segments."""
    segments = [_packbits_rows(stored >> 8), _packbits_rows(stored & 0xFF)]
    offsets = [64, 64 + len(segments[0])]
    header = struct.pack("<3L", len(segments), *offsets).ljust(64, b"\x00")
    return header + b"".join(segments)


def _patient_identity(patient_no: int, width: int, seed: int) -> dict[str, str]:
    """Fake but realistic-looking identifiers: the phantom is input data on which privacy is tested."""
    rng = _rng(seed, _STREAM_PATIENT, patient_no)
    number = f"{patient_no:0{width}d}"
    letters = "".join(chr(ord("A") + int(c)) for c in rng.integers(0, 26, 3))
    birth_year = int(rng.integers(1940, 1985))
    study_year = int(rng.integers(2015, 2024))
    return {
        "PatientName": f"PHANTOM^PATIENT{number}",
        "PatientID": f"PHID-{number}-{letters}",
        "PatientBirthDate": f"{birth_year}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
        "PatientAge": f"{study_year - birth_year:03d}Y",
        "StudyDate": f"{study_year}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
        "StudyTime": f"{int(rng.integers(8, 18)):02d}{int(rng.integers(0, 60)):02d}00",
        "AccessionNumber": f"ACC{int(rng.integers(10**6, 10**7))}",
        "StudyID": f"{int(rng.integers(1000, 10000))}",
    }


def _encode_pixels(display: np.ndarray, enc: FilmEncoding) -> tuple[np.ndarray, np.ndarray]:
    """Brightness [0, 1] -> (stored uint16 values, modality values) following ``enc``.

    The display domain keeps 5% headroom below the maximum, as detectors rarely saturate.
    """
    max_value = 2 ** enc.bits_stored - 1
    shown = np.round(display * np.float32(0.95 * max_value)).astype(np.int32)
    modality = max_value - shown if enc.monochrome1 else shown
    if enc.rescale is not None and enc.rescale[0] == 2:
        modality = modality // 2 * 2  # the stored half-values lose one bit; modality values stay even
        stored = modality // 2
    else:
        stored = modality - (enc.rescale[1] if enc.rescale else 0)
    return stored.astype(np.uint16), modality


def _set_voi(ds: Dataset, display: np.ndarray, mask: np.ndarray, enc: FilmEncoding) -> None:
    """Window (one or two) or VOI LUT Sequence in modality units, covering the breast's brightness."""
    max_value = 2 ** enc.bits_stored - 1
    sample = display[::2, ::2][mask[::2, ::2]]  # a quarter of the pixels pins the percentiles well enough
    lo_d, hi_d = (float(v) * 0.95 * max_value for v in np.percentile(sample, [0.5, 99.8]))
    to_modality = (lambda v: max_value - v) if enc.monochrome1 else (lambda v: v)
    lo_m, hi_m = sorted((to_modality(lo_d), to_modality(hi_d)))
    center, width = (lo_m + hi_m) / 2.0, max(hi_m - lo_m, 2.0)
    if enc.voi == "lut":
        first = int(math.floor(lo_m))
        entries = int(min(math.ceil(hi_m) - first + 1, 65535))  # 65536 would have to be coded as 0
        t = np.linspace(0.0, 1.0, entries)
        curve = expit(5.0 * (t - 0.45))  # a soft S-curve: the kind of LUT vendors ship for mammography
        curve = (curve - curve[0]) / (curve[-1] - curve[0])
        item = Dataset()
        item.LUTDescriptor = [entries, first, 16]
        item.LUTExplanation = "PHANTOM SIGMOID"
        item.add_new(0x00283006, "OW", np.round(curve * 65535).astype("<u2").tobytes())  # LUTData
        ds.VOILUTSequence = [item]
    elif enc.voi == "two_windows":
        ds.WindowCenter = [f"{center:.1f}", f"{center:.1f}"]
        ds.WindowWidth = [f"{width:.1f}", f"{0.7 * width:.1f}"]
        ds.WindowCenterWidthExplanation = ["NORMAL", "HARDER"]
    else:
        ds.WindowCenter = f"{center:.1f}"
        ds.WindowWidth = f"{width:.1f}"


def _film_dataset(display: np.ndarray, mask: np.ndarray, enc: FilmEncoding, identity: dict[str, str],
                  laterality: str, film_no: int, patient_no: int, seed: int) -> Dataset:
    """A complete MG For Presentation dataset (identifiers, orientation, pixel module, VOI)."""
    n = display.shape[0]
    root = f"pipeline-phantom/{seed}/patient/{patient_no}"
    study_uid = generate_uid(entropy_srcs=[root, "study"])
    series_uid = generate_uid(entropy_srcs=[root, "series", laterality])
    sop_uid = generate_uid(entropy_srcs=[root, "film", str(film_no)])

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DigitalMammographyXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.SOPClassUID = DigitalMammographyXRayImageStorageForPresentation
    ds.SOPInstanceUID = sop_uid
    for tag in ("StudyDate", "StudyTime", "AccessionNumber", "StudyID", "PatientName", "PatientID",
                "PatientBirthDate", "PatientAge"):
        setattr(ds, tag, identity[tag])
    ds.SeriesDate = ds.ContentDate = ds.StudyDate
    ds.SeriesTime = ds.ContentTime = ds.StudyTime
    ds.Modality = "MG"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "PHANTOM IMAGING"
    ds.ManufacturerModelName = "Procedural Phantom"
    ds.InstitutionName = "Phantom General Hospital"
    ds.InstitutionAddress = "1 Phantom Street, Nowhere"
    ds.ReferringPhysicianName = "REFERRER^DOC"
    ds.StationName = "MAMMO01"
    ds.PatientSex = "F"
    ds.BodyPartExamined = "BREAST"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1 if laterality == "R" else 2
    ds.InstanceNumber = 1
    # Canonical frame has the chest wall at column 0: for a RIGHT film rows run anterior (towards the
    # nipple) and columns run towards the patient's left; a LEFT film is the mirror image.
    ds.PatientOrientation = ["A", "L"] if laterality == "R" else ["P", "R"]
    ds.Laterality = laterality
    ds.ImageLaterality = laterality
    ds.ViewPosition = "CC"
    spacing = f"{FILM_FIELD_OF_VIEW_MM / n:.6g}"
    ds.PixelSpacing = [spacing, spacing]
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.BurnedInAnnotation = "NO"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1 if enc.monochrome1 else -1  # -1: high value = less X-ray

    stored, _ = _encode_pixels(display, enc)
    ds.set_pixel_data(stored, "MONOCHROME1" if enc.monochrome1 else "MONOCHROME2", enc.bits_stored,
                      generate_instance_uid=False)
    if enc.rescale is not None:
        ds.RescaleSlope = str(enc.rescale[0])
        ds.RescaleIntercept = str(enc.rescale[1])
        ds.RescaleType = "US"
    _set_voi(ds, display, mask, enc)
    ds.LossyImageCompression = "00"
    if enc.rle:
        ds.PixelData = encapsulate([_rle_frame(stored)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = RLELossless
    return ds


def write_mammography_phantoms(out_dir: Path, cfg: PhantomConfig) -> Path:
    """Write mammography phantom films (DICOM) and a CBIS-DDSM style ``labels.csv``.

    Each of ``cfg.mammo_patients`` patients gets a LEFT and a RIGHT cranio-caudal film
    (``films/phantom_<film no>_<LEFT|RIGHT>_CC.dcm``). A film is NORMAL, BENIGN (circumscribed mass,
    sometimes with coarse calcifications) or MALIGNANT (spiculated mass or fine pleomorphic
    microcalcifications), drawn from ``cfg.mammo_class_fractions``. Encodings vary across films
    (bits stored, MONOCHROME1, rescale, window or VOI LUT, RLE); see :func:`_film_encoding`.

    Args:
        out_dir: Folder to (re)create; replaced atomically. It may only hold earlier phantom output.
        cfg: Phantom parameters (seed, patients, film size, class fractions).

    Returns:
        ``out_dir``.

    Raises:
        DataError: ``out_dir`` holds files the writer did not write.
        ConfigError: the class fractions are unusable.
    """
    out_dir = Path(out_dir)
    _check_replaceable(out_dir, {"films", "labels.csv"})
    n_films = 2 * cfg.mammo_patients
    labels = _draw_film_labels(n_films, cfg.mammo_class_fractions, cfg.mammo_patients, cfg.seed)
    film_width = max(4, len(str(n_films)))
    patient_width = max(4, len(str(cfg.mammo_patients)))
    rows: list[tuple[str, ...]] = []
    with atomic_dir(out_dir) as tmp:
        (tmp / "films").mkdir()
        for film_index in range(n_films):
            patient_no, film_no = film_index // 2 + 1, film_index + 1
            side = ("LEFT", "RIGHT")[film_index % 2]
            identity = _patient_identity(patient_no, patient_width, cfg.seed)
            image, mask, lesion = _film_image(cfg.mammo_film_px, labels[film_index],
                                              _rng(cfg.seed, _STREAM_FILM, film_index))
            if side == "LEFT":  # LEFT films have the chest wall on the right: mirror the canonical frame
                image, mask = image[:, ::-1], mask[:, ::-1]
                if lesion is not None:
                    lesion = (lesion[0], cfg.mammo_film_px - 1 - lesion[1], lesion[2])
            ds = _film_dataset(image, mask, _film_encoding(film_index), identity, side[0], film_no,
                               patient_no, cfg.seed)
            rel = f"films/phantom_{film_no:0{film_width}d}_{side}_CC.dcm"
            ds.save_as(tmp / rel, enforce_file_format=True)
            x, y, r = ("", "", "") if lesion is None else (str(lesion[1]), str(lesion[0]), str(lesion[2]))
            rows.append((identity["PatientID"], MAMMO_CLASSES[labels[film_index]], rel, x, y, r))
        with open(tmp / "labels.csv", "w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(LABELS_HEADER)
            writer.writerows(rows)
    return out_dir


# ============================================================================ cytology
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
