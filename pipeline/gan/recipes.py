"""Named GAN recipes: each one a set of ``gan`` section values, so an ablation and a preset can name them.

``case_study`` is the DCGAN of the case study (transposed convs, BatchNorm in D, one-hot label channels,
BCE with two-sided label smoothing, instance noise, noise and dropout in every G layer, no EMA).
``data_efficient`` keeps the case study's BCE, label smoothing, flips and instance noise, and adds what the
ablation in ``reports/ablation/`` showed to move quality per CPU-minute on a few hundred images: spectral
normalisation in D, projection conditioning, nearest-neighbour up-sampling, DiffAugment without cutout whose
probability starts at 0 and follows D's overfitting (ADA heuristic), two D steps per G step, TTUR (D learns
4x faster than G), a small mode-seeking term against per-class collapse, an EMA of G, and for ACGAN the
class loss on real images only in D plus TAC-GAN's twin head.
params.yaml holds the ``data_efficient`` values; ``tests/gan/test_gan_recipes.py`` keeps the two in step.
"""
from __future__ import annotations

import copy

RECIPES: dict[str, dict] = {
    "case_study": {
        "train": {"ema_decay": 0.0, "diffaugment": "", "d_steps": 1, "loss": "non_saturating",
                  "diffaugment_adaptive": False, "cond_transition_steps": [0, 0], "lr_g": 0.0002, "lr_d": 0.0002,
                  "mode_seeking_weight": 0.0},
        "stabilise": {"g_layer_noise_std": 0.1, "g_dropout": 0.3, "label_smoothing": "two_sided",
                      "instance_noise_std": 0.1, "label_flip_prob": 0.05},
        "model": {"g_upsample": "transposed", "g_norm": "batch", "d_norm": "batch", "d_conditioning": "channels",
                  "skip_excitation": False, "d_self_supervised": False, "acgan_fake_aux_in_d": True,
                  "acgan_twin": False},
    },
    "data_efficient": {
        "train": {"ema_decay": 0.999, "diffaugment": "color,translation", "diffaugment_adaptive": True,
                  "diffaugment_p": 0.0, "d_steps": 2, "loss": "non_saturating", "cond_transition_steps": [0, 0],
                  "lr_g": 0.0001, "lr_d": 0.0004, "mode_seeking_weight": 0.05},
        "stabilise": {"g_layer_noise_std": 0.1, "g_dropout": 0.0, "label_smoothing": "two_sided",
                      "instance_noise_std": 0.1, "label_flip_prob": 0.05},
        "model": {"g_upsample": "nearest", "g_norm": "batch", "d_norm": "spectral", "d_conditioning": "projection",
                  "skip_excitation": False, "d_self_supervised": False, "acgan_fake_aux_in_d": False,
                  "acgan_twin": True},
    },
}


def apply_recipe(section: dict, name: str) -> dict:
    """A copy of a raw ``gan`` section with recipe ``name``'s values set (both models get ``model``'s)."""
    if name not in RECIPES:
        raise KeyError(f"GAN recipe {name!r}: use one of {', '.join(RECIPES)}")
    out = copy.deepcopy(section)
    recipe = RECIPES[name]
    for part in ("train", "stabilise"):
        out.setdefault(part, {}).update(recipe[part])
    for model in ("cdcgan", "acgan"):
        out.setdefault(model, {}).update(recipe["model"])
    return out
