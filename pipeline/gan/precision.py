"""Which precision and memory format the GAN step runs in, chosen from what the CPU or GPU can do.

bfloat16 autocast on a CPU is fast only where the CPU computes in bfloat16 (AVX512-BF16 or AMX
tiles): the GAN step measured 1.6-1.9x the fp32 one there, and ~15x slower on AVX2-only CPUs, where
bfloat16 is emulated. ``cpu_bf16: auto`` therefore reads the CPU flags at run time.
"""
from __future__ import annotations

from pathlib import Path

import torch

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
