"""Decoding of ordinary image files (PNG, JPEG, BMP, TIFF, PGM) into float arrays in [0, 1]."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.records import to_unit_float
from pipeline.errors import DataError

log = logging.getLogger(__name__)


def read_image(path: Path, channels: int, background: tuple[float, ...] | None = None) -> np.ndarray:
    """Read ``path`` as float32 (H, W) when ``channels`` is 1 or (H, W, 3) when it is 3.

    An image with transparency (RGBA, LA, a PNG tRNS chunk) is composited on ``background`` (RGB in [0, 1];
    ingest passes the data set's median border colour, :func:`border_colour`), else on white: dropping
    alpha would put a cut-out cell on black. Corrupt, truncated or empty files raise :class:`DataError`
    naming the file and the fix; a DICOM file with an image suffix is named as such.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path or the data set root in params.yaml")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes); re-copy it or remove it")
    if is_dicom(path):
        raise DataError(f"{path}: a DICOM file with a {path.suffix or 'missing'} suffix; rename it to .dcm so it "
                        "is read as DICOM")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()  # decodes now, so a truncated file fails here and not later
                out = _to_array(flatten_alpha(img, background), channels, path)
        for w in caught:  # PIL's warnings (EXIF, MPO, ...) as one log line naming the file, not a traceback
            log.warning("%s: %s", path, " ".join(str(w.message).split()))
        return out
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: too large to decode safely ({exc}); downscale the image or remove it") from None
    except Exception as exc:  # PIL's decoders raise many types for damaged files (OSError, SyntaxError, ...)
        raise DataError(f"{path}: cannot decode image ({' '.join(str(exc).split())}); the file is corrupt, "
                        "truncated or not an image: re-export it or remove it") from None


def is_dicom(path: Path) -> bool:
    """True when ``path`` holds the DICOM preamble and 'DICM' magic, whatever its suffix."""
    with open(path, "rb") as fh:
        head = fh.read(132)
    return len(head) == 132 and head[128:] == b"DICM"


def has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode in ("P", "L", "RGB", "1")
                                                             and "transparency" in img.info)


def peek_alpha(path: Path) -> bool:
    """Whether the image file at ``path`` has transparency, from its header alone (False if unreadable)."""
    try:
        with Image.open(path) as img:
            return has_alpha(img)
    except Exception:  # unreadable files are reported when they are decoded
        return False


def flatten_alpha(img: Image.Image, background: tuple[float, ...] | None) -> Image.Image:
    """Composite an image with transparency on ``background`` (RGB in [0, 1], default white)."""
    if not has_alpha(img):
        return img
    grey = img.mode in ("LA", "La", "L", "1")
    rgba = img.convert("LA" if grey else "RGBA") if img.mode not in ("LA", "RGBA") else img
    colour = tuple(int(round(255 * c)) for c in (background or (1.0, 1.0, 1.0)))
    if grey:
        base = Image.new("L", rgba.size, int(round(np.mean(colour))))
        base.paste(rgba.convert("L"), mask=rgba.getchannel("A"))
        return base
    base = Image.new("RGB", rgba.size, colour[:3] if len(colour) >= 3 else colour * 3)
    base.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
    return base


def border_colour(images: list[np.ndarray]) -> tuple[float, float, float]:
    """Median colour of the one-pixel borders of ``images`` (float (H, W) or (H, W, 3) in [0, 1])."""
    rings = []
    for image in images:
        rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        rings.append(np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]))
    if not rings:
        return (1.0, 1.0, 1.0)
    return tuple(float(v) for v in np.median(np.concatenate(rings), axis=0))  # type: ignore[return-value]


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
