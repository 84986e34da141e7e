"""Mammography phantom films: breast shape, parenchymal texture, masses, calcifications, class labels.

Films are drawn in a *canonical* frame (chest wall at column 0, nipple towards the right) in a
display-brightness domain (0 = black background, 1 = the brightest calcification); the writer then
mirrors LEFT films and hands each one to :mod:`pipeline.data.phantoms.dicom` for encoding.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage
from scipy.special import expit

from pipeline.config import PhantomConfig
from pipeline.data.phantoms.common import (
    _STREAM_FILM,
    _STREAM_LABELS,
    _check_replaceable,
    _grid,
    _paste_add,
    _power_law_noise,
    _rng,
)
from pipeline.data.phantoms.dicom import _film_dataset, _film_encoding, _patient_identity
from pipeline.errors import ConfigError
from pipeline.io import atomic_dir

MAMMO_CLASSES = ("NORMAL", "BENIGN", "MALIGNANT")
LABELS_HEADER = ("patient_id", "pathology", "image_path", "x", "y", "radius")
REFERENCE_FILM_PX = 512  # lengths below are tuned at this size and scaled linearly for other sizes
MIN_CLASS_FILMS = 3  # every class with a positive fraction appears this often once there are >= 10 patients


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

