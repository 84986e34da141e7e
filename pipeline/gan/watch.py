"""Collapse watch: a cheap per-class quality score of a generator against the real validation images.

Score = mean over classes of the Frechet distance between features of fakes of class c and of real
validation images of class c (lower is better; it picks the best checkpoint). Diversity ratio of a
class = mean pairwise feature distance among its fakes / the same among its real images; a ratio
under ``min_diversity_ratio`` means the class is collapsing. The latents are fixed at construction,
so successive checks differ only by the generator, and the training RNG is never touched.
"""
from __future__ import annotations

import torch

from pipeline.quality.features import FeatureNet, extract_features, mean_pairwise_distance
from pipeline.quality.frechet import frechet_distance


class CollapseWatch:
    def __init__(self, feature_net: FeatureNet, val_images: torch.Tensor, val_labels: torch.Tensor,
                 train_images: torch.Tensor, train_labels: torch.Tensor, class_names: list[str],
                 samples_per_class: int, z_dim: int, seed: int, min_diversity_ratio: float):
        self.net, self.class_names, self.min_ratio = feature_net, class_names, min_diversity_ratio
        self.real_features: list[torch.Tensor] = []
        self.reference_split: list[str] = []
        for c in range(len(class_names)):
            split, imgs = "val", val_images[val_labels == c]
            if len(imgs) < 2:  # a tiny minority class may have 0-1 validation images: fall back to train
                split, imgs = "train", train_images[train_labels == c]
            self.reference_split.append(split)
            self.real_features.append(extract_features(feature_net, imgs))
        self.real_diversity = [mean_pairwise_distance(f) for f in self.real_features]
        device = train_images.device
        gen = torch.Generator(device=device).manual_seed(seed + 7919)
        self.z = torch.randn(len(class_names), samples_per_class, z_dim, generator=gen, device=device)

    @torch.no_grad()
    def __call__(self, G: torch.nn.Module) -> dict:
        was_training = G.training
        G.eval()
        fd, ratio = {}, {}
        for c, name in enumerate(self.class_names):
            z = self.z[c]
            fakes = torch.cat([G(z[i:i + 256], torch.full((len(z[i:i + 256]),), c, device=z.device)).float()
                               for i in range(0, len(z), 256)])
            feats = extract_features(self.net, fakes)
            if len(self.real_features[c]) >= 2:
                fd[name] = frechet_distance(feats, self.real_features[c])
                ratio[name] = mean_pairwise_distance(feats) / max(self.real_diversity[c], 1e-12)
        G.train(was_training)
        if not fd:
            return {"quality_fd": float("nan"), "diversity_ratio": float("nan"), "fd": {}, "diversity": {},
                    "collapsed": []}
        return {
            "quality_fd": sum(fd.values()) / len(fd),
            "diversity_ratio": min(ratio.values()),
            "fd": fd,
            "diversity": ratio,
            "collapsed": sorted(n for n, r in ratio.items() if r < self.min_ratio),
        }
