from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.classify.config import EvaluateConfig
from pipeline.config import defaults, load_params
from pipeline.gan.config import GanConfig
from pipeline.generate.config import GenerateConfig
from pipeline.report.config import ReportConfig
from pipeline.errors import ConfigError
from tests.conftest import REPO


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def base() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_repo_params_load() -> None:
    params = load_params(REPO / "params.yaml")
    assert set(params.datasets) >= {"mammography", "cervical"}
    assert params.datasets["mammography"].channels == 1


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["datasets"]["mammography"].update(resolutoin_px=64),
     "datasets.mammography.resolutoin_px: unknown key"),
    (lambda d: d["datasets"]["mammography"].update(resolution_px=100),
     "datasets.mammography.resolution_px: 100 is not one of"),
    (lambda d: d["datasets"]["mammography"].update(resolution_px="64"),
     "datasets.mammography.resolution_px: expected an integer"),
    (lambda d: d["datasets"]["cervical"]["split"].update(test_fraction=0.9),
     r"datasets.cervical.split.test_fraction: 0.9 is out of range; allowed \[0.05, 0.5\]"),
    (lambda d: d["datasets"]["cervical"]["source"].update(reader="zip"),
     "datasets.cervical.source.reader: 'zip' is not allowed"),
    (lambda d: d["datasets"]["mammography"]["patch"].update(min_patch_px=300, max_patch_px=100),
     "min_patch_px: 300 is above max_patch_px"),
    (lambda d: d["phantom"].update(mammo_class_fractions=[0.5, 0.6, 0.1]), "must be 3 non-negative numbers"),
    (lambda d: d.update(nonsense={}), "nonsense: unknown section"),
    (lambda d: d["datasets"]["cervical"]["quality_gate"].update(enabled="yes"), "expected true or false"),
    (lambda d: d["datasets"]["mammography"]["patch"].update(context=float("nan")), "not a finite number"),
])
def test_bad_params_one_line(tmp_path: Path, mutate, message: str) -> None:
    data = base()
    mutate(data)
    with pytest.raises(ConfigError, match=message) as info:
        load_params(write(tmp_path, data))
    assert "\n" not in str(info.value) and str(tmp_path / "params.yaml") in str(info.value)


def test_missing_and_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.text(max_size=5), st.booleans(),
                 st.none(), st.lists(st.integers(), max_size=3)))
def test_any_value_either_loads_or_gives_config_error(value) -> None:
    """Property: whatever value a user puts in a typed key, the loader answers with params or ConfigError."""
    import tempfile

    data = base()
    data["datasets"]["mammography"]["patch"]["context"] = value
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.yaml"
        path.write_text(yaml.safe_dump(data))
        try:
            params = load_params(path)
        except ConfigError as exc:
            assert "datasets.mammography.patch.context" in str(exc)
        else:
            assert 1.0 <= params.datasets["mammography"].patch.context <= 8.0


def test_loading_params_does_not_import_torch() -> None:
    """The config is a leaf: the phantoms and ingest stages, the CLI's validate and preset load params without
    torch (or numpy, MONAI, MLflow)."""
    code = ("import sys; from pipeline.config import load_params; p = load_params('params.yaml'); "
            "p.gan.train.epochs; heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'numpy', 'monai', 'mlflow')); print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_params_yaml_writes_out_the_dataclass_defaults() -> None:
    """One source of truth: params.yaml holds every key of every section, each equal to its dataclass default
    (only the data sets, which have no defaults, are params.yaml's own)."""
    raw = base()
    defaults_ = defaults()

    def differences(written: dict, default: dict, where: str) -> list[str]:
        out = [f"{where}.{k}: missing" for k in default if k not in written]
        for key, value in written.items():
            if isinstance(value, dict) and isinstance(default.get(key), dict):
                out += differences(value, default[key], f"{where}.{key}")
            elif default.get(key) != value:
                out.append(f"{where}.{key}: {value!r} in params.yaml, {default.get(key)!r} in the dataclass")
        return out

    assert not differences({k: v for k, v in raw.items() if k != "datasets"}, defaults_, "params.yaml")


def test_sections_are_typed_attributes() -> None:
    params = load_params(REPO / "params.yaml")
    assert isinstance(params.gan, GanConfig) and isinstance(params.generate, GenerateConfig)
    assert isinstance(params.evaluate, EvaluateConfig) and isinstance(params.report, ReportConfig)
    assert not hasattr(params, "extra")
