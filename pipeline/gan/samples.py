"""Per-class sample grids: one row per class, one column per latent z shared by all rows.

Sharing z along a column shows what the label alone changes; a row of near-identical images shows
a collapsed class at a glance.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from pipeline.io import write_bytes_atomic

LABEL_WIDTH_PX = 90  # left margin for the class names
PAD_PX = 2


@torch.no_grad()
def generate_grid(G: torch.nn.Module, z: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Images (n_classes * len(z), C, H, W) in [-1, 1]: row c is G(z, c). Uses G in eval mode."""
    was_training = G.training
    G.eval()
    k = len(z)
    y = torch.arange(n_classes, device=z.device).repeat_interleave(k)
    images = G(z.repeat(n_classes, 1), y).float()
    G.train(was_training)
    return images


def to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] (N, C, H, W) -> uint8 (N, H, W, 3)."""
    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).numpy()


def save_grid(images: torch.Tensor, n_rows: int, path: str | Path, row_names: list[str] | None = None,
              min_tile_px: int = 64) -> Path:
    """Write ``images`` (row-major, ``n_rows`` rows) as one PNG, tiles upscaled to ``min_tile_px``; atomic."""
    tiles = to_uint8_hwc(images)
    n, h, w, _ = tiles.shape
    n_cols = max(1, n // n_rows)
    scale = max(1, -(-min_tile_px // h))  # nearest-neighbour upscale of tiny (16/32 px) images
    th, tw = h * scale, w * scale
    left = LABEL_WIDTH_PX if row_names else 0
    canvas = Image.new("RGB", (left + n_cols * (tw + PAD_PX) + PAD_PX, n_rows * (th + PAD_PX) + PAD_PX), "white")
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        r, c = divmod(i, n_cols)
        tile = Image.fromarray(tiles[i]).resize((tw, th), Image.NEAREST)
        canvas.paste(tile, (left + PAD_PX + c * (tw + PAD_PX), PAD_PX + r * (th + PAD_PX)))
    for r, name in enumerate(row_names or []):
        draw.text((4, PAD_PX + r * (th + PAD_PX) + th // 2 - 5), str(name)[:14], fill="black")
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getbuffer())
    return Path(path)
