"""The generation loop end to end on toy data: targets in kept images, manifest contract, determinism."""
from __future__ import annotations

import csv

import pytest
from PIL import Image

from gen_toy import TRAIN_COUNTS, fast_generate_section
from pipeline.config import build
from pipeline.data.synthetic import MANIFEST_COLUMNS, load_synthetic, read_manifest
from pipeline.generate.config import GenerateConfig
from pipeline.generate.run import generate_synthetic, write_outputs


def config(**overrides) -> GenerateConfig:
    return build(GenerateConfig, fast_generate_section(**overrides), "generate")


def run_to(out, toy_data, toy_checkpoint, **overrides):
    run = generate_synthetic(config(**overrides), toy_checkpoint, toy_data, "toy", "cdcgan")
    write_outputs(run, out, "metrics.json")
    return run


def test_balance_to_majority_reaches_the_targets_in_kept_images(tmp_path, toy_data, toy_checkpoint):
    out = tmp_path / "syn"
    run = run_to(out, toy_data, toy_checkpoint)
    top = max(TRAIN_COUNTS)
    assert {c: v["target"] for c, v in run.metrics.counts.items()} == {"disc": top - 6, "bars": top - 4}
    for c, v in run.metrics.counts.items():
        assert v["kept"] == v["target"] and v["shortfall"] == 0
        assert v["generated"] == v["kept"] + v["memorised"] + v["unrealistic"] + v["low_confidence"]
    rows = read_manifest(out / "manifest.csv")
    with open(out / "manifest.csv", newline="") as f:
        written = list(csv.DictReader(f))
    assert list(written[0]) == MANIFEST_COLUMNS
    assert all(r["synthetic"] == "true" and (r["kept"] == "true") == (r["reason"] == "kept") for r in written)
    assert len(rows) == run.metrics.totals["generated"]
    for row in rows:
        assert (out / row.path).is_file(), row.path
        assert row.generator == "cdcgan"
        assert row.checkpoint.startswith("best.pt@") and "/" not in row.checkpoint
        assert row.path.startswith("images/") == (row.kept)
        with Image.open(out / row.path) as png:  # the file itself says it is synthetic
            assert png.text["Synthetic"] == "true" and "SYNTHETIC" in png.text["Comment"]
            assert png.text["Class"] == row.cls
    arrays = load_synthetic(out / "manifest.csv", ["square", "disc", "bars"], 1, 32)
    assert len(arrays) == sum(v["target"] for v in run.metrics.counts.values())
    assert (out / "samples.png").is_file()
    assert len(list((out / "dicom").glob("syn_cdcgan_*.dcm"))) == len(arrays)  # mammography: DICOM on (auto)


def test_quality_metrics_come_with_real_vs_real_references(tmp_path, toy_data, toy_checkpoint):
    run = run_to(tmp_path / "syn", toy_data, toy_checkpoint)
    for subset in ("kept", "generated"):
        per_class = run.metrics.quality[subset]["per_class"]
        assert set(per_class) == {"disc", "bars"}
        for m in per_class.values():
            for key in ("fd", "kid", "precision", "recall", "density", "coverage", "diversity_ms_ssim"):
                assert m[key]["value"] is not None and m[key]["reference"] is not None, key
        assert run.metrics.quality[subset]["overall"]["fd"]["classes"] == ["disc", "bars"]
    assert run.metrics.settings["ms_ssim"] == {"kernel_px": 7, "scales": 2, "weights": pytest.approx([0.1356, 0.8644], abs=1e-3),
                                                  "implementation": "monai.metrics.regression.compute_ms_ssim"}


