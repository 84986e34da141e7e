"""Differentiable augmentation for data-efficient GAN training (Zhao et al. 2020, DiffAugment_pytorch).

The same random transforms go on real and fake images before every discriminator call (also in the
generator step, where gradients flow through them), so D cannot overfit the few real images.
Images are in [-1, 1]; every transform is safe for grayscale (saturation is a no-op on one channel).

    x = diff_augment(x, "color,translation,cutout")
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def rand_brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)


def rand_saturation(x: torch.Tensor) -> torch.Tensor:
    x_mean = x.mean(dim=1, keepdim=True)
    return (x - x_mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + x_mean


def rand_contrast(x: torch.Tensor) -> torch.Tensor:
    x_mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - x_mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + x_mean


def rand_translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size, filling with 0 (mid-grey)."""
    n, _, h, w = x.shape
    shift_h, shift_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    translation_h = torch.randint(-shift_h, shift_h + 1, size=[n, 1, 1], device=x.device)
    translation_w = torch.randint(-shift_w, shift_w + 1, size=[n, 1, 1], device=x.device)
    grid_batch, grid_h, grid_w = torch.meshgrid(
        torch.arange(n, device=x.device), torch.arange(h, device=x.device), torch.arange(w, device=x.device),
        indexing="ij")
    grid_h = torch.clamp(grid_h + translation_h + 1, 0, h + 1)
    grid_w = torch.clamp(grid_w + translation_w + 1, 0, w + 1)
    x_pad = F.pad(x, [1, 1, 1, 1])
    return x_pad.permute(0, 2, 3, 1)[grid_batch, grid_h, grid_w].permute(0, 3, 1, 2)


def rand_cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ``ratio`` times the image side at a random place in each image."""
    n, _, h, w = x.shape
    cut_h, cut_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    offset_h = torch.randint(0, h + (1 - cut_h % 2), size=[n, 1, 1], device=x.device)
    offset_w = torch.randint(0, w + (1 - cut_w % 2), size=[n, 1, 1], device=x.device)
    grid_batch, grid_h, grid_w = torch.meshgrid(
        torch.arange(n, device=x.device), torch.arange(cut_h, device=x.device),
        torch.arange(cut_w, device=x.device), indexing="ij")
    grid_h = torch.clamp(grid_h + offset_h - cut_h // 2, min=0, max=h - 1)
    grid_w = torch.clamp(grid_w + offset_w - cut_w // 2, min=0, max=w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[grid_batch, grid_h, grid_w] = 0
    return x * mask.unsqueeze(1)


AUGMENT_FNS: dict[str, list[Callable[[torch.Tensor], torch.Tensor]]] = {
    "brightness": [rand_brightness],
    "contrast": [rand_contrast],
    "saturation": [rand_saturation],
    "color": [rand_brightness, rand_saturation, rand_contrast],
    "translation": [rand_translation],
    "cutout": [rand_cutout],
}


def policy_names(policy: str) -> list[str]:
    return [p.strip() for p in policy.split(",") if p.strip()]


def diff_augment(x: torch.Tensor, policy: str = "") -> torch.Tensor:
    """Apply the comma-separated ``policy`` (names in :data:`AUGMENT_FNS`); ``""`` returns ``x``."""
    for name in policy_names(policy):
        for fn in AUGMENT_FNS[name]:
            x = fn(x)
    return x
