"""Tiny data for the generate tests: an imbalanced 3-class shape data set as an ingest cache, a params
file with a fast ``generate`` section, and an untrained generator saved in the GAN checkpoint format."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from pipeline.data.cache import SplitArrays
from pipeline.gan.checkpoint import FORMAT, save_checkpoint
from pipeline.gan.models import build_models
from tests.toydata import write_ingested

CLASSES = ["square", "disc", "bars"]
TRAIN_COUNTS = (12, 6, 4)  # imbalanced: disc and bars are the minority classes
VAL_COUNTS = (4, 4, 4)


def shapes(counts: tuple[int, ...], size_px: int = 32, channels: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, C, H, W) images of one bright shape per class at a random place, and int64 labels."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[:size_px, :size_px]
    images, labels = [], []
    for c, n in enumerate(counts):
        for _ in range(n):
            r = size_px // 4 + rs.randint(-2, 3)
            cy, cx = rs.randint(r, size_px - r, size=2)
            if c == 0:
                mask = (abs(yy - cy) < r) & (abs(xx - cx) < r)
            elif c == 1:
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            else:
                mask = ((yy + cy) // 3) % 2 == 0
            img = np.clip(30 + 190 * mask + rs.normal(0, 8, size=mask.shape), 0, 255).astype(np.uint8)
            tint = (1.0, 0.8, 0.6) if channels == 3 else (1.0,)
            images.append(np.stack([(img * t).astype(np.uint8) for t in tint]))
            labels.append(c)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def write_toy_cache(data_dir: Path, size_px: int = 32, channels: int = 1, modality: str = "mammography",
                    train_counts: tuple[int, ...] = TRAIN_COUNTS, val_counts: tuple[int, ...] = VAL_COUNTS) -> Path:
    """Train, val and test splits (test the size of val) as the ingest stage writes them (tests/toydata.py)."""
    splits = {}
    for split, counts, seed in (("train", train_counts, 0), ("val", val_counts, 1), ("test", val_counts, 2)):
        x, y = shapes(counts, size_px, channels, seed)
        splits[split] = SplitArrays(x, y, np.asarray([f"{split}_{i:03d}" for i in range(len(y))]))
    return write_ingested(data_dir, splits, CLASSES, modality=modality)


def write_toy_checkpoint(path: Path, model: str = "cdcgan", size_px: int = 32, channels: int = 1,
                         dataset: str = "toy", seed: int = 0, weight_std: float = 0.3) -> Path:
    """An untrained generator in the train_gan checkpoint format (wider weights, so images vary with z)."""
    torch.manual_seed(seed)
    G, _ = build_models(model, len(CLASSES), channels, size_px, 8, 16, 8)
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, (torch.nn.ConvTranspose2d, torch.nn.Linear)):
                m.weight.normal_(0.0, weight_std)
    arch = {"n_classes": len(CLASSES), "channels": channels, "resolution_px": size_px, "base_channels": 8,
            "z_dim": 16, "embed_dim": 8, "d_conditioning": "channels", "layer_noise_std": 0.0, "dropout": 0.0}
    state = {"format": FORMAT, "model": model, "arch": arch, "classes": CLASSES, "dataset": dataset,
             "G": G.state_dict(), "G_ema": None, "mlflow_run_id": None}
    save_checkpoint(state, path)
    return path


def fast_generate_section(**overrides) -> dict:
    section = {"classifier": {"epochs": 2, "batch_size": 8, "cache_dir": ""},
               "metrics": {"kid_subsets": 5, "fake_draws": 2, "diversity_pairs": 20},
               "filter": {"enabled": False}, "batch_size": 8, "num_threads": 1, "tracking": False}
    for key, value in overrides.items():
        if isinstance(value, dict):
            section.setdefault(key, {}).update(value)
        else:
            section[key] = value
    return section


def write_params(path: Path, generate: dict) -> Path:
    params = {"datasets": {"toy": {"source": {"reader": "folder", "root": "unused"}, "resolution_px": 32,
                                   "channels": 1, "modality": "cytology"}},
              "generate": generate}
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path