def test_a_shortfall_is_reported_not_hidden(tmp_path, toy_data, toy_checkpoint):
    run = run_to(tmp_path / "syn", toy_data, toy_checkpoint, filter={"enabled": True, "min_confidence": 1.0,
                                                                     "confidence_val_pass": 0.0},
                 target={"mode": "counts", "counts": {"bars": 5}, "max_attempts_factor": 3.0})
    bars = run.metrics.counts["bars"]
    assert bars["generated"] == 15 and bars["kept"] == 0 and bars["shortfall"] == 5
    assert bars["memorised"] + bars["unrealistic"] + bars["low_confidence"] == 15
    rows = read_manifest(tmp_path / "syn" / "manifest.csv")
    assert all(not r.kept and (tmp_path / "syn" / r.path).is_file() for r in rows)


def test_same_seed_same_manifest_and_png_bytes(tmp_path, toy_data, toy_checkpoint):
    a, b = tmp_path / "a", tmp_path / "b"
    run_to(a, toy_data, toy_checkpoint)
    run_to(b, toy_data, toy_checkpoint)
    assert (a / "manifest.csv").read_bytes() == (b / "manifest.csv").read_bytes()
    pngs = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert pngs and pngs == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    for p in pngs:
        assert (a / p).read_bytes() == (b / p).read_bytes(), p
    run_to(c := tmp_path / "c", toy_data, toy_checkpoint, seed=1)
    assert (c / "manifest.csv").read_bytes() != (a / "manifest.csv").read_bytes()


def test_a_failed_run_leaves_no_output_folder(tmp_path, toy_data, toy_checkpoint, monkeypatch):
    import pipeline.generate.run as run_module

    run = generate_synthetic(config(), toy_checkpoint, toy_data, "toy", "cdcgan")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(run_module, "write_synthetic_dicom", broken)
    with pytest.raises(OSError):
        write_outputs(run, tmp_path / "syn")
    assert list(tmp_path.glob("syn*")) == [] and list(tmp_path.glob(".syn*")) == []


def test_copies_of_training_images_are_gated_and_kept_aside(tmp_path, toy_data, toy_checkpoint, monkeypatch):
    """A generator that emits a training image and a lightly noised one: both are excluded as memorised."""
    import numpy as np
    import torch

    import pipeline.generate.run as run_module
    from pipeline.data.cache import load_split

    train = load_split(toy_data, "train")
    real = torch.from_numpy(train.images)
    bars = np.flatnonzero(train.labels == 2)
    original = run_module.sample

    def copying_sample(G, seeds, class_index, z_dim):
        images = original(G, seeds, class_index, z_dim)
        if class_index == 2 and seeds[0] == run_module.image_seed(0, 2, 0):  # the first batch of bars
            images[0] = real[bars[0]]
            noise = torch.from_numpy(np.random.RandomState(0).normal(0, 3, images[1].shape))
            images[1] = (real[bars[1]].double() + noise).round().clamp(0, 255).to(torch.uint8)
        return images

    monkeypatch.setattr(run_module, "sample", copying_sample)
    out = tmp_path / "syn"
    run = run_to(out, toy_data, toy_checkpoint)
    rows = {r.path.split("/")[-1]: r for r in read_manifest(out / "manifest.csv")}
    first, second = rows["syn_cdcgan_bars_00000.png"], rows["syn_cdcgan_bars_00001.png"]
    assert first.reason == second.reason == "memorised" and not first.kept
    assert first.nn_real_id == str(train.image_ids[bars[0]]) and first.nn_pixel_distance < 1e-6
    assert second.nn_real_id == str(train.image_ids[bars[1]])
    assert (out / "memorised" / "syn_cdcgan_bars_00000.png").is_file()
    with open(out / "memorised" / "memorised.csv") as f:
        kept_aside = list(csv.DictReader(f))
    assert [k["path"] for k in kept_aside][:2] == ["syn_cdcgan_bars_00000.png", "syn_cdcgan_bars_00001.png"]
    assert run.metrics.counts["bars"]["memorised"] >= 2
    assert run.metrics.counts["bars"]["kept"] == run.metrics.counts["bars"]["target"]  # made up for
    assert not (out / "images" / "syn_cdcgan_bars_00000.png").exists()
    assert not (out / "images" / "syn_cdcgan_bars_00001.png").exists()
