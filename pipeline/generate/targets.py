"""How many KEPT synthetic images each class needs: one small function per ``generate.target.mode``."""
from __future__ import annotations

from typing import Callable

from pipeline.errors import ConfigError
from pipeline.generate.config import TargetConfig


def balance_to_majority(real_counts: dict[str, int], cfg: TargetConfig) -> dict[str, int]:
    """Every class below the majority is topped up to the majority's count of real training images."""
    top = max(real_counts.values())
    return {c: top - n for c, n in real_counts.items() if n < top}


def ratio(real_counts: dict[str, int], cfg: TargetConfig) -> dict[str, int]:
    """Every class below ``ratio`` x the majority's count is topped up to it."""
    goal = round(cfg.ratio * max(real_counts.values()))
    return {c: goal - n for c, n in real_counts.items() if n < goal}


def counts(real_counts: dict[str, int], cfg: TargetConfig) -> dict[str, int]:
    """Exactly the given numbers of kept images per class."""
    unknown = sorted(set(cfg.counts) - set(real_counts))
    if unknown:
        raise ConfigError(f"generate.target.counts: class {unknown[0]!r} is not one of {list(real_counts)}")
    return {c: n for c, n in cfg.counts.items() if n > 0}


TARGETS: dict[str, Callable[[dict[str, int], TargetConfig], dict[str, int]]] = {
    "balance_to_majority": balance_to_majority, "ratio": ratio, "counts": counts}


def class_targets(real_counts: dict[str, int], cfg: TargetConfig) -> dict[str, int]:
    """Kept images wanted per class, in the data set's class order; classes that need none are left out."""
    wanted = TARGETS[cfg.mode](real_counts, cfg)
    return {c: wanted[c] for c in real_counts if wanted.get(c, 0) > 0}
