"""The real-data classifier behind the filter, the gate's feature space and the quality metrics.

A :class:`~pipeline.quality.features.FeatureNet` trained on the real training split only, with a
class-balanced loss (inverse class frequency) so that a minority class is not under-predicted, which
would make the confidence filter drop nearly all of its fakes, and with dihedral flips (patches and
cells have no orientation). Trained networks are cached under ``cache_dir`` in a file named by a hash
of the data and the settings, so the cdcgan and acgan runs of one data set share one feature space and
two processes never write the same file.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.io import torch_save_atomic
from pipeline.generate.config import ClassifierConfig
from pipeline.quality.features import FeatureNet, data_fingerprint, extract_features, to_signed_unit


def random_dihedral(x: torch.Tensor) -> torch.Tensor:
    """Each image mirrored and/or transposed at random (the 8 symmetries of the square)."""
    n = len(x)
    flip_h = torch.rand(n, 1, 1, 1) < 0.5
    flip_v = torch.rand(n, 1, 1, 1) < 0.5
    x = torch.where(flip_h, x.flip(3), x)
    x = torch.where(flip_v, x.flip(2), x)
    transpose = torch.rand(n, 1, 1, 1) < 0.5
    return torch.where(transpose, x.transpose(2, 3), x) if x.shape[2] == x.shape[3] else x


def train_classifier(images: torch.Tensor, labels: torch.Tensor, n_classes: int, cfg: ClassifierConfig) -> FeatureNet:
    """Train on uint8 ``images`` (N, C, H, W) and ``labels``; seeded, the caller's RNG is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = FeatureNet(images.shape[1], n_classes, cfg.feature_dim)
        counts = torch.bincount(labels, minlength=n_classes).double()
        weight = torch.where(counts > 0, counts.sum() / (n_classes * counts.clamp(min=1)), torch.zeros_like(counts))
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        n = len(labels)
        for _ in range(cfg.epochs):
            order = torch.randperm(n)
            for start in range(0, n - 1, cfg.batch_size):  # skip a last batch of one (BatchNorm)
                idx = order[start:start + cfg.batch_size]
                x = random_dihedral(to_signed_unit(images[idx]))
                loss = F.cross_entropy(net(x), labels[idx], weight=weight.float())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return net.eval()


def load_or_train_classifier(images: torch.Tensor, labels: torch.Tensor, n_classes: int, cfg: ClassifierConfig,
                             cache_dir: str | Path | None) -> FeatureNet:
    """The cached network for these data and settings, else train one (and cache it when ``cache_dir``)."""
    key = {"data": data_fingerprint(images, labels), "n_classes": n_classes, "feature_dim": cfg.feature_dim,
           "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed, "version": 1}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"classifier-{digest}.pt" if cache_dir else None
    if path is not None and path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("key") == key:
                net = FeatureNet(**saved["config"])
                net.load_state_dict(saved["state_dict"])
                return net.eval()
        except Exception:  # a truncated or foreign file: retrain and overwrite
            pass
    net = train_classifier(images, labels, n_classes, cfg)
    if path is not None:
        torch_save_atomic({"key": key, "config": net.config, "state_dict": net.state_dict()}, path)
    return net


@torch.no_grad()
def features_and_probabilities(net: FeatureNet, images: torch.Tensor,
                               batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features (N, D) and softmax (N, n_classes) of uint8 images, with one pass of the trunk."""
    feats = extract_features(net, images, batch_size)
    return feats, torch.softmax(net.head(F.relu(feats)), dim=1)
