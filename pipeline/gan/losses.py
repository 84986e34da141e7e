"""Adversarial losses as small pure functions, chosen by name in params.yaml (``gan.train.loss``).

Every loss is a pair: ``d_term(out, target)`` scores the discriminator's raw outputs (logits) against
per-sample targets (1 = real, 0 = fake, or the soft / flipped targets from
:mod:`pipeline.gan.stabilise`), ``g_term(out)`` is what the generator minimises on its fakes.
The discriminator loss is ``d_term(D(real), real_target) + d_term(D(fake), fake_target)``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F


class GanLoss(NamedTuple):
    d_term: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g_term: Callable[[torch.Tensor], torch.Tensor]


def ns_d(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # BCE on logits accepts soft targets, also the > 1 ones of two-sided smoothing (real in [0.8, 1.2]).
    return F.binary_cross_entropy_with_logits(out, target)


def ns_g(out: torch.Tensor) -> torch.Tensor:
    # Non-saturating: maximise log D(G(z)) rather than minimise log(1 - D(G(z))) (Goodfellow 2014).
    return F.binary_cross_entropy_with_logits(out, torch.ones_like(out))


def hinge_d(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # Hinge has no soft targets: a sample counts as real when its target is >= 0.5, so flips apply
    # and smoothing does not.
    sign = torch.where(target >= 0.5, 1.0, -1.0).to(out.dtype)
    return F.relu(1.0 - sign * out).mean()


def hinge_g(out: torch.Tensor) -> torch.Tensor:
    return -out.mean()


def ls_d(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # Least squares (Mao et al. 2017): regress the raw output onto the (soft) target.
    return 0.5 * (out - target).pow(2).mean()


def ls_g(out: torch.Tensor) -> torch.Tensor:
    return 0.5 * (out - 1.0).pow(2).mean()


LOSSES: dict[str, GanLoss] = {
    "non_saturating": GanLoss(ns_d, ns_g),
    "hinge": GanLoss(hinge_d, hinge_g),
    "least_squares": GanLoss(ls_d, ls_g),
}


def aux_loss(class_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ACGAN auxiliary class loss: cross-entropy on the *logits* (F.cross_entropy applies log-softmax).

    Feeding softmax outputs to cross-entropy (a bug in several public ACGAN ports) squashes the
    gradient and makes the auxiliary head learn very slowly.
    """
    return F.cross_entropy(class_logits, labels)
