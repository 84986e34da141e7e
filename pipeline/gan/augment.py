"""Differentiable augmentation for data-efficient GAN training (Zhao et al. 2020, DiffAugment_pytorch).

The same random transforms go on real and fake images before every discriminator call (also in the
generator step, where gradients flow through them), so D cannot overfit the few real images.
Images are in [-1, 1]; every transform is safe for grayscale (saturation is a no-op on one channel).

    x = diff_augment(x, "color,translation,cutout")
    x = diff_augment(x, "color,translation", p=0.3)   # each transform on ~30 % of the images

With ``p < 1`` each transform is applied to each image with probability ``p``; :class:`AdaptiveP`
moves ``p`` with the overfitting heuristic of StyleGAN2-ADA (Karras et al. 2020): r_t = E[sign(D(real))]
near 1 means D is sure of every training image (overfitting), so p rises; below the target it falls.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from pipeline.names import policy_names


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


def diff_augment(x: torch.Tensor, policy: str = "", p: float = 1.0) -> torch.Tensor:
    """Apply the comma-separated ``policy`` (names in :data:`AUGMENT_FNS`); ``""`` or ``p == 0`` returns ``x``.

    Each transform goes on each image with probability ``p`` (all images at ``p = 1``).
    """
    if p <= 0:
        return x
    for name in policy_names(policy):
        for fn in AUGMENT_FNS[name]:
            if p >= 1:
                x = fn(x)
            else:
                keep = torch.rand(x.size(0), 1, 1, 1, device=x.device) >= p
                x = torch.where(keep, x, fn(x))
    return x


class AdaptiveP:
    """ADA's controller of the augmentation probability, from the sign of D's outputs on real images.

    Every ``interval`` D steps: r_t = mean(sign(D(real))) over those steps; p += sign(r_t - target) *
    (images seen in the interval) / (kimg * 1000), clamped to [0, 1]. So p goes from 0 to 1 in ``kimg``
    thousand images when D overfits all along.
    """

    def __init__(self, p: float, target: float, kimg: float, interval: int):
        self.p, self.target, self.kimg, self.interval = float(p), target, kimg, interval
        self.sum_sign: torch.Tensor | float = 0.0  # on the device until the interval ends: no host sync per step
        self.count = 0
        self.steps = 0
        self.r_t = 0.0

    def accumulate(self, real_logits: torch.Tensor) -> None:
        self.sum_sign = self.sum_sign + torch.sign(real_logits.detach().float()).sum()
        self.count += real_logits.numel()
        self.steps += 1
        if self.steps >= self.interval:
            self.r_t = float(self.sum_sign) / max(self.count, 1)
            adjust = (1.0 if self.r_t > self.target else -1.0) * self.count / (self.kimg * 1000.0)
            self.p = min(1.0, max(0.0, self.p + adjust))
            self.sum_sign, self.count, self.steps = 0.0, 0, 0

    def state_dict(self) -> dict:
        return {"p": self.p, "sum_sign": float(self.sum_sign), "count": self.count, "steps": self.steps, "r_t": self.r_t}

    def load_state_dict(self, state: dict) -> None:
        self.p, self.sum_sign = float(state["p"]), float(state["sum_sign"])
        self.count, self.steps, self.r_t = int(state["count"]), int(state["steps"]), float(state["r_t"])
