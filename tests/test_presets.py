"""Every params preset loads, names real data under ../shared/data, runs at least 5 seeds, and is an overlay
on the defaults that ``medsynth preset`` turns into a full params.yaml."""
from __future__ import annotations

import dataclasses

import pytest

from pipeline.cli import main
from pipeline.config import SECTIONS, defaults, load_params, read_yaml, render_preset
from pipeline.errors import ConfigError
from tests.conftest import REPO

PRESETS = sorted((REPO / "presets").glob("*.yaml"))


def test_presets_exist() -> None:
    assert {p.stem for p in PRESETS} >= {"mias", "herlev", "cric"}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_loads(path) -> None:
    params = load_params(path)
    assert len(params.evaluate.seeds) >= 5
    for ds in params.datasets.values():
        assert "shared/data" in ds.source.root


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_is_an_overlay_naming_only_what_differs(path) -> None:
    """Every key a preset writes (outside its data sets) differs from the default: no copied defaults."""
    raw = read_yaml(path)

    def same_as_default(overlay: dict, base: dict, where: str) -> list[str]:
        out = []
        for key, value in overlay.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                out += same_as_default(value, base[key], f"{where}.{key}")
            elif base.get(key) == value:
                out.append(f"{where}.{key}")
        return out

    assert not same_as_default({k: v for k, v in raw.items() if k != "datasets"}, defaults(), path.name)
    assert len(path.read_text().splitlines()) < 60


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_medsynth_preset_writes_the_full_params_file(path, tmp_path) -> None:
    """``medsynth preset NAME`` writes every key (DVC tracks params.yaml key by key) and loads to the same
    params as the overlay itself."""
    out = tmp_path / "params.yaml"
    assert main(["preset", str(path), "--out", str(out)]) == 0
    written = read_yaml(out)
    assert set(written) == set(SECTIONS)
    assert written["gan"]["train"].keys() == defaults()["gan"]["train"].keys()
    assert dataclasses.asdict(load_params(out)) == dataclasses.asdict(load_params(path))


def test_preset_without_datasets_is_refused(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("gan: {train: {epochs: 5}}\n")
    with pytest.raises(ConfigError, match="bad.yaml: datasets: empty; a preset must name its data sets"):
        render_preset(bad)
