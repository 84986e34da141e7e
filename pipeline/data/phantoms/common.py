"""What the phantom writers share: random streams, patch grids and pasting, power-law noise, the folder check."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.fft

from pipeline.errors import DataError

# Random streams: the first entry after the seed keeps e.g. film 5 and cell 5 independent.
_STREAM_FILM, _STREAM_LABELS, _STREAM_PATIENT, _STREAM_SLIDE, _STREAM_CELL, _STREAM_BLANK = range(6)


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
