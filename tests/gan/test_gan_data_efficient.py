"""The data-efficient options: spectral norm, nearest up-sampling, conditional BatchNorm, skip excitation,
self-supervised and twin-head D, several D steps, the conditioning transition, adaptive DiffAugment,
the bfloat16 choice, time limits, and the hinge/smoothing refusal. Tiny tensors, seconds in all."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from gan_toy import case_study_config, shape_images
from pipeline.config import build
from pipeline.errors import ConfigError
from pipeline import runtime as precision
from pipeline.gan.augment import AdaptiveP, diff_augment
from pipeline.gan.config import GanConfig
from pipeline.gan.models import ConditionalBatchNorm, Discriminator, Generator, SkipExcitation, build_models
from pipeline.gan.step import GanStep, cond_weight
from pipeline.quality.features import to_signed_unit


def toy_batch(n=32, seed=0, size=16):
    x, y = shape_images(n // 2, size, 1, 2, seed)
    return to_signed_unit(torch.from_numpy(x)), torch.from_numpy(y)


def make_step(model="cdcgan", size=16, model_opts=None, **train):
    torch.manual_seed(0)
    cfg = case_study_config()
    cfg.train.channels_last = "never"
    cfg.train.cpu_bf16 = "off"
    for k, v in train.items():
        setattr(cfg.train, k, v)
    mcfg = cfg.model(model)
    for k, v in (model_opts or {}).items():
        setattr(mcfg, k, v)
    G, D = build_models(model, 2, 1, size, 8, 16, 8, mcfg.d_conditioning, 0.0, 0.0, mcfg.g_upsample, mcfg.g_norm,
                        mcfg.d_norm, mcfg.skip_excitation, mcfg.d_self_supervised, mcfg.acgan_twin)
    return GanStep(G, D, model, cfg.train, cfg.stabilise, mcfg, torch.device("cpu"))


# ------------------------------------------------------------------ models
def _sigma_max(w: torch.Tensor) -> float:
    return torch.linalg.matrix_norm(w.detach().flatten(1), ord=2).item()


def test_spectral_norm_bounds_every_d_weight_and_drops_batchnorm():
    torch.manual_seed(0)
    D = Discriminator(2, 1, 32, base_channels=8, conditioning="projection", norm="spectral")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    with torch.no_grad():  # blow the raw weights up: the normalised ones must stay at norm ~1
        for m in D.modules():
            if hasattr(m, "parametrizations"):
                m.parametrizations.weight.original.mul_(50.0)
        for _ in range(30):  # power iterations run in training-mode forwards
            D(torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 0, 1]))
    weights = [m.weight for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weights) >= 4
    for w in weights:
        assert _sigma_max(w) < 1.05
    plain = Discriminator(2, 1, 32, base_channels=8, norm="batch")
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())


@pytest.mark.parametrize("resolution", [16, 32, 64])
@pytest.mark.parametrize("model", ["cdcgan", "acgan"])
def test_every_option_together_has_the_right_shapes(model, resolution):
    G, D = build_models(model, 3, 3, resolution, 4, 8, 4, "projection", 0.1, 0.1, "nearest", "conditional_batch",
                        "spectral", True, True, True)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in G.modules())  # nearest: no transposed conv
    z, y = torch.randn(2, 8), torch.tensor([0, 2])
    x = G(z, y)
    assert x.shape == (2, 3, resolution, resolution)
    adv, aux, twin, (recon, target) = D(x, y, extras=True)
    assert adv.shape == (2,) and recon.shape == target.shape == (2, 3, min(32, resolution), min(32, resolution))
    assert (twin.shape == (2, 3)) if model == "acgan" else twin is None


def test_conditional_batchnorm_gain_and_bias_follow_the_class():
    bn = ConditionalBatchNorm(4, 3)
    x = torch.randn(6, 4, 5, 5)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    assert torch.allclose(bn(x, y), bn.bn(x), atol=1e-6)  # zero-initialised: a plain BatchNorm
    with torch.no_grad():
        bn.beta.weight[1] = 2.0
    out = bn(x, y)
    assert torch.allclose(out[1] - bn.bn(x)[1], torch.full_like(out[1], 2.0), atol=1e-5)
    assert torch.allclose(out[0], bn.bn(x)[0], atol=1e-6)
    assert torch.allclose(bn(x, y, w=0.0), bn.bn(x), atol=1e-6)  # weight 0: unconditional


def test_skip_excitation_is_a_channel_gate():
    sle = SkipExcitation(8, 4)
    large = torch.ones(2, 4, 16, 16)
    out = sle(torch.randn(2, 8, 8, 8), large)
    assert out.shape == large.shape and (out > 0).all() and (out < 1).all()
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out))  # one factor per channel


def test_conditioning_weight_zero_makes_g_and_d_unconditional():
    torch.manual_seed(0)
    G = Generator(3, 1, 16, 8, 8, 4, norm="conditional_batch").eval()
    with torch.no_grad():  # give the class-specific BatchNorm something to do
        for m in G.modules():
            if isinstance(m, ConditionalBatchNorm):
                m.gamma.weight.normal_(0, 0.5)
    z = torch.randn(1, 8).repeat(3, 1)
    y = torch.tensor([0, 1, 2])
    with torch.no_grad():
        assert not torch.allclose(G(z, y)[0], G(z, y)[1])
        G.cond_weight = 0.0
        x = G(z, y)
    assert torch.allclose(x[0], x[1], atol=1e-6) and torch.allclose(x[1], x[2], atol=1e-6)
    for conditioning in ("projection", "channels"):
        D = Discriminator(3, 1, 16, 8, conditioning=conditioning, norm="spectral").eval()
        img = torch.randn(1, 1, 16, 16).repeat(3, 1, 1, 1)
        with torch.no_grad():
            assert D(img, y)[0].unique().numel() == 3
            D.cond_weight = 0.0
            adv = D(img, y)[0]
            assert torch.allclose(adv, adv[:1].expand(3), atol=1e-6)


def test_conditioning_transition_schedule():
    assert [cond_weight(s, 100, 300) for s in (0, 99, 100, 200, 300, 1000)] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]
    assert cond_weight(0, 0, 0) == 1.0  # off
    assert cond_weight(50, 0, 100) == 0.5


def test_step_applies_the_transition_and_leaves_sampling_conditional():
    step = make_step(cond_transition_steps=[2, 4])
    x, y = toy_batch()
    seen = []
    forward = step.D_raw.forward
    step.D_raw.forward = lambda *a, **k: seen.append(step.D_raw.cond_weight) or forward(*a, **k)
    for _ in range(4):
        step(x, y, 0.0)
    assert seen[0] == 0.0 and seen[-1] == 0.5  # steps 0, 1: 0; step 3: (3 - 2) / 2
    assert step.G_raw.cond_weight == 1.0  # G outside the step draws conditional images
    assert step.state_dict()["g_steps"] == 4


# ------------------------------------------------------------------ the step
def test_two_d_steps_per_g_step_each_on_its_own_batch(monkeypatch):
    step = make_step(d_steps=2)
    d_calls, g_calls, reals = [], [], []
    monkeypatch.setattr(step.opt_D, "step", lambda *a, **k: d_calls.append(1))
    monkeypatch.setattr(step.opt_G, "step", lambda *a, **k: g_calls.append(1))
    d_update = step.d_update
    monkeypatch.setattr(step, "d_update", lambda r, y, f, s, yf: reals.append(r.clone()) or d_update(r, y, f, s, yf))
    x, y = toy_batch(32)
    step(x, y, 0.0)
    assert len(d_calls) == 2 and len(g_calls) == 1
    assert [len(r) for r in reals] == [16, 16] and torch.equal(reals[0], x[:16]) and torch.equal(reals[1], x[16:])


@pytest.mark.parametrize("opts", [{"d_self_supervised": True}, {"acgan_twin": True},
                                  {"acgan_fake_aux_in_d": False}, {"g_norm": "conditional_batch"},
                                  {"skip_excitation": True}, {"g_upsample": "nearest", "d_norm": "spectral"}])
def test_model_options_train(opts):
    step = make_step("acgan", model_opts=opts)
    before = {k: v.clone() for k, v in step.D_raw.state_dict().items()}
    g_before = [p.detach().clone() for p in step.G_raw.parameters()]
    x, y = toy_batch()
    stats = step(x, y, 0.1)
    assert torch.isfinite(stats).all()
    after = step.D_raw.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    if opts.get("d_self_supervised"):
        assert any(k.startswith("decoder.") for k in changed)
    if opts.get("acgan_twin"):
        assert any(k.startswith("twin_head.") for k in changed)
    assert any(not torch.equal(a, b) for a, b in zip(g_before, step.G_raw.parameters()))


def test_hinge_with_label_smoothing_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="label_smoothing") as err:
        build(GanConfig, {"train": {"loss": "hinge"}, "stabilise": {"label_smoothing": "two_sided"}}, "gan")
    assert "\n" not in str(err.value)
    cfg = build(GanConfig, {"train": {"loss": "hinge"}, "stabilise": {"label_smoothing": "none"}}, "gan")
    assert cfg.train.loss == "hinge"


def test_bad_transition_window_is_refused():
    with pytest.raises(ConfigError, match="cond_transition_steps"):
        build(GanConfig, {"train": {"cond_transition_steps": [300, 100]}}, "gan")


# ------------------------------------------------------------------ adaptive DiffAugment
def test_diffaugment_probability():
    x = torch.zeros(400, 1, 8, 8)
    assert torch.equal(diff_augment(x, "brightness", p=0.0), x)
    torch.manual_seed(0)
    changed = (diff_augment(x, "brightness", p=0.25) != 0).flatten(1).any(1).float().mean().item()
    assert 0.17 < changed < 0.33
    assert (diff_augment(x, "brightness", p=1.0) != 0).flatten(1).any(1).all()


def test_adaptive_p_rises_when_d_overfits_and_falls_when_it_does_not():
    ada = AdaptiveP(0.0, target=0.6, kimg=1.0, interval=2)
    for _ in range(4):  # D sure of every real image: r_t = 1 > 0.6
        ada.accumulate(torch.full((100,), 3.0))
    assert ada.r_t == 1.0 and ada.p == pytest.approx(0.4)  # 2 intervals x 200 images / 1000
    for _ in range(6):  # D unsure: r_t = 0 < 0.6
        ada.accumulate(torch.tensor([1.0, -1.0] * 50))
    assert ada.p == 0.0  # clamped
    restored = AdaptiveP(0.5, 0.6, 1.0, 2)
    restored.load_state_dict(ada.state_dict())
    assert restored.p == ada.p


def test_adaptive_p_moves_up_on_a_discriminator_that_overfits():
    # 16 real images, a D trained only on them: it becomes sure of them, so p must rise from 0
    step = make_step(diffaugment="color,translation", diffaugment_adaptive=True, diffaugment_p=0.0,
                     ada_kimg=0.5, ada_interval_steps=1, lr_d=2e-3, lr_g=0.0)
    x, y = toy_batch(16)
    for _ in range(40):
        step(x, y, 0.0)
    assert step.ada.r_t > 0.6 and step.augment_p > 0.3


# ------------------------------------------------------------------ precision
def test_bf16_is_chosen_only_where_the_cpu_has_it(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16\n")
    assert precision.cpu_flags(info) >= {"avx2", "avx512_bf16"}
    assert precision.use_cpu_bf16("auto", {"avx2", "avx512f"}) is False
    assert precision.use_cpu_bf16("auto", {"avx2", "avx512_bf16"}) is True
    assert precision.use_cpu_bf16("auto", {"amx_bf16"}) is True
    assert precision.use_cpu_bf16("on", set()) is True and precision.use_cpu_bf16("off", {"amx_bf16"}) is False
    assert precision.cpu_flags(tmp_path / "missing") == set()
    for flags, expect in (({"avx2"}, "float32"), ({"avx2", "amx_bf16"}, "bfloat16")):
        monkeypatch.setattr(precision, "cpu_flags", lambda *a, _f=flags: _f)
        step = make_step(cpu_bf16="auto")
        assert step.precision.startswith(expect)
        with step.autocast():
            out = torch.nn.functional.linear(torch.randn(2, 3), torch.randn(4, 3))
        assert out.dtype == (torch.bfloat16 if expect == "bfloat16" else torch.float32)


def test_minibatch_std_sees_a_batch_that_does_not_vary():
    from pipeline.gan.models import minibatch_stddev
    same = torch.randn(1, 3, 4, 4).repeat(8, 1, 1, 1)
    assert torch.allclose(minibatch_stddev(same)[:, 3], torch.zeros(8, 4, 4), atol=1e-3)
    varied = minibatch_stddev(torch.randn(8, 3, 4, 4))
    assert varied.shape == (8, 4, 4, 4) and (varied[:, 3] > 0.5).all()
    D = Discriminator(2, 1, 16, 8, conditioning="projection", norm="spectral", minibatch_std=True)
    assert D(torch.randn(6, 1, 16, 16), torch.tensor([0, 1] * 3))[0].shape == (6,)


def test_mode_seeking_pairs_fakes_of_one_class_and_penalises_sameness():
    from pipeline.gan.step import mode_seeking_term
    z = torch.randn(8, 4)
    same = torch.ones(8, 1, 4, 4)
    varied = torch.randn(8, 1, 4, 4)
    assert mode_seeking_term(same, z) > 100 * mode_seeking_term(varied, z)  # a collapsed G pays far more
    step = make_step(mode_seeking_weight=1.0)
    labels = []
    forward = step.G_raw.forward
    step.G_raw.forward = lambda z, y: labels.append(y.clone()) or forward(z, y)
    x, y = toy_batch(32)
    assert torch.isfinite(step(x, y, 0.0)).all()
    assert torch.equal(labels[-1][:16], labels[-1][16:])  # pairs (i, i + 16) share a class


def test_best_checkpoint_prefers_a_check_without_collapse():
    from pipeline.gan.train import better_check
    start = {"score": float("inf"), "epoch": 0}
    ok = {"quality_fd": 9.0, "collapsed": []}
    collapsed_low_fd = {"quality_fd": 2.0, "collapsed": ["benign"]}
    assert better_check(collapsed_low_fd, start)  # anything beats nothing
    assert better_check(ok, {"score": 2.0, "collapsed": ["benign"]})  # no collapse beats a lower FD with collapse
    assert not better_check(collapsed_low_fd, {"score": 9.0, "collapsed": []})
    assert better_check({"quality_fd": 8.0, "collapsed": []}, {"score": 9.0, "collapsed": []})
    assert not better_check({"quality_fd": float("nan"), "collapsed": []}, start)


def test_best_checkpoint_prefers_a_check_whose_every_class_keeps_the_diversity_floor():
    from pipeline.gan.train import better_check
    low_fd_thin = {"quality_fd": 5.0, "collapsed": [], "diversity_ratio": 0.6}
    diverse = {"quality_fd": 7.0, "collapsed": [], "diversity_ratio": 0.8}
    best_diverse = {"score": 7.0, "collapsed": [], "diversity": {"a": 0.8, "b": 0.9}}
    best_thin = {"score": 5.0, "collapsed": [], "diversity": {"a": 0.6, "b": 0.9}}
    assert not better_check(low_fd_thin, best_diverse, floor=0.7)  # a lower FD bought with diversity loses
    assert better_check(diverse, best_thin, floor=0.7)
    assert better_check(low_fd_thin, best_diverse, floor=0.0)  # floor 0: lowest FD among the uncollapsed
    assert better_check({"quality_fd": 6.0, "collapsed": [], "diversity_ratio": 0.75}, best_diverse, floor=0.7)
    collapsed = {"quality_fd": 1.0, "collapsed": ["a"], "diversity_ratio": 0.3}
    assert not better_check(collapsed, best_thin, floor=0.7)  # below the floor still beats collapsed
