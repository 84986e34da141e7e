"""Runtime choices, made from what this machine offers: usable cores, the torch device, the precision.

bfloat16 autocast on a CPU is fast only where the CPU computes in bfloat16 (AVX512-BF16 or AMX
tiles): the GAN step measured 1.6-1.9x the fp32 one there, and ~15x slower on AVX2-only CPUs, where
bfloat16 is emulated. ``cpu_bf16: auto`` therefore reads the CPU flags at run time. torch is imported
only by the functions that need it, so the core count is available without it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import torch


def cpu_set() -> list[int]:
    """The cores this process may run on (its affinity); every core where the OS has no affinity (macOS)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def available_cores() -> int:
    """How many cores this process may use: a job pinned to one core sizes its torch threads to 1."""
    return len(cpu_set())


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: cuda, then mps, then cpu; a named device that this machine lacks stops with one line."""
    import torch

    if name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name in ("auto", "mps") and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    if name in ("auto", "cpu"):
        return torch.device("cpu")
    raise ConfigError(f"gan.train.device: {name!r} is not available on this machine; use auto or cpu")


BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The ``flags`` of the first CPU in /proc/cpuinfo; empty where there is none (macOS, Windows)."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_cpu_bf16(flags: set[str] | None = None) -> bool:
    """True where the CPU computes in bfloat16 natively (AVX512-BF16 or AMX)."""
    return bool((cpu_flags() if flags is None else flags) & BF16_FLAGS)


def use_cpu_bf16(setting: str, flags: set[str] | None = None) -> bool:
    """``gan.train.cpu_bf16``: on, off, or auto (on where :func:`has_cpu_bf16`)."""
    if setting == "auto":
        return has_cpu_bf16(flags)
    return setting == "on"


def precision_name(device: torch.device, cuda_amp: bool, cuda_bf16: bool, cpu_bf16: bool) -> str:
    """What the run's log and MLflow params say about the precision that was chosen."""
    if device.type == "cuda":
        return ("bfloat16 autocast" if cuda_bf16 else "float16 autocast + GradScaler") if cuda_amp else "float32"
    if device.type == "cpu" and cpu_bf16:
        return "bfloat16 autocast (CPU has AVX512-BF16/AMX)"
    return "float32" + (" (CPU has no AVX512-BF16/AMX)" if device.type == "cpu" else "")
