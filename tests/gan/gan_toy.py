"""Tiny synthetic data for the GAN tests: simple shapes per class, written as an ingest cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from pipeline.data.cache import SplitArrays
from tests.toydata import write_ingested

SHAPES = ("square", "cross", "bars")


def shape_images(n_per_class: int, size_px: int = 16, channels: int = 1, n_classes: int = 2,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, C, H, W) images of one bright shape per class at a random place, plus int64 labels."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[:size_px, :size_px]
    images, labels = [], []
    for c in range(n_classes):
        for _ in range(n_per_class):
            r = size_px // 4
            cy, cx = rs.randint(r, size_px - r, size=2)
            if SHAPES[c] == "square":
                mask = (abs(yy - cy) < r) & (abs(xx - cx) < r)
            elif SHAPES[c] == "cross":
                mask = ((abs(yy - cy) < r + 1) & (abs(xx - cx) < 1 + r // 4)) | \
                       ((abs(xx - cx) < r + 1) & (abs(yy - cy) < 1 + r // 4))
            else:
                mask = (yy // 2) % 2 == 0
            img = 30 + 190 * mask + rs.normal(0, 8, size=mask.shape)
            img = np.clip(img, 0, 255).astype(np.uint8)
            tint = [1.0, 0.8, 0.6][:channels] if channels == 3 else [1.0]
            images.append(np.stack([(img * t).astype(np.uint8) for t in tint]))
            labels.append(c)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def write_cache(data_dir: Path, n_train: int = 32, n_val: int = 8, size_px: int = 16, channels: int = 1,
                n_classes: int = 2) -> Path:
    """An ingested data set of shapes (tests/toydata.py): ``n_train`` per class in train, ``n_val`` in val and test."""
    splits = {}
    for split, n, seed in (("train", n_train, 0), ("val", n_val, 1), ("test", n_val, 2)):
        x, y = shape_images(n, size_px, channels, n_classes, seed)
        splits[split] = SplitArrays(x, y, np.asarray([f"{split}_{i}" for i in range(len(y))]))
    return write_ingested(data_dir, splits, SHAPES[:n_classes], modality="cytology" if channels == 3 else "mammography")


def tiny_gan_section(**train_overrides) -> dict:
    """A gan: section for 16 px toy runs of the case-study recipe: small widths, few epochs, no MLflow."""
    train = {"epochs": 2, "batch_size": 16, "checkpoint_every_epochs": 1, "sample_every_epochs": 1,
             "log_every_steps": 2, "tracking": False, "channels_last": "never", "num_threads": 1}
    train.update(train_overrides)
    small = {"resolution_px": 0, "base_channels": 8, "z_dim": 16, "embed_dim": 8}
    return case_study_section({"train": train, "watch": {"every_epochs": 1, "samples_per_class": 8,
                                                         "feature_epochs": 1, "feature_dim": 8},
                               "stabilise": {"instance_noise_decay_epochs": 2}, "cdcgan": dict(small),
                               "acgan": dict(small)})


def write_params(path: Path, gan: dict, dataset: str = "toy") -> Path:
    params = {"datasets": {dataset: {"source": {"reader": "folder", "root": "unused"}, "resolution_px": 32,
                                     "channels": 1, "modality": "cytology"}},
              "gan": gan}
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


# The values the GAN unit tests were written against: the case study's recipe and loop (the dataclass
# defaults before they became the CPU default run's data_efficient values).
CASE_STUDY_LOOP = {
    "train": {"epochs": 200, "batch_size": 64, "diffaugment_p": 1.0, "log_every_steps": 50,
              "checkpoint_every_epochs": 10, "sample_every_epochs": 10},
    "stabilise": {"instance_noise_decay_epochs": 100},
    "watch": {"every_epochs": 10, "samples_per_class": 100, "feature_epochs": 8},
    "cdcgan": {"resolution_px": 64, "base_channels": 64},
    "acgan": {"resolution_px": 64, "base_channels": 64},
}


def case_study_section(section: dict | None = None) -> dict:
    """A raw gan: section: the case-study recipe and loop, with ``section``'s values written over them."""
    from pipeline.config import merge
    from pipeline.gan.recipes import apply_recipe

    return merge(apply_recipe(CASE_STUDY_LOOP, "case_study"), section or {})


def case_study_config(section: dict | None = None):
    """:class:`GanConfig` of :func:`case_study_section`."""
    from pipeline.gan.config import GanConfig
    from pipeline.schema import build

    return build(GanConfig, case_study_section(section), "gan")
