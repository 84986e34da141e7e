"""Class-conditional generators and discriminators (CDCGAN and ACGAN), grey or RGB, DCGAN seeds plus the
data-efficient options.

As in the DCGAN seeds: images in [-1, 1] from a tanh, Gaussian z, ReLU in G, LeakyReLU(0.2) in D,
N(0, 0.02) weights. The number of up/down-sampling blocks follows the resolution: a 4x4 map is
doubled (halved in D) log2(resolution / 4) times, so 16, 32, 64, 128 and 256 px share one code path.

- CDCGAN: G gets z concatenated with a class embedding; D gets the label as one-hot input channels
  (``conditioning="channels"``) or through a projection head (Miyato & Koyama 2018).
- ACGAN: the same G; D has a real/fake head and an auxiliary class head returning *logits*, and
  optionally the twin class head of TAC-GAN (Gong et al. 2019), trained on fakes only.

Options (each one switch in ``gan.<model>``, tested on its own):

- ``g_upsample``: ``transposed`` (DCGAN's 4x4 stride-2 transposed conv) or ``nearest`` (nearest-neighbour
  x2 then a 3x3 conv: no checkerboard lattice, Odena et al. 2016).
- ``g_norm``: ``batch`` or ``conditional_batch`` (BatchNorm whose gain and bias depend on the class).
- ``d_norm``: ``batch`` (DCGAN) or ``spectral`` (spectral normalisation of every D weight, no BatchNorm:
  Miyato et al. 2018; bounds D's Lipschitz constant, the usual fix for small data sets).
- ``skip_excitation``: FastGAN's skip-layer excitation (Liu et al. 2021): the 8x8 map gates the channels
  of the last hidden map.
- ``d_minibatch_std``: ProGAN's minibatch standard deviation channel before D's heads (Karras et al. 2018).
- ``d_self_supervised``: FastGAN's self-supervised D: a small decoder reconstructs the real image from
  D's 8x8 features, so D must learn features that describe the image, not only real-vs-fake cues.

The conditioning transition (Shahbazi et al. 2022) sets ``cond_weight`` on G and D: the class embedding
(G), the class-specific BatchNorm part (G), the one-hot maps and the projection term (D) are scaled by
it, so a weight of 0 is an unconditional GAN and 1 the conditional one. Outside training it is 1.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from pipeline.errors import ConfigError
from pipeline.names import GANS

MAX_WIDTH_MULT = 8  # widest layer = 8 x base channels, as in DCGAN
UPSAMPLES = ("transposed", "nearest")
G_NORMS = ("batch", "conditional_batch")
D_NORMS = ("batch", "spectral")
RECON_PX = 32  # the self-supervised D reconstructs the real image at this size (or the resolution, if smaller)


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


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without affine parameters, then a class-dependent gain (1 + w * gamma_y) and bias w * beta_y.

    ``w`` is the conditioning weight: at 0 it is a plain BatchNorm with unit gain.
    """

    def __init__(self, ch: int, n_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(ch, affine=False)
        self.gamma = nn.Embedding(n_classes, ch)
        self.beta = nn.Embedding(n_classes, ch)
        nn.init.zeros_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor, w: float = 1.0) -> torch.Tensor:
        g = 1.0 + w * self.gamma(y).to(x.dtype)[:, :, None, None]
        b = w * self.beta(y).to(x.dtype)[:, :, None, None]
        return self.bn(x) * g + b


class SkipExcitation(nn.Module):
    """FastGAN's skip-layer excitation: a channel gate for a large map computed from a small one."""

    def __init__(self, ch_small: int, ch_large: int):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Conv2d(ch_small, ch_small, 4, 1, 0, bias=False),
                                  nn.LeakyReLU(0.1), nn.Conv2d(ch_small, ch_large, 1, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, small: torch.Tensor, large: torch.Tensor) -> torch.Tensor:
        return large * self.gate(small)


def _upsample(c_in: int, c_out: int, mode: str, bias: bool) -> nn.Module:
    if mode == "transposed":
        return nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias))


class GBlock(nn.Module):
    """(optional up-sampling) -> BatchNorm or conditional BatchNorm -> ReLU -> layer noise -> dropout."""

    def __init__(self, c_in: int, c_out: int, upsample: str | None, norm: str, n_classes: int,
                 noise_std: float, dropout: float):
        super().__init__()
        self.up = _upsample(c_in, c_out, upsample, bias=False) if upsample else nn.Identity()
        self.norm = ConditionalBatchNorm(c_out, n_classes) if norm == "conditional_batch" else nn.BatchNorm2d(c_out)
        tail: list[nn.Module] = [nn.ReLU(inplace=True)]
        if noise_std > 0:
            tail.append(LayerNoise(noise_std))
        if dropout > 0:
            tail.append(nn.Dropout(dropout))
        self.tail = nn.Sequential(*tail)

    def forward(self, x: torch.Tensor, y: torch.Tensor, w: float) -> torch.Tensor:
        h = self.up(x)
        h = self.norm(h, y, w) if isinstance(self.norm, ConditionalBatchNorm) else self.norm(h)
        return self.tail(h)


