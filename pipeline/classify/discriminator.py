"""The semi-supervised arm's network: a trained ACGAN discriminator's class head, as a classifier.

The ACGAN discriminator learnt its features from every real training image and from the generator's images
(its adversarial and class losses); its class head ``aux_head`` already maps those features to the classes.
:class:`DiscriminatorClassifier` keeps D's trunk and class head (the adversarial, twin and projection heads
and the self-supervised decoder are dropped from the forward pass) so the classifier loop can fine-tune it on
the real training split like any other network. Only the GAN code's public pieces are used:
:func:`pipeline.gan.checkpoint.load_checkpoint` and :func:`pipeline.gan.models.build_models`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from pipeline.errors import DataError


class DiscriminatorClassifier(torch.nn.Module):
    """``x -> D's class logits``; ``x`` in [-1, 1] as for the GAN (``train.to_input`` gives that range)."""

    def __init__(self, discriminator: torch.nn.Module):
        super().__init__()
        self.discriminator = discriminator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # an ACGAN D reads no label (conditioning "aux"); y only feeds a projection head, which it has not
        y = torch.zeros(len(x), dtype=torch.long, device=x.device)
        return self.discriminator(x, y)[1]


def load_discriminator_classifier(path: str | Path, classes: list[str], channels: int,
                                  resolution_px: int) -> DiscriminatorClassifier:
    """D of an ACGAN checkpoint with its trained weights, checked against the data set it will classify."""
    from pipeline.gan.checkpoint import load_checkpoint
    from pipeline.gan.models import build_models

    state = load_checkpoint(path)
    if state.get("model") != "acgan":
        raise DataError(f"{path}: a {state.get('model')!r} checkpoint; the acgan_discriminator arm needs an ACGAN "
                        "(its discriminator has the class head)")
    if list(state["classes"]) != list(classes):
        raise DataError(f"{path}: classes {state['classes']} differ from the data set's {classes}; "
                        "retrain the ACGAN on this data set (dvc repro train_gan)")
    arch = state["arch"]
    if (arch["channels"], arch["resolution_px"]) != (channels, resolution_px):
        raise DataError(f"{path}: trained on {arch['channels']} x {arch['resolution_px']} px images, the data set "
                        f"has {channels} x {resolution_px} px; retrain the ACGAN on this data set")
    model_cfg = state["config"]["acgan"]
    keys = state["D"].keys()
    _, D = build_models("acgan", arch["n_classes"], channels, resolution_px, arch["base_channels"], arch["z_dim"],
                        arch["embed_dim"], d_norm=model_cfg.get("d_norm", "batch"),
                        d_self_supervised=any(k.startswith("decoder.") for k in keys),
                        acgan_twin=any(k.startswith("twin_head.") for k in keys),
                        d_minibatch_std=bool(model_cfg.get("d_minibatch_std", False)))
    D.load_state_dict(state["D"])
    return DiscriminatorClassifier(D)
