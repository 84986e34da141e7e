"""A feature space learned inside the project: a small CNN classifier trained on the real training split.

No Inception weights can be downloaded here, and ImageNet features suit mammograms and Pap cells
poorly anyway. The penultimate layer of a classifier trained for a few epochs on the real training
images is the space in which Frechet distances and diversity are measured. Training is seeded and
leaves the caller's RNG untouched; the network is cached in the run folder.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.io import torch_save_atomic
from pipeline.progress import progress


def to_signed_unit(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range of the generators' tanh."""
    return images_uint8.float().div_(127.5).sub_(1.0)


class FeatureNet(nn.Module):
    """Four stride-2 conv stages (64 px -> 4x4), global average pooling, a ``feature_dim`` embedding, a class head.

    Striding from the first layer keeps it cheap (~4 MMAC per 64 px image): it trains in seconds on CPU.
    """

    def __init__(self, channels: int, n_classes: int, feature_dim: int = 64, width: int = 16):
        super().__init__()
        self.config = {"channels": channels, "n_classes": n_classes, "feature_dim": feature_dim, "width": width}
        widths = [channels, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
        self.trunk = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], feature_dim))
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (before the ReLU that feeds the head): (N, feature_dim)."""
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.features(x)))


def train_feature_net(images: torch.Tensor, labels: torch.Tensor, n_classes: int, feature_dim: int = 64,
                      epochs: int = 8, seed: int = 0, batch_size: int = 64, lr: float = 1e-3) -> FeatureNet:
    """Train on uint8 ``images`` (N, C, H, W) and ``labels`` (N,), on their device; returns it in eval mode."""
    device = images.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        net = FeatureNet(images.shape[1], n_classes, feature_dim).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        n = len(labels)
        for _ in progress(range(epochs), desc="feature net", unit="epoch", leave=False):
            order = torch.randperm(n, device=device)
            for start in range(0, n - 1, batch_size):  # skip a last batch of one (BatchNorm)
                idx = order[start:start + batch_size]
                x = to_signed_unit(images[idx])
                flip = torch.rand(len(idx), 1, 1, 1, device=device) < 0.5
                x = torch.where(flip, x.flip(3), x)  # mirror: tissue and cells have no handedness
                loss = F.cross_entropy(net(x), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    recalibrate_batchnorm(net, images, batch_size)
    return net.eval()


@torch.no_grad()
def recalibrate_batchnorm(net: nn.Module, images: torch.Tensor, batch_size: int = 64) -> None:
    """Set BatchNorm running statistics to the exact averages over ``images`` (uint8) with the final weights.

    After the few dozen steps of a short training the momentum averages still lag the weights, and
    eval-mode features would be distorted.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    net.train()
    for start in range(0, len(images) - 1, batch_size):  # no batch of one (BatchNorm needs two)
        net(to_signed_unit(images[start:start + batch_size]))
    for m in norms:
        m.momentum = 0.1


@torch.no_grad()
def extract_features(net: FeatureNet, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Features (N, feature_dim) of float images in [-1, 1] or uint8 images."""
    was_training = net.training
    net.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        out.append(net.features(to_signed_unit(x) if x.dtype == torch.uint8 else x.float()))
    net.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, net.config["feature_dim"])


def mean_pairwise_distance(features: torch.Tensor) -> float:
    """Intra-set diversity: mean Euclidean distance over all pairs (0 when all points coincide)."""
    if len(features) < 2:
        return 0.0
    return float(torch.pdist(features.double()).mean())


def data_fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    h = hashlib.sha256()
    h.update(str(tuple(images.shape)).encode())
    h.update(images.detach().cpu().contiguous().numpy().tobytes())
    h.update(labels.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def load_or_train_feature_net(path: str | Path, images: torch.Tensor, labels: torch.Tensor, n_classes: int,
                              feature_dim: int = 64, epochs: int = 8, seed: int = 0) -> FeatureNet:
    """The cached network at ``path`` when it was trained on the same data and settings, else train and cache."""
    path = Path(path)
    key = {"data": data_fingerprint(images, labels), "feature_dim": feature_dim, "epochs": epochs, "seed": seed,
           "n_classes": n_classes}
    if path.is_file():
        saved = torch.load(path, map_location=images.device, weights_only=True)
        if saved.get("key") == key:
            with torch.random.fork_rng(devices=[]):  # building layers draws their initial weights
                net = FeatureNet(**saved["config"]).to(images.device)
            net.load_state_dict(saved["state_dict"])
            return net.eval()
    net = train_feature_net(images, labels, n_classes, feature_dim, epochs, seed)
    torch_save_atomic({"key": key, "config": net.config, "state_dict": net.state_dict()}, path)
    return net
