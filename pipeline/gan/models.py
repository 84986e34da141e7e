"""Class-conditional DCGAN-style generators and discriminators (CDCGAN and ACGAN), grey or RGB.

As in the DCGAN seeds: images in [-1, 1] from a tanh, Gaussian z, BatchNorm, ReLU in G, LeakyReLU(0.2)
in D, N(0, 0.02) weights. The number of up/down-sampling blocks follows the resolution: a 4x4 map is
doubled (halved in D) log2(resolution / 4) times, so 16, 32, 64, 128 and 256 px share one code path.

- CDCGAN: G gets z concatenated with a class embedding; D gets the label as one-hot input channels
  (``conditioning="channels"``) or through a projection head (Miyato & Koyama 2018).
- ACGAN: the same G; D has a real/fake head and an auxiliary class head returning *logits*.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.errors import ConfigError

MAX_WIDTH_MULT = 8  # widest layer = 8 x base channels, as in DCGAN


def n_blocks(resolution_px: int) -> int:
    """Up-sampling blocks of G (and down-sampling blocks of D) from/to a 4x4 map."""
    blocks = math.log2(resolution_px / 4) if resolution_px >= 8 else -1
    if blocks < 1 or blocks != int(blocks):
        raise ConfigError(f"resolution {resolution_px} px: must be a power of two >= 8 (16, 32, 64, 128, 256)")
    return int(blocks)


class LayerNoise(nn.Module):
    """Gaussian noise added to a G activation while training (case-study stabilisation (b))."""

    def __init__(self, std: float):
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.std * torch.randn_like(x) if self.training else x

    def extra_repr(self) -> str:
        return f"std={self.std}"


def _g_block_tail(ch: int, noise_std: float, dropout: float) -> list[nn.Module]:
    tail: list[nn.Module] = [nn.BatchNorm2d(ch), nn.ReLU(inplace=True)]
    if noise_std > 0:
        tail.append(LayerNoise(noise_std))
    if dropout > 0:
        tail.append(nn.Dropout(dropout))
    return tail


class Generator(nn.Module):
    """G(z, y): z (N, z_dim) Gaussian, y (N,) class ids -> images (N, C, H, W) in [-1, 1]."""

    def __init__(self, n_classes: int, channels: int, resolution_px: int, base_channels: int = 64,
                 z_dim: int = 100, embed_dim: int = 50, layer_noise_std: float = 0.0, dropout: float = 0.0):
        super().__init__()
        n = n_blocks(resolution_px)
        widths = [base_channels * min(2 ** (n - 1 - i), MAX_WIDTH_MULT) for i in range(n)]  # 4x4 ... res/2
        self.z_dim, self.n_classes, self.width0 = z_dim, n_classes, widths[0]
        self.embed = nn.Embedding(n_classes, embed_dim)
        # A linear map to 4x4 is DCGAN's first 4x4 transposed conv on a 1x1 input.
        self.project = nn.Linear(z_dim + embed_dim, widths[0] * 16, bias=False)
        layers = _g_block_tail(widths[0], layer_noise_std, dropout)
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                       *_g_block_tail(c_out, layer_noise_std, dropout)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.project(torch.cat([z, self.embed(y).to(z.dtype)], dim=1))
        return self.body(h.view(-1, self.width0, 4, 4))


class Discriminator(nn.Module):
    """D(x, y) -> (real/fake logit (N,), class logits (N, n_classes) or None).

    ``conditioning``: ``channels`` (one-hot label maps beside the image), ``projection`` (inner product
    of a class embedding with the features) or ``aux`` (ACGAN: unconditional input, class head).
    """

    def __init__(self, n_classes: int, channels: int, resolution_px: int, base_channels: int = 64,
                 conditioning: str = "channels"):
        super().__init__()
        if conditioning not in ("channels", "projection", "aux"):
            raise ConfigError(f"discriminator conditioning {conditioning!r}: use channels, projection or aux")
        n = n_blocks(resolution_px)
        widths = [base_channels * min(2 ** i, MAX_WIDTH_MULT) for i in range(n)]  # res/2 ... 4x4
        self.n_classes, self.conditioning = n_classes, conditioning
        in_ch = channels + (n_classes if conditioning == "channels" else 0)
        # DCGAN: no BatchNorm on the first layer.
        layers: list[nn.Module] = [nn.Conv2d(in_ch, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out),
                       nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers, nn.Flatten())
        n_feat = widths[-1] * 16
        self.adv_head = nn.Linear(n_feat, 1)
        self.aux_head = nn.Linear(n_feat, n_classes) if conditioning == "aux" else None
        self.class_embed = nn.Embedding(n_classes, n_feat) if conditioning == "projection" else None
        init_weights(self)
        if self.class_embed is not None:  # the projection is a second head: start it as small as adv_head
            nn.init.normal_(self.class_embed.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.conditioning == "channels":
            maps = F.one_hot(y, self.n_classes).to(x.dtype)[:, :, None, None]
            x = torch.cat([x, maps.expand(-1, -1, x.shape[2], x.shape[3])], dim=1)
        h = self.features(x)
        adv = self.adv_head(h).squeeze(1)
        if self.class_embed is not None:
            adv = adv + (self.class_embed(y).to(h.dtype) * h).sum(dim=1)
        aux = self.aux_head(h) if self.aux_head is not None else None
        return adv, aux


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv/linear N(0, 0.02), BatchNorm weight N(1, 0.02), biases 0.

    Class embeddings keep PyTorch's N(0, 1), so the label weighs as much as z in G from the start.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def build_models(model: str, n_classes: int, channels: int, resolution_px: int, base_channels: int,
                 z_dim: int, embed_dim: int, d_conditioning: str = "channels", layer_noise_std: float = 0.0,
                 dropout: float = 0.0) -> tuple[Generator, Discriminator]:
    """G and D for ``model`` in {cdcgan, acgan}."""
    if model not in ("cdcgan", "acgan"):
        raise ConfigError(f"model {model!r}: use cdcgan or acgan")
    g = Generator(n_classes, channels, resolution_px, base_channels, z_dim, embed_dim, layer_noise_std, dropout)
    d = Discriminator(n_classes, channels, resolution_px, base_channels,
                      "aux" if model == "acgan" else d_conditioning)
    return g, d
