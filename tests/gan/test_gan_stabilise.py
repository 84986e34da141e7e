"""Each stabilisation switch changes what it should, and nothing when it is off."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.gan import losses
from pipeline.gan.augment import AUGMENT_FNS, diff_augment
from pipeline.gan.stabilise import add_instance_noise, d_targets, flip_targets, instance_noise_std
from pipeline.gan.step import ema_decay_at, ema_update


def test_two_sided_targets_within_ranges():
    torch.manual_seed(0)
    real, fake = d_targets(10000, "two_sided", [0.8, 1.2], [0.0, 0.3], "cpu")
    assert real.min() >= 0.8 and real.max() <= 1.2 and fake.min() >= 0.0 and fake.max() <= 0.3
    assert real.std() > 0.1 and fake.std() > 0.05  # random soft targets, not constants
    assert abs(real.mean() - 1.0) < 0.01 and abs(fake.mean() - 0.15) < 0.01


def test_one_sided_and_none():
    real, fake = d_targets(1000, "one_sided", [0.8, 1.0], [0.0, 0.3], "cpu")
    assert real.min() >= 0.8 and real.max() <= 1.0 and torch.all(fake == 0)
    real, fake = d_targets(1000, "none", [0.8, 1.2], [0.0, 0.3], "cpu")
    assert torch.all(real == 1) and torch.all(fake == 0)


@pytest.mark.parametrize("p", [0.05, 0.2])
def test_flips_at_the_set_rate(p):
    torch.manual_seed(1)
    n = 20000
    real, fake = flip_targets(torch.ones(n), torch.zeros(n), p)
    tol = 4 * math.sqrt(p * (1 - p) / n)  # 4 binomial standard deviations
    assert abs((real == 0).float().mean().item() - p) < tol
    assert abs((fake == 1).float().mean().item() - p) < tol
    same_real, same_fake = flip_targets(torch.ones(n), torch.zeros(n), 0.0)
    assert torch.all(same_real == 1) and torch.all(same_fake == 0)


@pytest.mark.parametrize("schedule", ["linear", "exponential"])
def test_noise_schedule_decays_to_zero(schedule):
    stds = [instance_noise_std(e, 0.2, 10, schedule) for e in range(15)]
    assert stds[0] == pytest.approx(0.2)
    assert all(a >= b for a, b in zip(stds, stds[1:]))  # never grows
    assert 0 < stds[9] < 0.2 and stds[10] == 0.0 and stds[14] == 0.0
    if schedule == "linear":
        assert stds[5] == pytest.approx(0.1)


def test_instance_noise_std_and_off_switch():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 16, 16)
    assert add_instance_noise(x, 0.0) is x
    assert (add_instance_noise(x, 0.3) - x).std().item() == pytest.approx(0.3, rel=0.05)


@pytest.mark.parametrize("policy", list(AUGMENT_FNS))
def test_diffaugment_policies_grey_and_differentiable(policy):
    torch.manual_seed(0)
    x = (torch.rand(8, 1, 16, 16) * 2 - 1).requires_grad_(True)
    out = diff_augment(x, policy)
    assert out.shape == x.shape and torch.isfinite(out).all()
    if policy != "saturation":  # saturation is a no-op on one channel, which is what makes it grey-safe
        assert not torch.allclose(out, x)
    out.sum().backward()
    assert x.grad is not None
    assert diff_augment(x, "") is x


def test_losses_on_targets():
    out = torch.tensor([3.0, -3.0])
    for name, loss in losses.LOSSES.items():
        assert torch.isfinite(loss.d_term(out, torch.tensor([1.0, 0.0]))), name
        assert torch.isfinite(loss.g_term(out)), name
    # least squares regresses onto the soft target; hinge ignores softness (only the side counts)
    assert losses.ls_d(torch.tensor([1.1]), torch.tensor([1.1])) == 0
    assert losses.hinge_d(out, torch.tensor([0.9, 0.2])) == losses.hinge_d(out, torch.tensor([1.0, 0.0]))
    # BCE accepts the > 1 targets of two-sided smoothing
    assert torch.isfinite(losses.ns_d(out, torch.tensor([1.2, 0.3])))


def test_aux_loss_is_cross_entropy_on_logits():
    logits = torch.tensor([[4.0, -2.0, 0.5], [0.1, 0.2, 3.0]])
    y = torch.tensor([0, 2])
    assert torch.equal(losses.aux_loss(logits, y), F.cross_entropy(logits, y))
    # what the softmax bug would give is different (and much flatter)
    assert not torch.allclose(losses.aux_loss(logits, y), F.cross_entropy(logits.softmax(1), y))


def test_ema_moves_towards_weights():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = a.weight.detach().clone()
    ema_update(a, b, 0.9)
    assert torch.allclose(a.weight, 0.9 * before + 0.1 * b.weight)


def test_ema_decay_warms_up_then_reaches_the_set_value():
    assert ema_decay_at(0.999, 0) == 0.1  # the first update takes 90 % of the new weights
    assert ema_decay_at(0.999, 90) == 0.91
    steps = [ema_decay_at(0.999, n) for n in range(20000)]
    assert all(a <= b for a, b in zip(steps, steps[1:]))
    assert steps[-1] == 0.999 and ema_decay_at(0.9, 200) == 0.9
    # After 700 updates the initial weights weigh < 1e-3, not 0.999 ** 700 ~ 0.5 as without warm-up.
    weight_of_init = 1.0
    for d in steps[:700]:
        weight_of_init *= d
    assert weight_of_init < 1e-3 < 0.999 ** 700
