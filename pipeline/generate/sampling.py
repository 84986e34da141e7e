"""Load a trained generator, check it fits the data set, and sample reproducible images from it.

Image ``i`` of class ``c`` has its own seed, drawn from (``seed``, ``c``, ``i``) by numpy's SeedSequence,
and its latent is ``torch.randn(z_dim, generator=torch.Generator().manual_seed(image_seed))``: any single
image can be regenerated from the seed in its manifest row, whatever batch it was made in.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import DataError
from pipeline.gan.checkpoint import load_generator
from pipeline.gan.models import Generator


@dataclass
class LoadedGenerator:
    G: Generator
    model: str  # cdcgan / acgan
    dataset: str  # the data set it was trained on
    classes: list[str]
    channels: int
    resolution_px: int
    z_dim: int
    ema: bool  # sampling from the EMA weights
    label: str  # file name + short content hash, e.g. best.pt@3f2a9c1d04e5 (no folders: no absolute paths)
    mlflow_run_id: str | None
    path: Path


def file_label(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{path.name}@{h.hexdigest()[:12]}"


def load_checked_generator(path: str | Path, prefer_ema: bool = True, model: str | None = None,
                           dataset: str | None = None) -> LoadedGenerator:
    """The generator of checkpoint ``path`` after checking it is the expected model trained on ``dataset``.

    Every problem (missing file, not a checkpoint, another model or data set) is a one-line DataError.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found; run the train_gan stage first (dvc repro train_gan) "
                        "or pass --checkpoint FILE")
    G, state = load_generator(path, "cpu", prefer_ema)
    arch, ckpt_model = state["arch"], str(state.get("model", ""))
    if model and ckpt_model != model:
        raise DataError(f"{path}: a {ckpt_model} checkpoint, not {model}; use models/<dataset>/{model}/best.pt")
    ckpt_dataset = str(state.get("dataset", ""))
    if dataset and ckpt_dataset and ckpt_dataset != dataset:
        raise DataError(f"{path}: trained on data set {ckpt_dataset!r}, not {dataset!r}; use a checkpoint trained "
                        f"on {dataset} (models/{dataset}/<gan>/best.pt)")
    ema = prefer_ema and state.get("G_ema") is not None
    return LoadedGenerator(G, ckpt_model, ckpt_dataset, [str(c) for c in state["classes"]], int(arch["channels"]),
                           int(arch["resolution_px"]), int(arch["z_dim"]), ema, file_label(path),
                           state.get("mlflow_run_id"), path)


def check_fits_data(gen: LoadedGenerator, meta: dict, dataset: str) -> None:
    """Classes, channels and resolution must match the data set's meta.json, or the fakes could not join
    its training split."""
    res, ch = int(meta["resolution_px"]), int(meta["channels"])
    if gen.resolution_px != res:
        raise DataError(f"{gen.path}: makes {gen.resolution_px} px images but data set {dataset!r} is {res} px; "
                        f"use a checkpoint trained at {res} px (gan.<model>.resolution_px: 0)")
    if gen.channels != ch:
        raise DataError(f"{gen.path}: makes {gen.channels}-channel images but data set {dataset!r} has {ch}; "
                        "use a checkpoint trained on this data set")
    if gen.classes != [str(c) for c in meta["classes"]]:
        raise DataError(f"{gen.path}: classes {gen.classes} differ from data set {dataset!r}'s "
                        f"{list(meta['classes'])}; retrain the GAN on the current ingest")


def image_seed(base_seed: int, class_index: int, index: int) -> int:
    """The seed of image ``index`` of class ``class_index`` (a 31-bit int, fine for manual_seed and CSV)."""
    return int(np.random.SeedSequence([base_seed, class_index, index]).generate_state(1)[0] >> 1)


def latents(seeds: list[int], z_dim: int) -> torch.Tensor:
    """(len(seeds), z_dim) Gaussian latents, one independent generator per seed."""
    if not seeds:
        return torch.zeros(0, z_dim)
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> uint8 [0, 255] (what the PNG files hold)."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def sample(G: Generator, seeds: list[int], class_index: int, z_dim: int) -> torch.Tensor:
    """uint8 images (N, C, H, W) of class ``class_index``, one per seed (G in eval mode)."""
    z = latents(seeds, z_dim)
    if len(z) == 0:
        return torch.zeros(0, dtype=torch.uint8)
    y = torch.full((len(z),), class_index, dtype=torch.long)
    return to_uint8(G.eval()(z, y))
