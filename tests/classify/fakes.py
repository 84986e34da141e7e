"""Tiny learnable data for the classifier tests: an ingest cache of 16 px shapes and a synthetic manifest."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.classify.config import BudgetConfig, ClassifierConfig, EvaluateConfig, StatsConfig
from pipeline.data.cache import SplitArrays
from pipeline.data import synthetic
from tests.conftest import write_png
from tests.toydata import shape_images, toy_split, write_ingested

CLASSES = ["normal", "benign", "malignant"]
SIZE_PX = 16
# imbalanced like the real sets: the last class is the minority
COUNTS = {"train": (18, 10, 5), "val": (5, 4, 3), "test": (8, 6, 4)}


def make_split(split: str, channels: int = 1, seed: int = 0) -> SplitArrays:
    return toy_split(split, COUNTS[split], CLASSES, channels, SIZE_PX, seed + 100 * list(COUNTS).index(split))


def write_cache(data_dir: Path, channels: int = 1, splits: dict[str, SplitArrays] | None = None) -> Path:
    """An ingested data set (tests/toydata.py): ``splits``, by default :func:`make_split` of each split."""
    return write_ingested(data_dir, splits or {s: make_split(s, channels) for s in COUNTS}, CLASSES)


def write_manifest(gan_dir: Path, gan: str, per_class: dict[str, int], channels: int = 1, seed: int = 7,
                   excluded: int = 1) -> Path:
    """syn_ PNGs of learnable shapes + their manifest; the first ``excluded`` rows are memorised (not kept)."""
    rows = []
    labels = [CLASSES.index(c) for c, n in per_class.items() for _ in range(n)]
    images = shape_images(np.array(labels), channels, seed)
    for i, (label, img) in enumerate(zip(labels, images)):
        rel = f"images/syn_{gan}_{CLASSES[label]}_{i:04d}.png"
        write_png(gan_dir / rel, img[0] if channels == 1 else img.transpose(1, 2, 0))
        reason = "kept" if i >= excluded else "memorised"
        rows.append(synthetic.ManifestRow(rel, CLASSES[label], gan, "best.pt", seed, reason, 0.9, 1.0, 10.0, "x"))
    path = gan_dir / "manifest.csv"
    synthetic.write_manifest(path, rows)
    return path


def tiny_config(**overrides) -> EvaluateConfig:
    """A config that trains in well under a second per run: 2 conv blocks, a few epochs, one process."""
    cfg = EvaluateConfig(seeds=[0, 1], classifier=ClassifierConfig(channels=[8, 16], dropout=0.0),
                         budget=BudgetConfig(max_epochs=6, min_epochs=2, patience=3, batch_size=16, lr=3e-3),
                         stats=StatsConfig(n_boot=200), workers=1, num_threads=1, tracking=False)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    cfg.validate("evaluate", "test")
    return cfg


def train_tiny_acgan(root: Path, data_dir: Path, epochs: int = 2) -> Path:
    """A trained ACGAN checkpoint on ``data_dir`` (16 px toy cache) in a few seconds: ``<root>/models/acgan/best.pt``.

    Uses the train_gan stage as DVC would, with the GAN tests' tiny settings (tests/gan/gan_toy.py)."""
    from stages.train_gan import main as train_gan_main
    from tests.gan.gan_toy import tiny_gan_section, write_params

    params = write_params(root / "gan_params.yaml", tiny_gan_section(epochs=epochs))
    out = root / "models" / "acgan"
    code = train_gan_main(["--params", str(params), "--dataset", "toy", "--model", "acgan", "--data-dir", str(data_dir),
                           "--run-dir", str(root / "runs" / "acgan"), "--out-dir", str(out),
                           "--metrics", str(root / "metrics_acgan.json"), "--plots", str(root / "plot_acgan.csv")])
    assert code == 0, f"tiny ACGAN training failed with exit code {code}"
    return out / "best.pt"
