"""The gan: section: defaults, presets and one-line errors for bad params."""
from __future__ import annotations

import pytest
import yaml

from pipeline.config import build, load_params
from pipeline.gan.recipes import apply_recipe
from pipeline.errors import ConfigError
from pipeline.gan.config import GanConfig
from stages.train_gan import main as stage_main


def _params_file(tmp_path, gan: dict):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({
        "datasets": {"toy": {"source": {"reader": "folder", "root": "x"}, "channels": 1}},
        "gan": gan}))
    return path


def _error(tmp_path, gan: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        load_params(_params_file(tmp_path, gan))
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_case_study_recipe_gives_the_case_study_values():
    """The defaults are the CPU default run (data_efficient); the case study is the recipe case_study."""
    cfg = build(GanConfig, apply_recipe({}, "case_study"), "gan")
    assert (cfg.train.lr_g, cfg.train.lr_d, cfg.train.beta1) == (2e-4, 2e-4, 0.5)
    assert cfg.stabilise.g_dropout == 0.3 and cfg.train.ema_decay == 0.0 and cfg.cdcgan.d_norm == "batch"
    assert cfg.stabilise.real_target_range == [0.8, 1.2]
    assert cfg.stabilise.fake_target_range == [0.0, 0.3]
    assert cfg.stabilise.label_smoothing == "two_sided"
    assert cfg.train.loss == "non_saturating" and cfg.train.cpu_bf16 == "auto"


def test_section_loads_with_overrides(tmp_path):
    params = load_params(_params_file(tmp_path, {"train": {"epochs": 3}, "acgan": {"resolution_px": 128}}))
    cfg = params.gan
    assert isinstance(cfg, GanConfig)
    assert cfg.train.epochs == 3 and cfg.acgan.resolution_px == 128 and cfg.cdcgan.resolution_px == 0


def test_negative_noise_std(tmp_path):
    msg = _error(tmp_path, {"stabilise": {"instance_noise_std": -0.1}})
    assert "gan.stabilise.instance_noise_std" in msg and "out of range" in msg


def test_reversed_smoothing_range(tmp_path):
    msg = _error(tmp_path, {"stabilise": {"real_target_range": [1.2, 0.8]}})
    assert "gan.stabilise.real_target_range" in msg and "low <= high" in msg


def test_unknown_loss(tmp_path):
    msg = _error(tmp_path, {"train": {"loss": "wasserstein"}})
    assert "gan.train.loss" in msg and "non_saturating" in msg and "hinge" in msg


def test_unknown_diffaugment_policy_and_key(tmp_path):
    assert "unknown policy 'rotate'" in _error(tmp_path, {"train": {"diffaugment": "color,rotate"}})
    assert "gan.train.lr" in _error(tmp_path, {"train": {"lr": 0.1}})
    assert "gan.acgan.resolution_px" in _error(tmp_path, {"acgan": {"resolution_px": 100}})


def test_stage_prints_one_line_and_exits_2(tmp_path, capsys):
    path = _params_file(tmp_path, {"stabilise": {"instance_noise_std": -1}})
    assert stage_main(["--params", str(path), "--dataset", "toy", "--model", "acgan"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "instance_noise_std" in err


def test_stage_missing_cache(tmp_path, capsys):
    path = _params_file(tmp_path, {})
    rc = stage_main(["--params", str(path), "--dataset", "toy", "--model", "cdcgan",
                     "--data-dir", str(tmp_path / "nothing")])
    assert rc == 2 and "run the ingest stage first" in capsys.readouterr().err
