"""Kept-image targets per class: balance to the majority, a ratio of it, or explicit counts."""
from __future__ import annotations

import pytest

from pipeline.config import build
from pipeline.errors import ConfigError
from pipeline.generate.config import GenerateConfig, TargetConfig
from pipeline.generate.targets import class_targets

REAL = {"normal": 116, "benign": 36, "malignant": 10}


def test_balance_to_majority():
    assert class_targets(REAL, TargetConfig()) == {"benign": 80, "malignant": 106}


def test_ratio_of_the_majority():
    assert class_targets(REAL, TargetConfig(mode="ratio", ratio=0.5)) == {"benign": 22, "malignant": 48}


def test_counts_in_class_order_and_unknown_class():
    assert class_targets(REAL, TargetConfig(mode="counts", counts={"malignant": 5, "normal": 2})) == \
        {"normal": 2, "malignant": 5}
    with pytest.raises(ConfigError, match="'cancer' is not one of"):
        class_targets(REAL, TargetConfig(mode="counts", counts={"cancer": 5}))


def test_the_section_is_typed_with_one_line_errors():
    with pytest.raises(ConfigError, match=r"generate.target.mode: 'all' is not allowed"):
        build(GenerateConfig, {"target": {"mode": "all"}}, "generate")
    with pytest.raises(ConfigError, match=r"generate.filter.min_confidence: 1.5 is out of range"):
        build(GenerateConfig, {"filter": {"min_confidence": 1.5}}, "generate")
    with pytest.raises(ConfigError, match=r"generate.target.counts: empty with mode counts"):
        build(GenerateConfig, {"target": {"mode": "counts"}}, "generate")
