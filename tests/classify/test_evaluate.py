"""The evaluate stage end to end on a tiny fake cache and fake manifests: guards, outputs, MLflow runs."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.classify.arms import TrainSet
from pipeline.classify.evaluate import check_train_set, evaluate_dataset, run_jobs
from pipeline.classify.records import EvaluateDetails
from pipeline.errors import DataError
from tests.classify.fakes import CLASSES, make_split, tiny_config, write_cache, write_manifest
from tests.conftest import REPO

ALL_ARMS = ["real_only", "class_weighted", "oversample", "classical", "cdcgan", "acgan", "synthetic_classical"]


def synthetic_dir(root: Path, gans=("cdcgan", "acgan")) -> Path:
    for i, gan in enumerate(gans):
        write_manifest(root / gan, gan, {"malignant": 6, "benign": 2}, seed=10 + i)
    return root


def run_stage(tmp_path: Path, cfg, data_dir: Path, syn_dir: Path, dataset: str = "toy") -> dict:
    return evaluate_dataset(dataset, cfg, data_dir, syn_dir, tmp_path / "results" / dataset,
                            tmp_path / "metrics" / f"{dataset}.json")


# ------------------------------------------------------------------------------------------- guards
def test_manifest_ids_smuggled_into_validation_are_refused(tmp_path: Path) -> None:
    syn = synthetic_dir(tmp_path / "synthetic")
    val = make_split("val")
    val.image_ids = val.image_ids.astype("<U64")
    val.image_ids[0] = "syn_acgan_malignant_0003.png"  # an id of the manifest, now in the real val split
    data = write_cache(tmp_path / "data", splits={"train": make_split("train"), "val": val, "test": make_split("test")})
    with pytest.raises(DataError, match=r"val\.npz: 1 synthetic image\(s\) \(e\.g\. syn_acgan_malignant_0003"):
        run_stage(tmp_path, tiny_config(arms=["real_only", "acgan"]), data, syn)
    assert not (tmp_path / "results").exists() and not (tmp_path / "metrics").exists()


def test_synthetic_copy_renamed_into_test_is_refused(tmp_path: Path) -> None:
    syn = synthetic_dir(tmp_path / "synthetic")
    from pipeline.data.synthetic import load_synthetic

    kept = load_synthetic(syn / "acgan" / "manifest.csv", CLASSES, 1, 16)
    test = make_split("test")
    test.images[0] = kept.images[2]  # the pixels of a synthetic image under a real-looking id
    data = write_cache(tmp_path / "data", splits={"train": make_split("train"), "val": make_split("val"), "test": test})
    with pytest.raises(DataError, match="is a pixel copy of real test image test_normal_000"):
        run_stage(tmp_path, tiny_config(arms=["real_only", "acgan"]), data, syn)


def test_missing_manifest_names_the_file_and_the_fix(tmp_path: Path, toy_cache: Path) -> None:
    syn = synthetic_dir(tmp_path / "synthetic", gans=("acgan",))
    with pytest.raises(DataError) as err:
        run_stage(tmp_path, tiny_config(arms=["real_only", "cdcgan"]), toy_cache, syn)
    message = str(err.value)
    assert str(syn / "cdcgan" / "manifest.csv") in message and "run the generate stage" in message
    assert "remove 'cdcgan' from evaluate.arms" in message and "\n" not in message


def test_train_set_holding_a_test_image_is_refused() -> None:
    train = TrainSet(np.zeros((2, 1, 4, 4), np.uint8), np.zeros(2, np.int64), np.array(["a", "test_normal_000"]))
    with pytest.raises(DataError, match="arm x: training set holds 1 validation/test image"):
        check_train_set(train, {"test_normal_000"}, "x")
    unmarked = TrainSet(np.zeros((2, 1, 4, 4), np.uint8), np.zeros(2, np.int64), np.array(["a", "b"]), n_synthetic=1)
    with pytest.raises(DataError, match="not marked synthetic"):
        check_train_set(unmarked, set(), "x")


# --------------------------------------------------------------------------------------- end to end
def test_end_to_end_with_mlflow(tmp_path: Path, toy_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("PIPELINE_TRACKING", raising=False)
    syn = synthetic_dir(tmp_path / "synthetic")
    cfg = tiny_config(arms=ALL_ARMS, tracking=True)
    metrics = run_stage(tmp_path, cfg, toy_cache, syn)

    # outputs
    out = tmp_path / "results" / "toy"
    for arm in ALL_ARMS:
        with open(out / "predictions" / f"{arm}.csv") as fh:
            rows = list(csv.DictReader(fh))
        assert list(rows[0])[:5] == ["image_id", "actual", "predicted", "arm", "seed"]
        assert [c for c in rows[0] if c.startswith("p_")] == [f"p_{c}" for c in CLASSES]
        assert len(rows) == 18 * len(cfg.seeds) and {r["seed"] for r in rows} == {"0", "1"}
        assert not any(r["image_id"].startswith("syn_") for r in rows)  # the test split is real only
        assert (out / "confusion" / f"{arm}.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["minority_class"] == "malignant" and summary["n_synthetic"] == {"cdcgan": 7, "acgan": 7}
    assert "| synthetic_classical |" in (out / "summary.md").read_text()
    assert set(metrics.arms) == set(ALL_ARMS)
    assert set(metrics.gains_vs_real_only) == set(ALL_ARMS) - {"real_only"}
    assert metrics.best_non_gan in ("real_only", "class_weighted", "oversample", "classical")
    gain = metrics.gains_vs_real_only["acgan"]["macro_f1"]
    assert gain["low"] <= gain["diff"] <= gain["high"] and gain["label"] in ("gain", "no gain", "loss")
    assert EvaluateDetails.read(out / "details.json", "evaluate@toy") == metrics
    # the metrics file: a few columns per arm (dvc metrics show), gains only for the arms that use a GAN
    headline = json.loads((tmp_path / "metrics" / "toy.json").read_text())
    assert headline["best_non_gan"] == metrics.best_non_gan and set(headline) == {"best_non_gan", *ALL_ARMS}
    assert set(headline["real_only"]) == {"macro_f1", "macro_f1_low", "macro_f1_high", "balanced_accuracy",
                                          "minority_recall"}
    assert set(headline["acgan"]) == set(headline["real_only"]) | {"gain_vs_real_only", "gain_vs_best_non_gan"}
    assert headline["acgan"]["gain_vs_real_only"] == gain["diff"]
    assert (out / "arms.png").stat().st_size > 1000

    # MLflow: one parent, a FINISHED child per arm and seed with the same metric names, tags and artifacts
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("medsynth-toy")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parent) == 1 and parent[0].info.run_id == metrics.mlflow_parent_run_id
    assert parent[0].info.status == "FINISHED"
    assert len(children) == len(ALL_ARMS) * len(cfg.seeds)
    assert all(c.info.status == "FINISHED" for c in children)
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent[0].info.run_id}
    assert {(c.data.tags["arm"], c.data.tags["seed"]) for c in children} == {(a, str(s)) for a in ALL_ARMS
                                                                             for s in cfg.seeds}
    for c in children:
        assert {"dataset", "arm", "seed", "gan", "git_commit", "params_hash", "split_hash", "seeds"} <= set(c.data.tags)
        artifacts = {a.path for a in client.list_artifacts(c.info.run_id)}
        assert {"confusion_matrix.png", "confusion_matrix.json"} <= artifacts
    names = [set(c.data.metrics) for c in children]
    assert all(n == names[0] for n in names) and {"macro_f1", "minority_recall", "auc_macro"} <= names[0]
    assert {c.data.tags["gan"] for c in children if c.data.tags["arm"] == "synthetic_classical"} == {"acgan"}
    parent_artifacts = {a.path for a in client.list_artifacts(parent[0].info.run_id, "results")}
    assert {"results/summary.csv", "results/summary.md", "results/summary.json"} <= parent_artifacts
    # the parent's first screen compares the arms: the headline as metrics, the chart and table at the top
    assert {"arms.png", "summary.md", "summary.csv"} <= {a.path for a in client.list_artifacts(parent[0].info.run_id)}
    assert parent[0].data.metrics["acgan.macro_f1"] == headline["acgan"]["macro_f1"]
    assert parent[0].data.metrics["acgan.gain_vs_real_only"] == headline["acgan"]["gain_vs_real_only"]
    # and the experiment keeps a runs-table view with one macro-F1 column per arm (medsynth ui opens it)
    view = json.loads(client.get_experiment(experiment.experiment_id).tags["mlflow.sharedViewState.arms"])
    columns = [c for c in view["selectedColumns"] if c.startswith("metrics.")]
    assert all(c[len("metrics.`"):-1] in parent[0].data.metrics for c in columns), columns
    assert {"metrics.`real_only.macro_f1`", "metrics.`acgan.macro_f1`",
            "metrics.`acgan.gain_vs_best_non_gan`"} <= set(columns)

    # every arm ran the same seeds on the same real splits (paired comparison)
    assert {c.data.tags["split_hash"] for c in children} == {summary["split_hash"]}
    assert {c.data.tags["seeds"] for c in children} == {"0,1"}
    assert {c.data.tags["params_hash"] for c in children} == {summary["params_hash"]}
    by_arm = {}
    for c in children:
        by_arm.setdefault(c.data.tags["arm"], set()).add(c.data.tags["train_ids_hash"])
    assert len(by_arm["real_only"]) == 1  # one training set for every seed
    assert by_arm["real_only"] == by_arm["oversample"] == by_arm["classical"]  # same real images
    assert by_arm["acgan"] != by_arm["real_only"]  # + synthetic


def test_tracking_off_and_same_results_in_worker_processes(tmp_path: Path, toy_cache: Path) -> None:
    """Worker processes give the very same predictions as in-process training (one thread each)."""
    from pipeline.data.cache import load_split

    cfg = tiny_config(arms=["real_only", "oversample"], seeds=[3])
    splits = {s: load_split(toy_cache, s) for s in ("train", "val", "test")}
    state = {"cfg": cfg, "n_classes": 3, **splits, "synthetic": {},
             "eval_ids": set(splits["val"].image_ids) | set(splits["test"].image_ids)}
    jobs = [("real_only", 3), ("oversample", 3)]
    here = {(r.arm, r.seed): r.proba for r in run_jobs(jobs, state, workers=1, num_threads=1)}
    pooled = {(r.arm, r.seed): r.proba for r in run_jobs(jobs, state, workers=2, num_threads=1)}
    assert all(np.array_equal(here[k], pooled[k]) for k in jobs)
    metrics = run_stage(tmp_path, cfg, toy_cache, tmp_path / "no_synthetic")
    assert metrics.mlflow_parent_run_id == "" and not (tmp_path / "mlflow.db").exists()


def test_stage_cli_one_line_error(tmp_path: Path, toy_cache: Path) -> None:
    import yaml

    params = tmp_path / "params.yaml"
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["evaluate"] = {**(raw.get("evaluate") or {}), "tracking": False}
    params.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PIPELINE_TRACKING": "0"}
    result = subprocess.run([sys.executable, "-m", "stages.evaluate", "--dataset", "toy", "--params", str(params),
                             "--data-dir", str(toy_cache), "--synthetic-dir", str(tmp_path / "none")],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "manifest.csv: not found" in lines[0]


# ------------------------------------------------------------------------- semi-supervised arm
def test_acgan_discriminator_arm_end_to_end(tmp_path: Path, toy_cache: Path, acgan_checkpoint: Path) -> None:
    """The trained ACGAN's discriminator, fine-tuned on the real training split, is reported like every arm;
    it is not a candidate for the best non-GAN arm, and the learning curves and the network are written."""
    cfg = tiny_config(arms=["real_only", "oversample", "acgan_discriminator"])
    metrics = evaluate_dataset("toy", cfg, toy_cache, tmp_path / "no_synthetic", tmp_path / "results" / "toy",
                               tmp_path / "metrics" / "toy.json", models_dir=acgan_checkpoint.parent.parent)
    assert set(metrics.arms) == {"real_only", "oversample", "acgan_discriminator"}
    assert "acgan_discriminator" in metrics.gains_vs_real_only
    assert metrics.best_non_gan in ("real_only", "oversample")
    assert metrics.classifier == "cnn" and metrics.classifier_detail.startswith("cnn channels=[8, 16]")
    assert metrics.selection.startswith("best val_macro_f1 (mean over 3 epochs)")
    out = tmp_path / "results" / "toy"
    with open(out / "predictions" / "acgan_discriminator.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 18 * len(cfg.seeds)
    for arm in cfg.arms:
        assert (out / "curve_images" / f"{arm}.png").stat().st_size > 1000
        for seed in cfg.seeds:
            with open(out / "curves" / f"{arm}-seed{seed}.csv") as fh:
                rows = list(csv.DictReader(fh))
            assert {"epoch", "lr", "train_loss", "val_loss", "val_macro_f1", "val_balanced_accuracy",
                    "monitor_smoothed", "selected"} <= set(rows[0])
            assert sum(int(r["selected"]) for r in rows) == 1
    assert {f.suffix for f in (out / "curves").iterdir()} == {".csv"}  # dvc.yaml declares curves/ as data plots
    summary = json.loads((out / "summary.json").read_text())
    assert summary["classifier"] == metrics.classifier_detail and "Network: cnn" in (out / "summary.md").read_text()
    # fine-tuning starts from D's weights: its first-epoch validation loss differs from a fresh network's
    with open(out / "curves" / "real_only-seed0.csv") as a, open(out / "curves" / "acgan_discriminator-seed0.csv") as b:
        assert next(csv.DictReader(a))["val_loss"] != next(csv.DictReader(b))["val_loss"]


def test_acgan_discriminator_arm_without_checkpoint_names_the_fix(tmp_path: Path, toy_cache: Path) -> None:
    cfg = tiny_config(arms=["real_only", "acgan_discriminator"])
    with pytest.raises(DataError, match=r"acgan/best\.pt: not found, arm 'acgan_discriminator'.*run the train_gan"):
        evaluate_dataset("toy", cfg, toy_cache, tmp_path / "none", tmp_path / "out", tmp_path / "m.json",
                         models_dir=tmp_path / "models")
    assert not (tmp_path / "out").exists()


def test_discriminator_checkpoint_of_other_classes_is_refused(acgan_checkpoint: Path) -> None:
    from pipeline.classify.discriminator import load_discriminator_classifier

    with pytest.raises(DataError, match="classes .* differ from the data set's"):
        load_discriminator_classifier(acgan_checkpoint, ["a", "b", "c"], 1, 16)
    with pytest.raises(DataError, match="trained on 1 x 16 px images, the data set has 3 x 16 px"):
        load_discriminator_classifier(acgan_checkpoint, CLASSES, 3, 16)
