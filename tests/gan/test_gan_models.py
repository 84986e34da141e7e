"""Generators and discriminators: shapes at every resolution, grey and RGB, and that conditioning works."""
from __future__ import annotations

import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.gan.models import Discriminator, Generator, build_models


@pytest.mark.parametrize("model", ["cdcgan", "acgan"])
@pytest.mark.parametrize("resolution,channels", [(16, 1), (32, 3), (64, 1), (128, 3)])
def test_shapes(model, resolution, channels):
    G, D = build_models(model, 3, channels, resolution, base_channels=4, z_dim=8, embed_dim=4)
    z, y = torch.randn(2, 8), torch.tensor([0, 2])
    x = G(z, y)
    assert x.shape == (2, channels, resolution, resolution)
    assert x.min() >= -1 and x.max() <= 1  # tanh
    adv, aux = D(x, y)
    assert adv.shape == (2,)
    assert (aux.shape == (2, 3)) if model == "acgan" else aux is None


def test_width_grows_with_base_channels():
    small = sum(p.numel() for p in Generator(3, 1, 32, base_channels=4).parameters())
    wide = sum(p.numel() for p in Generator(3, 1, 32, base_channels=16).parameters())
    assert wide > 2 * small


def test_bad_resolution():
    with pytest.raises(ConfigError, match="power of two"):
        Generator(2, 1, 48)


@pytest.mark.parametrize("model", ["cdcgan", "acgan"])
def test_same_z_other_label_gives_other_image(model):
    torch.manual_seed(0)
    G, _ = build_models(model, 3, 1, 16, base_channels=8, z_dim=8, embed_dim=4)
    G.eval()
    z = torch.randn(1, 8).repeat(3, 1)
    with torch.no_grad():
        x = G(z, torch.tensor([0, 1, 2]))
        other_z = G(torch.randn(1, 8), torch.tensor([0]))
    # an untrained G has outputs near 0: compare the label's effect with the effect of another z
    z_effect = (x[0] - other_z[0]).abs().mean()
    assert (x[0] - x[1]).abs().mean() > 0.2 * z_effect and (x[1] - x[2]).abs().mean() > 0.2 * z_effect
    with torch.no_grad():  # and the same label gives the same image (eval mode: no noise, no dropout)
        assert torch.allclose(G(z[:1], torch.tensor([1])), x[1:2], atol=1e-6)


@pytest.mark.parametrize("conditioning", ["channels", "projection"])
def test_cdcgan_discriminator_sees_the_label(conditioning):
    torch.manual_seed(0)
    D = Discriminator(3, 1, 16, base_channels=8, conditioning=conditioning).eval()
    x = torch.randn(1, 1, 16, 16).repeat(3, 1, 1, 1)
    with torch.no_grad():
        adv, _ = D(x, torch.tensor([0, 1, 2]))
    assert adv.unique().numel() == 3


def test_generator_noise_and_dropout_only_while_training():
    torch.manual_seed(0)
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 0, 1])
    for noise, dropout in [(0.1, 0.0), (0.0, 0.3)]:
        G = Generator(2, 1, 16, base_channels=8, z_dim=8, embed_dim=4, layer_noise_std=noise, dropout=dropout)
        with torch.no_grad():
            assert not torch.equal(G.train()(z, y), G(z, y))  # stochastic layers are on
            assert torch.equal(G.eval()(z, y), G(z, y))
    plain = Generator(2, 1, 16, base_channels=8, z_dim=8, embed_dim=4).train()
    with torch.no_grad():  # both off: training forward is deterministic too
        assert torch.equal(plain(z, y), plain(z, y))
