"""Checkpoints: one plain dict holding everything an exact resume needs, written atomically.

Keys: ``format``, ``model``, ``arch`` (how to rebuild G and D), ``classes``, ``dataset``, the
:meth:`GanStep.state_dict` entries (``G``, ``D``, ``G_ema``, ``opt_G``, ``opt_D``, ``scaler_G``,
``scaler_D``), ``epoch`` (epochs completed), ``step`` (G updates), ``instance_noise_std`` (of the
last epoch), ``rng`` (one entry per DDP rank: torch, numpy, python, cuda), ``sampler`` (seed; the
permutation of epoch e is drawn from seed + e), ``best``, ``history``, ``config``, ``fingerprint``,
``mlflow_run_id``. Everything is plain tensors, numbers and strings, so ``torch.load(weights_only=True)``
reads it.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from pipeline.io import torch_save_atomic
from pipeline.errors import DataError
from pipeline.gan.models import Generator

FORMAT = 2  # 2: G with named blocks (nearest up-sampling, conditional BatchNorm, skip excitation)


def rng_state(device: torch.device) -> dict:
    """Every RNG the loop may touch, in types that ``weights_only`` loading accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "mps": torch.mps.get_rng_state() if device.type == "mps" else None,
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    if device.type == "mps" and state.get("mps") is not None:
        torch.mps.set_rng_state(state["mps"])
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write to a temporary file, flush it to disk, then rename: a killed run never leaves half a file."""
    torch_save_atomic(state, path, fsync=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, not a checkpoint, or from an incompatible torch
        raise DataError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc}); delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DataError(f"{path}: not a GAN checkpoint of format {FORMAT}; delete it to start over")
    return state


def build_generator(state: dict) -> Generator:
    """A generator with the architecture recorded in a checkpoint (weights not loaded)."""
    a = state["arch"]
    return Generator(a["n_classes"], a["channels"], a["resolution_px"], a["base_channels"], a["z_dim"],
                     a["embed_dim"], a["layer_noise_std"], a["dropout"], a.get("upsample", "transposed"),
                     a.get("norm", "batch"), a.get("skip_excitation", False))


def load_generator(path: str | Path, map_location: str | torch.device = "cpu",
                   prefer_ema: bool = True) -> tuple[Generator, dict]:
    """The generator of a checkpoint in eval mode (its EMA weights when trained with EMA) and the checkpoint."""
    state = load_checkpoint(path, map_location)
    G = build_generator(state)
    G.load_state_dict(state["G_ema"] if prefer_ema and state.get("G_ema") is not None else state["G"])
    return G.to(map_location).eval(), state
