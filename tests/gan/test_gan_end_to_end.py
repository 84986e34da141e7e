"""End to end on a tiny phantom cell set: the shipped recipe (params.yaml's gan section) learns the cells in a
short run, its samples vary with z, and most of them pass the copy gate, the realism check and the filter."""
from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.config import DatasetConfig, PhantomConfig, build, load_params
from pipeline.data.ingest import ingest_dataset
from pipeline.data.phantoms import write_cell_phantoms
from pipeline.gan.train import train_gan
from pipeline.generate.score import score_checkpoint

REPO = Path(__file__).resolve().parents[2]


def test_recipe_draws_phantom_cells_that_pass_the_filter(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_TRACKING", "0")
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    phantom = build(PhantomConfig, {**shipped["phantom"], "cell_px": 32, "cells_per_slide": 10,
                                    "cell_counts": {"normal": 120, "low_grade": 100, "high_grade": 90}}, "phantom")
    cells = write_cell_phantoms(tmp_path / "phantoms", phantom)
    ds = dict(shipped["datasets"]["cervical"])
    ds["source"] = {**ds["source"], "root": str(cells)}
    ds["split"] = {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0}
    ingest_dataset("cells", build(DatasetConfig, ds, "datasets.cells"), "salt", tmp_path / "data",
                   tmp_path / "ingest.json")

    gan = shipped["gan"]  # the shipped recipe, shortened
    gan["train"].update(epochs=300, num_threads=1, tracking=False, checkpoint_every_epochs=300,
                        sample_every_epochs=300)  # ~900 G steps at the shipped batch and width
    gan["stabilise"]["instance_noise_decay_epochs"] = 150
    gan["watch"].update(every_epochs=300, feature_epochs=3)
    gen = dict(shipped["generate"])
    gen.update(num_threads=1, tracking=False)
    gen["classifier"] = {**gen["classifier"], "epochs": 15, "cache_dir": ""}
    gen["metrics"] = {**gen["metrics"], "kid_subsets": 5, "fake_draws": 2}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"datasets": {"cells": ds}, "gan": gan, "generate": gen}))
    loaded = load_params(params)
    result = train_gan(loaded.gan, "cdcgan", tmp_path / "data", tmp_path / "run")
    diversity = result.summary.final_diversity_ratio_per_class
    assert not [c for c, r in diversity.items() if r < 0.5], diversity  # no class collapsed
    score = score_checkpoint(result.last, tmp_path / "data", loaded.generate, per_class=40,
                             diversity=diversity)
    keep = {c: row["keep_rate"] for c, row in score["per_class"].items()}
    assert score["overall"]["keep_rate_total"] >= 0.5 and min(keep.values()) >= 0.25, keep
