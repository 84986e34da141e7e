"""Realism test of fakes: the k-NN balls of improved precision (Kynkaanniemi et al. 2019), per class.

A classifier's softmax says which class an image is closest to, not whether it is an image of that kind
at all: on the phantom cells, uniform grey got "high_grade" >= 0.5 in 86% of draws, Gaussian noise in
100%. Kynkaanniemi et al. ("Improved precision and recall metric for assessing generative models") ask
instead whether a fake lies on the real data's manifold, estimated by k-NN balls: every real training
image of class c is the centre of a ball whose radius is its distance to its k-th nearest other training
image of class c. A fake of class c is realistic when it lies inside at least one ball of class c, the
radii multiplied by a calibrated ``scale``, in EVERY space of :data:`SPACES` that is switched on:

- ``classifier``: the real-data classifier's penultimate features, as they are. Not L2-normalised:
  measured on the phantoms, noise, checkerboards and black images have 3-10x the feature norm of real
  images in a direction close to some class, so normalising moved them inside that class's balls.
- ``image_stats``: per channel the mean, std, 5th and 95th percentile of the pixels and the mean absolute
  gradient at 1, 2, 4 and 8 px (average-pooled), standardised on the training images. The classifier's
  features ignore what does not separate the classes: on the phantom mammograms, with 10 malignant
  training patches, 36% of flat, blank patches lay inside the malignant balls of the classifier space
  and none inside those of this one.

A point enters the balls of a space at s = min_i d(x, x_i) / r_i; it passes at scale s_max = the largest s
over the spaces. The training images are the ones the classifier was fitted to and the centres, so
fresh images of the class lie further out; the scale (>= 1) is therefore calibrated on the real
validation images: the smallest that lets ``val_pass`` of them in. A class with fewer than
``min_val_images`` validation images takes the scale calibrated on the validation images of all classes
together (each against the balls of its own class). A class with fewer than two training images has no
ball and is not tested (recorded as such).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.quality.metrics import kth_neighbour_radii

GRADIENT_SCALES_PX = (1, 2, 4, 8)


def image_statistics(images: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float64 (N, C x (4 + gradient scales)): intensity and multi-scale texture."""
    parts = []
    for s in range(0, len(images), chunk):
        x = images[s:s + chunk].double() / 255.0
        flat = x.flatten(2)
        stats = [flat.mean(2), flat.std(2), flat.quantile(0.05, dim=2), flat.quantile(0.95, dim=2)]
        for px in GRADIENT_SCALES_PX:
            if min(x.shape[-2:]) // px < 2:
                stats.append(torch.zeros_like(stats[0]))  # too small to have a gradient at this scale
                continue
            y = F.avg_pool2d(x, px) if px > 1 else x
            stats.append((y.diff(dim=2).abs().mean((2, 3)) + y.diff(dim=3).abs().mean((2, 3))) / 2)
        parts.append(torch.cat(stats, dim=1))
    width = images.shape[1] * (4 + len(GRADIENT_SCALES_PX))
    return torch.cat(parts) if parts else torch.zeros(0, width, dtype=torch.float64)


# space name -> (vectors of uint8 images and their classifier features, standardise on the training set)
SPACES: dict[str, tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], bool]] = {
    "classifier": (lambda images, features: features.double(), False),
    "image_stats": (lambda images, features: image_statistics(images), True),
}


