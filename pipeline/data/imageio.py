"""Decoding of ordinary image files (PNG, JPEG, BMP, TIFF, PGM) into float arrays in [0, 1]."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.records import to_unit_float
from pipeline.errors import DataError


def read_image(path: Path, channels: int) -> np.ndarray:
    """Read ``path`` as float32 (H, W) when ``channels`` is 1 or (H, W, 3) when it is 3.

    Corrupt, truncated or empty files raise :class:`DataError` naming the file and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path or the data set root in params.yaml")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes); re-copy it or remove it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()  # decodes now, so a truncated file fails here and not later
                return _to_array(img, channels, path)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: too large to decode safely ({exc}); downscale the image or remove it") from None
    except Exception as exc:  # PIL's decoders raise many types for damaged files (OSError, SyntaxError, ...)
        raise DataError(f"{path}: cannot decode image ({exc}); the file is corrupt, truncated or not an "
                        "image: re-export it or remove it") from None


def _to_array(img: Image.Image, channels: int, path: Path) -> np.ndarray:
    if channels == 3:
        if img.mode in ("I;16", "I;16B", "I", "F"):
            grey = _high_depth(img, path)
            return np.repeat(grey[..., None], 3, axis=2)
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    if img.mode in ("I;16", "I;16B", "I", "F"):
        return _high_depth(img, path)
    if img.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LA", "PA"):
        img = img.convert("L")
    if img.mode == "1":
        img = img.convert("L")
    arr = np.asarray(img)
    return to_unit_float(arr, path)


def _high_depth(img: Image.Image, path: Path) -> np.ndarray:
    arr = np.asarray(img)
    if arr.dtype.kind == "f":
        lo, hi = float(arr.min()), float(arr.max())
        return ((arr - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)
    if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
        raise DataError(f"{path}: pixel values outside 0..65535; convert the image to 8- or 16-bit")
    return to_unit_float(arr.astype(np.uint16), path)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Grey (H, W) <-> RGB (H, W, 3) so every image of a data set has the same number of channels."""
    if channels == 1 and image.ndim == 3:
        return image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if channels == 3 and image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    return image
