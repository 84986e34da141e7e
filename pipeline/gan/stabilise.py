"""The stabilisation of the case study as small pure functions: instance noise, soft labels, flips.

Noise injected at every generator layer and generator dropout are layers of the generator
(:mod:`pipeline.gan.models`). Each part is switched off by a param (std 0, scheme ``none``, p 0).
All random draws use the global torch RNG, whose state the checkpoint saves, so a resumed run draws
exactly what an uninterrupted one would.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

# exponential decay: std0 * exp(-EXP_RATE * epoch / decay_epochs), i.e. ~0.7 % of std0 left just
# before the std is set to 0 at decay_epochs.
EXP_RATE = 5.0


def noise_linear(epoch: int, std0: float, decay_epochs: int) -> float:
    return std0 * max(0.0, 1.0 - epoch / decay_epochs)


def noise_exponential(epoch: int, std0: float, decay_epochs: int) -> float:
    return std0 * math.exp(-EXP_RATE * epoch / decay_epochs) if epoch < decay_epochs else 0.0


NOISE_SCHEDULES: dict[str, Callable[[int, float, int], float]] = {
    "linear": noise_linear,
    "exponential": noise_exponential,
}


def instance_noise_std(epoch: int, std0: float, decay_epochs: int, schedule: str = "linear") -> float:
    """Std of the instance noise during ``epoch`` (0-based); 0 from ``decay_epochs`` on."""
    return NOISE_SCHEDULES[schedule](epoch, std0, decay_epochs)


def add_instance_noise(x: torch.Tensor, std: float) -> torch.Tensor:
    """Gaussian instance noise (Sønderby et al. 2016) on a discriminator input, real or fake."""
    return x + std * torch.randn_like(x) if std > 0 else x


Range = tuple[float, float]


def uniform(n: int, lo_hi: Range, device: torch.device | str) -> torch.Tensor:
    lo, hi = lo_hi
    return lo + (hi - lo) * torch.rand(n, device=device)


def targets_none(n: int, real: Range, fake: Range, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.ones(n, device=device), torch.zeros(n, device=device)


def targets_one_sided(n: int, real: Range, fake: Range, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    # Salimans et al. 2016: smooth only the real side, keep fakes at 0.
    return uniform(n, real, device), torch.zeros(n, device=device)


def targets_two_sided(n: int, real: Range, fake: Range, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    return uniform(n, real, device), uniform(n, fake, device)


SMOOTHING: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    "none": targets_none,
    "one_sided": targets_one_sided,
    "two_sided": targets_two_sided,
}


def d_targets(n: int, scheme: str, real: Range, fake: Range, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample discriminator targets for a real and a fake batch of ``n`` images each."""
    return SMOOTHING[scheme](n, real, fake, device)


def flip_targets(real_t: torch.Tensor, fake_t: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Swap each sample's target with the other side's with probability ``p`` (noisy labels for D)."""
    if p <= 0:
        return real_t, fake_t
    flip_real = torch.rand(real_t.shape, device=real_t.device) < p
    flip_fake = torch.rand(fake_t.shape, device=fake_t.device) < p
    return torch.where(flip_real, fake_t, real_t), torch.where(flip_fake, real_t, fake_t)
