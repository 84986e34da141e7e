"""Named recipes: params.yaml holds the data_efficient one, and a recipe applies to both GANs."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import build
from pipeline.gan.config import GanConfig
from pipeline.gan.recipes import RECIPES, apply_recipe

REPO = Path(__file__).resolve().parents[2]


def test_params_yaml_is_the_data_efficient_recipe():
    section = yaml.safe_load((REPO / "params.yaml").read_text())["gan"]
    recipe = RECIPES["data_efficient"]
    for part in ("train", "stabilise"):
        for key, value in recipe[part].items():
            assert section[part][key] == value, f"params.yaml gan.{part}.{key}"
    for model in ("cdcgan", "acgan"):
        for key, value in recipe["model"].items():
            if key == "d_conditioning" and model == "acgan":
                continue  # acgan's D is conditioned by its class head
            assert section[model][key] == value, f"params.yaml gan.{model}.{key}"


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_builds_and_sets_both_models(name):
    cfg = build(GanConfig, apply_recipe({}, name), "gan")
    for model in ("cdcgan", "acgan"):
        assert getattr(cfg, model).g_upsample == RECIPES[name]["model"]["g_upsample"]
    assert cfg.train.d_steps == RECIPES[name]["train"]["d_steps"]


def test_unknown_recipe():
    with pytest.raises(KeyError, match="case_study"):
        apply_recipe({}, "magic")
