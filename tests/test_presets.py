"""Every params preset loads, names real data under ../shared/data and runs at least 5 seeds."""
from __future__ import annotations

import pytest

from pipeline.config import load_params
from tests.conftest import REPO

PRESETS = sorted((REPO / "presets").glob("*.yaml"))


def test_presets_exist() -> None:
    assert {p.stem for p in PRESETS} >= {"mias", "herlev", "cric"}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_loads(path) -> None:
    params = load_params(path)
    assert len(params.extra["evaluate"].seeds) >= 5
    for ds in params.datasets.values():
        assert "shared/data" in ds.source.root