class Generator(nn.Module):
    """G(z, y): z (N, z_dim) Gaussian, y (N,) class ids -> images (N, C, H, W) in [-1, 1]."""

    def __init__(self, n_classes: int, channels: int, resolution_px: int, base_channels: int = 64,
                 z_dim: int = 100, embed_dim: int = 50, layer_noise_std: float = 0.0, dropout: float = 0.0,
                 upsample: str = "transposed", norm: str = "batch", skip_excitation: bool = False):
        super().__init__()
        if upsample not in UPSAMPLES:
            raise ConfigError(f"g_upsample {upsample!r}: use one of {', '.join(UPSAMPLES)}")
        if norm not in G_NORMS:
            raise ConfigError(f"g_norm {norm!r}: use one of {', '.join(G_NORMS)}")
        n = n_blocks(resolution_px)
        widths = [base_channels * min(2 ** (n - 1 - i), MAX_WIDTH_MULT) for i in range(n)]  # 4x4 ... res/2
        self.z_dim, self.n_classes, self.width0, self.last_width = z_dim, n_classes, widths[0], widths[-1]
        self.cond_weight = 1.0  # the conditioning transition's weight; 1 outside training
        self.embed = nn.Embedding(n_classes, embed_dim)
        # A linear map to 4x4 is DCGAN's first 4x4 transposed conv on a 1x1 input.
        self.project = nn.Linear(z_dim + embed_dim, widths[0] * 16, bias=False)
        self.blocks = nn.ModuleList([GBlock(widths[0], widths[0], None, norm, n_classes, layer_noise_std, dropout)])
        self.blocks.extend(GBlock(c_in, c_out, upsample, norm, n_classes, layer_noise_std, dropout)
                           for c_in, c_out in zip(widths[:-1], widths[1:]))
        # skip-layer excitation: the 8x8 map (4x4 at 16-32 px) gates the last hidden map
        self.sle_from = 1 if n >= 4 else 0
        self.sle = SkipExcitation(widths[self.sle_from], widths[-1]) if skip_excitation and n >= 2 else None
        self.to_image = nn.Sequential(_upsample(widths[-1], channels, upsample, bias=True), nn.Tanh())
        init_weights(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = self.cond_weight
        e = self.embed(y).to(z.dtype)
        h = self.project(torch.cat([z, e * w if w != 1.0 else e], dim=1)).view(-1, self.width0, 4, 4)
        small = None
        for i, block in enumerate(self.blocks):
            h = block(h, y, w)
            if i == self.sle_from:
                small = h
        if self.sle is not None:
            h = self.sle(small, h)
        return self.to_image(h)


def _d_layer(layer: nn.Module, spectral: bool) -> nn.Module:
    return spectral_norm(layer) if spectral else layer


class Discriminator(nn.Module):
    """D(x, y) -> (real/fake logit (N,), class logits (N, n_classes) or None).

    ``conditioning``: ``channels`` (one-hot label maps beside the image), ``projection`` (inner product
    of a class embedding with the features) or ``aux`` (ACGAN: unconditional input, class head).
    ``twin_head`` adds TAC-GAN's second class head, ``self_supervised`` a decoder of real images; both
    come back from ``D(x, y, extras=True)``.
    """

    def __init__(self, n_classes: int, channels: int, resolution_px: int, base_channels: int = 64,
                 conditioning: str = "channels", norm: str = "batch", self_supervised: bool = False,
                 twin_head: bool = False, minibatch_std: bool = False):
        super().__init__()
        if conditioning not in ("channels", "projection", "aux"):
            raise ConfigError(f"discriminator conditioning {conditioning!r}: use channels, projection or aux")
        if norm not in D_NORMS:
            raise ConfigError(f"d_norm {norm!r}: use one of {', '.join(D_NORMS)}")
        sn = norm == "spectral"
        n = n_blocks(resolution_px)
        widths = [base_channels * min(2 ** i, MAX_WIDTH_MULT) for i in range(n)]  # res/2 ... 4x4
        self.n_classes, self.conditioning = n_classes, conditioning
        self.cond_weight = 1.0
        in_ch = channels + (n_classes if conditioning == "channels" else 0)
        # DCGAN: no BatchNorm on the first layer; spectral norm: none anywhere.
        layers: list[nn.Module] = [_d_layer(nn.Conv2d(in_ch, widths[0], 4, 2, 1), sn), nn.LeakyReLU(0.2, inplace=True)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers.append(_d_layer(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=sn), sn))
            if not sn:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.trunk = nn.Sequential(*layers)
        # the 8x8 map feeds the self-supervised decoder (4x4 at 16 px): index of the block that makes it
        self.recon_block = max(0, n - 2)
        self.minibatch_std = minibatch_std
        n_feat = (widths[-1] + int(minibatch_std)) * 16
        self.adv_head = _d_layer(nn.Linear(n_feat, 1), sn)
        self.aux_head = _d_layer(nn.Linear(n_feat, n_classes), sn) if conditioning == "aux" else None
        self.twin_head = _d_layer(nn.Linear(n_feat, n_classes), sn) if conditioning == "aux" and twin_head else None
        self.class_embed = nn.Embedding(n_classes, n_feat) if conditioning == "projection" else None
        self.decoder = None
        if self_supervised:
            c = widths[self.recon_block]
            size = 4 * 2 ** (n - 1 - self.recon_block)
            self.recon_px = min(RECON_PX, resolution_px)
            ups: list[nn.Module] = []
            while size < self.recon_px:
                ups += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, max(c // 2, 8), 3, 1, 1),
                        nn.BatchNorm2d(max(c // 2, 8)), nn.LeakyReLU(0.2, inplace=True)]
                c, size = max(c // 2, 8), size * 2
            self.decoder = nn.Sequential(*ups, nn.Conv2d(c, channels, 3, 1, 1), nn.Tanh())
        init_weights(self)
        if self.class_embed is not None:  # the projection is a second head: start it as small as adv_head
            nn.init.normal_(self.class_embed.weight, 0.0, 0.02)
            if sn:
                self.class_embed = spectral_norm(self.class_embed)

    def _input(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.conditioning != "channels":
            return x
        maps = F.one_hot(y, self.n_classes).to(x.dtype)[:, :, None, None] * self.cond_weight
        return torch.cat([x, maps.expand(-1, -1, x.shape[2], x.shape[3])], dim=1)

    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat features and the map the decoder reads (the output of block ``recon_block``)."""
        mid, block = None, -1
        for layer in self.trunk:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                block += 1
                if block == self.recon_block:
                    mid = x
        if self.minibatch_std:
            x = minibatch_stddev(x)
        return x.flatten(1), mid

    def heads(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        adv = self.adv_head(h).squeeze(1)
        if self.class_embed is not None:
            adv = adv + self.cond_weight * (self.class_embed(y).to(h.dtype) * h).sum(dim=1)
        aux = self.aux_head(h) if self.aux_head is not None else None
        return adv, aux

    def forward(self, x: torch.Tensor, y: torch.Tensor, extras: bool = False):
        """``(adv, aux)``; with ``extras`` also ``twin`` logits (or None) and ``(reconstruction, target)``
        (or None) of the self-supervised decoder, all from one pass (so DDP sees one forward)."""
        h, mid = self._trunk(self._input(x, y))
        adv, aux = self.heads(h, y)
        if not extras:
            return adv, aux
        twin = self.twin_head(h) if self.twin_head is not None else None
        recon = None
        if self.decoder is not None:
            target = x if x.shape[-1] == self.recon_px else \
                F.interpolate(x, size=(self.recon_px, self.recon_px), mode="area")
            recon = (self.decoder(mid), target)
        return adv, aux, twin, recon


def minibatch_stddev(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """ProGAN's minibatch standard deviation: one extra channel holding how much the images of a group of
    ``group`` differ (std over the group, averaged over channels and pixels). A generator that draws the
    same image for every z gives a group std near 0, which D can see: a direct signal against mode collapse."""
    n, c, h, w = x.shape
    g = min(group, n)
    while n % g:
        g -= 1
    y = x.float().view(g, n // g, c, h, w)
    y = (y - y.mean(0)).pow(2).mean(0).add(1e-8).sqrt().mean(dim=(1, 2, 3))  # (n // g,)
    y = y.repeat(g).view(n, 1, 1, 1).expand(n, 1, h, w).to(x.dtype)
    return torch.cat([x, y], dim=1)


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv/linear N(0, 0.02), BatchNorm weight N(1, 0.02), biases 0.

    Class embeddings keep PyTorch's N(0, 1), so the label weighs as much as z in G from the start
    (conditional BatchNorm's embeddings are zeroed in their own constructor: they start as plain BN).
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def set_cond_weight(weight: float, *modules: nn.Module | None) -> None:
    """Set the conditioning transition's weight on G, its EMA and D (DDP wrappers unwrapped)."""
    for m in modules:
        if m is not None:
            getattr(m, "module", m).cond_weight = float(weight)


def build_models(model: str, n_classes: int, channels: int, resolution_px: int, base_channels: int,
                 z_dim: int, embed_dim: int, d_conditioning: str = "channels", layer_noise_std: float = 0.0,
                 dropout: float = 0.0, g_upsample: str = "transposed", g_norm: str = "batch",
                 d_norm: str = "batch", skip_excitation: bool = False, d_self_supervised: bool = False,
                 acgan_twin: bool = False, d_minibatch_std: bool = False) -> tuple[Generator, Discriminator]:
    """G and D for ``model`` in {cdcgan, acgan}."""
    if model not in GANS:
        raise ConfigError(f"model {model!r}: use one of {', '.join(GANS)}")
    g = Generator(n_classes, channels, resolution_px, base_channels, z_dim, embed_dim, layer_noise_std, dropout,
                  g_upsample, g_norm, skip_excitation)
    d = Discriminator(n_classes, channels, resolution_px, base_channels,
                      "aux" if model == "acgan" else d_conditioning, d_norm, d_self_supervised,
                      acgan_twin and model == "acgan", d_minibatch_std)
    return g, d
