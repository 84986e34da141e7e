"""One GAN update: fakes made once, aux loss on logits, ACGAN learns classes, options run."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import pipeline.gan.step as step_module
from gan_toy import case_study_config, shape_images
from pipeline.gan.models import build_models
from pipeline.gan.step import GanStep
from pipeline.quality.features import to_signed_unit


def make_step(model="acgan", seed=0, n_classes=2, **train):
    torch.manual_seed(seed)
    cfg = case_study_config()
    cfg.train.channels_last = "never"
    for k, v in train.items():
        setattr(cfg.train, k, v)
    G, D = build_models(model, n_classes, 1, 16, base_channels=8, z_dim=16, embed_dim=8,
                        layer_noise_std=cfg.stabilise.g_layer_noise_std, dropout=cfg.stabilise.g_dropout)
    return GanStep(G, D, model, cfg.train, cfg.stabilise, cfg.acgan, torch.device("cpu"))


def toy_batch(n=32, seed=0):
    x, y = shape_images(n // 2, 16, 1, 2, seed)
    return to_signed_unit(torch.from_numpy(x)), torch.from_numpy(y)


def test_fakes_made_once_per_step(monkeypatch):
    step = make_step()
    calls = []
    forward = step.G_raw.forward
    monkeypatch.setattr(step.G_raw, "forward", lambda z, y: calls.append(1) or forward(z, y))
    x, y = toy_batch()
    stats = step(x, y, 0.1)
    assert len(calls) == 1  # the D step's detached fakes are the G step's fakes
    assert stats.shape == (5,) and torch.isfinite(stats).all()


def test_aux_loss_gets_logits_never_softmax(monkeypatch):
    step = make_step()
    seen = []

    def spy(class_logits, labels):
        seen.append(class_logits.detach())
        return F.cross_entropy(class_logits, labels)

    def no_softmax(*args, **kwargs):
        raise AssertionError("softmax must not feed the auxiliary cross-entropy")

    monkeypatch.setattr(step_module, "aux_loss", spy)
    monkeypatch.setattr(torch, "softmax", no_softmax)
    monkeypatch.setattr(F, "softmax", no_softmax)
    monkeypatch.setattr(torch.Tensor, "softmax", no_softmax)
    x, y = toy_batch()
    step(x, y, 0.0)
    assert len(seen) == 3  # D on real, D on fake, G on fake
    with torch.no_grad():  # what reaches the loss is the raw output of the class head
        step.D_raw.eval()
        assert not torch.allclose(seen[0].sum(1), torch.ones(len(y)))


def test_acgan_aux_head_learns_two_shapes():
    step = make_step(seed=1)
    x, y = toy_batch(64, seed=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randperm(len(y), generator=gen)[:32]
        step(x[idx], y[idx], 0.1)
    with torch.no_grad():  # batch statistics, as in training (the running ones also saw the fakes)
        _, logits = step.D_raw(x, y)
    accuracy = (logits.argmax(1) == y).float().mean().item()
    assert accuracy >= 0.9  # chance is 0.5


@pytest.mark.parametrize("options", [
    {"loss": "hinge"}, {"loss": "least_squares"}, {"r1_gamma": 1.0}, {"ema_decay": 0.9},
    {"diffaugment": "color,translation,cutout"}, {"lr_g": 1e-3, "lr_d": 1e-4}, {"cpu_bf16": "on"},
])
@pytest.mark.parametrize("model", ["cdcgan", "acgan"])
def test_options_run_and_train(model, options):
    step = make_step(model, **options)
    g_before = [p.detach().clone() for p in step.G_raw.parameters()]
    x, y = toy_batch()
    for _ in range(2):
        stats = step(x, y, 0.1)
    assert torch.isfinite(stats).all()
    assert any(not torch.equal(a, b) for a, b in zip(g_before, step.G_raw.parameters()))
    if options.get("ema_decay"):
        assert not torch.equal(next(step.G_ema.parameters()), next(step.G_raw.parameters()))
        assert step.generator is step.G_ema
    else:
        assert step.generator is step.G_raw


def test_r1_changes_the_discriminator_update():
    x, y = toy_batch()
    plain, r1 = make_step(r1_gamma=0.0), make_step(r1_gamma=10.0)
    torch.manual_seed(3)
    plain(x, y, 0.0)
    torch.manual_seed(3)
    r1(x, y, 0.0)
    assert not torch.equal(next(plain.D_raw.parameters()), next(r1.D_raw.parameters()))


def test_state_dict_round_trip():
    a, b = make_step(seed=0, ema_decay=0.9), make_step(seed=1, ema_decay=0.9)
    x, y = toy_batch()
    a(x, y, 0.1)
    b.load_state_dict(copy.deepcopy(a.state_dict()))  # a copy, as torch.load gives: Adam keeps the tensors
    torch.manual_seed(7)
    a(x, y, 0.1)
    torch.manual_seed(7)
    b(x, y, 0.1)
    for pa, pb in zip(a.G_raw.state_dict().values(), b.G_raw.state_dict().values()):
        assert torch.equal(pa, pb)