def entry_scales(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """s = min_i d(p, c_i) / r_i for each row p of ``points``: it is inside some ball at scale s or more."""
    radii = radii.clamp(min=1e-12)
    parts = [(torch.cdist(points[s:s + chunk], centres) / radii).min(dim=1).values
             for s in range(0, len(points), chunk)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def calibrated_scale(scales: torch.Tensor, val_pass: float) -> float:
    """The smallest scale >= 1 at which at least ``val_pass`` of the points with these entry scales pass."""
    if len(scales) == 0:
        return 1.0
    ordered = np.sort(scales.numpy())
    n_needed = min(len(ordered), max(1, math.ceil(val_pass * len(ordered) - 1e-9)))
    return max(1.0, float(ordered[n_needed - 1]))


def pass_rate(scales: torch.Tensor, scale: float) -> float | None:
    """Share of points with these entry scales inside the balls at ``scale`` (None for no points)."""
    return float((scales <= scale).double().mean()) if len(scales) else None


@dataclass
class Space:
    """One space of the test: how to embed images, its standardisation, and the balls of each class."""

    name: str
    shift: torch.Tensor | None  # subtracted, then divided by ``spread`` (standardised spaces)
    spread: torch.Tensor | None
    centres: dict[int, torch.Tensor] = field(default_factory=dict)  # class index -> (M, D)
    radii: dict[int, torch.Tensor] = field(default_factory=dict)  # class index -> (M,)

    def vectors(self, images: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        v = SPACES[self.name][0](images, features).double()
        return v if self.shift is None else (v - self.shift) / self.spread


@dataclass
class RealismTest:
    """Per-class k-NN balls in each space with calibrated scales; :meth:`realistic` is the verdict on fakes."""

    spaces: list[Space]
    k: dict[int, int]  # class index -> k used (lowered for a class with <= k training images)
    scales: dict[int, float]  # class index -> radius scale
    k_requested: int
    val_pass: float
    min_val_images: int
    global_scale: float
    calibration: dict[int, dict] = field(default_factory=dict)  # class index -> n_val, pass rates, scale_from
    not_tested: dict[int, str] = field(default_factory=dict)  # class index -> why it has no balls

    def entry_scales(self, images: torch.Tensor, features: torch.Tensor, class_index: int,
                     per_space: bool = False) -> torch.Tensor | dict[str, torch.Tensor]:
        """The scale at which each image enters the balls of ``class_index`` in all spaces (0: untested class)."""
        if class_index not in self.scales:
            zeros = torch.zeros(len(images), dtype=torch.float64)
            return {s.name: zeros for s in self.spaces} if per_space else zeros
        each = {s.name: entry_scales(s.vectors(images, features), s.centres[class_index], s.radii[class_index])
                for s in self.spaces}
        return each if per_space else torch.stack(list(each.values())).max(dim=0).values

    def scale(self, class_index: int) -> float:
        """The calibrated radius scale of the class (inf for an untested class: everything passes)."""
        return self.scales.get(class_index, math.inf)

    def realistic(self, images: torch.Tensor, features: torch.Tensor, class_index: int) -> np.ndarray:
        """bool (N,): inside a scaled ball of the class in every space (always True for an untested class)."""
        return self.entry_scales(images, features, class_index).numpy() <= self.scale(class_index)

    def as_dict(self, classes: list[str]) -> dict:
        per_class = {}
        for i, name in enumerate(classes):
            if i in self.scales:
                per_class[name] = {"tested": True, "k": self.k[i], "scale": self.scales[i], **self.calibration[i]}
            else:
                per_class[name] = {"tested": False, "why": self.not_tested.get(i, "no training images")}
        return {"spaces": [s.name for s in self.spaces], "k": self.k_requested, "val_pass_target": self.val_pass,
                "min_val_images": self.min_val_images, "global_scale": self.global_scale, "per_class": per_class,
                "rule": "unrealistic unless, in every space, the fake lies within scale x r_i of some real training "
                        "image i of its class (r_i: distance of i to its k-th nearest training image of the class); "
                        "scale >= 1, the smallest that lets val_pass_target of the real validation images of the "
                        "class in (all classes pooled when it has < min_val_images)"}


def fit_realism(train_images: torch.Tensor, train_features: torch.Tensor, train_labels: torch.Tensor,
                val_images: torch.Tensor, val_features: torch.Tensor, val_labels: torch.Tensor, n_classes: int,
                spaces: list[str] | tuple[str, ...] = ("classifier", "image_stats"), k: int = 3,
                val_pass: float = 0.95, min_val_images: int = 10) -> RealismTest:
    """Balls of each class from its training images (uint8) and features, scales calibrated on validation."""
    unknown = [s for s in spaces if s not in SPACES]
    if unknown or not spaces:
        raise ValueError(f"realism spaces {list(spaces)}: use one or more of {list(SPACES)}")
    fitted: list[Space] = []
    train_v, val_v = {}, {}  # space name -> vectors
    for name in spaces:
        space = Space(name, None, None)
        raw = space.vectors(train_images, train_features)
        if SPACES[name][1] and len(raw) > 1:
            space.shift, space.spread = raw.mean(0), raw.std(0).clamp(min=1e-3)
        train_v[name] = raw if space.shift is None else (raw - space.shift) / space.spread
        val_v[name] = space.vectors(val_images, val_features)
        fitted.append(space)
    ks, scales, calibration, not_tested = {}, {}, {}, {}
    entry: dict[int, dict[str, torch.Tensor]] = {}
    for c in range(n_classes):
        mine = train_labels == c
        n_train = int(mine.sum())
        if n_train < 2:
            not_tested[c] = f"{n_train} training image(s): a k-NN ball needs >= 2"
            continue
        ks[c] = min(k, n_train - 1)
        entry[c] = {}
        for s in fitted:
            s.centres[c] = train_v[s.name][mine]
            s.radii[c] = kth_neighbour_radii(s.centres[c], ks[c])
            entry[c][s.name] = entry_scales(val_v[s.name][val_labels == c], s.centres[c], s.radii[c])
    joint = {c: torch.stack(list(e.values())).max(dim=0).values for c, e in entry.items()}
    pooled = torch.cat(list(joint.values())) if joint else torch.zeros(0, dtype=torch.float64)
    global_scale = calibrated_scale(pooled, val_pass)
    for c, s_c in joint.items():
        own = len(s_c) >= min_val_images
        scales[c] = sc = calibrated_scale(s_c, val_pass) if own else global_scale
        calibration[c] = {"scale_from": "class" if own else "all classes", "n_train": len(fitted[0].centres[c]),
                          "n_val": len(s_c), "real_val_pass_rate": pass_rate(s_c, sc),
                          "real_val_pass_rate_per_space": {n: pass_rate(x, sc) for n, x in entry[c].items()}}
    return RealismTest(fitted, ks, scales, k, val_pass, min_val_images, global_scale, calibration, not_tested)
