"""Images for the HTML pages: display windowing, labelled thumbnails and byte-identical PNG encoding.

Every image on a page is a ``data:image/png;base64,...`` URI, so a page works offline as one file.
:func:`png_bytes` writes no metadata chunks and always uses the same encoder settings, so a PNG says
nothing about where its pixels came from; with ``compress_level=0`` (the review page) its length
depends on the image size alone, so not even the byte count differs between real and synthetic images.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.data.imageio import read_image

SYNTHETIC_COLOUR = (200, 30, 30)
REAL_COLOUR = (70, 70, 70)


def read_uint8(path: str | Path, channels: int) -> np.ndarray:
    """An image file as uint8 (C, H, W), decoded as the classifier arms decode synthetic images."""
    arr = np.round(read_image(Path(path), channels) * 255).astype(np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def window(image_chw: np.ndarray, percentiles: tuple[float, float] | list[float] | None) -> np.ndarray:
    """uint8 (C, H, W) -> uint8 (H, W) or (H, W, 3) for display.

    With ``percentiles`` (lo, hi), grey levels between those percentiles of this image are stretched to
    0..255 (a per-patch contrast stretch, as a radiologist would window a patch); None leaves it as is.
    """
    img = np.asarray(image_chw)
    if img.ndim == 2:
        img = img[None]
    if percentiles is not None:
        lo, hi = np.percentile(img, list(percentiles))
        if hi > lo:
            img = np.clip((img.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).round().astype(np.uint8)
    img = img.astype(np.uint8)
    return img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)


def resize_to(image_hw: np.ndarray, size_px: int) -> np.ndarray:
    """Square ``size_px`` image, nearest-neighbour (no new pixel values are invented)."""
    if image_hw.shape[0] == size_px and image_hw.shape[1] == size_px:
        return image_hw
    pil = Image.fromarray(image_hw)
    return np.asarray(pil.resize((size_px, size_px), Image.Resampling.NEAREST))


def png_bytes(image_hw: np.ndarray, compress_level: int = 6) -> bytes:
    """PNG of a uint8 (H, W) or (H, W, 3) array: fixed encoder settings, no text, time or gamma chunks."""
    arr = np.ascontiguousarray(image_hw, dtype=np.uint8)
    mode = "L" if arr.ndim == 2 else "RGB"
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG", compress_level=compress_level, optimize=False)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def labelled(image_hw: np.ndarray, size_px: int, label: str, synthetic: bool) -> np.ndarray:
    """The image scaled to ``size_px`` with a strip under it that reads ``label``.

    The label is part of the pixels, so a synthetic image saved or copied out of the report still says so.
    """
    img = resize_to(image_hw, size_px)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    strip_px = max(14, size_px // 7)
    canvas = Image.new("RGB", (size_px, size_px + strip_px), SYNTHETIC_COLOUR if synthetic else REAL_COLOUR)
    canvas.paste(Image.fromarray(img), (0, 0))
    draw = ImageDraw.Draw(canvas)
    font_px = strip_px - 4
    while True:  # shrink the text until it fits the width
        font = _font(font_px)
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        if right - left <= size_px - 2 or font_px <= 6:
            break
        font_px -= 1
    x = max(1, (size_px - (right - left)) // 2 - left)
    y = size_px + (strip_px - (bottom - top)) // 2 - top
    draw.text((x, y), label, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def _font(size_px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size_px)
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()
