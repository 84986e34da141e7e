"""stages/generate.py: the DVC form, the stand-alone form, and one-line errors for a wrong checkpoint."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gen_toy import fast_generate_section, write_params, write_toy_checkpoint
from pipeline.data.synthetic import read_manifest
from pipeline.errors import PipelineError
from stages.generate import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def params(tmp_path):
    return write_params(tmp_path / "params.yaml", fast_generate_section())


def test_dvc_form_writes_the_folder_and_the_metrics(tmp_path, toy_data, toy_checkpoint, params, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data/toy and models/toy/cdcgan/best.pt are relative to here
    main(["--dataset", "toy", "--gan", "cdcgan", "--params", str(params)])
    out = tmp_path / "data" / "synthetic" / "toy" / "cdcgan"
    headline = json.loads((tmp_path / "metrics" / "generate" / "toy_cdcgan.json").read_text())
    assert set(headline) == {"kept", "target", "fd", "coverage"} and set(headline["fd"]) == {"value", "reference"}
    assert sum(headline["kept"].values()) == sum(headline["target"].values()) == 14
    metrics = json.loads((out / "details.json").read_text())
    assert metrics["totals"]["kept"] == metrics["totals"]["target"] == 14
    assert len([r for r in read_manifest(out / "manifest.csv") if r.kept]) == 14
    assert not (out / "metrics.json").exists()


def test_standalone_form_with_label_and_count(tmp_path, toy_data, toy_checkpoint, params):
    out = tmp_path / "elsewhere"
    main(["--checkpoint", str(toy_checkpoint), "--label", "bars", "-n", "3", "--out", str(out),
          "--data-dir", str(toy_data), "--params", str(params)])
    rows = read_manifest(out / "manifest.csv")
    assert [r.cls for r in rows if r.kept] == ["bars"] * 3
    assert json.loads((out / "details.json").read_text())["counts"]["bars"]["kept"] == 3


@pytest.mark.parametrize("case, match", [
    ("resolution", "makes 16 px images but data set 'toy' is 32 px"),
    ("model", "a acgan checkpoint, not cdcgan"),
    ("label", "--label 'cancer': not a class of toy"),
    ("not_a_checkpoint", "not a GAN checkpoint"),
])
def test_wrong_inputs_stop_with_one_line(tmp_path, toy_data, params, case, match):
    ckpt = tmp_path / "ckpt.pt"
    if case == "resolution":
        write_toy_checkpoint(ckpt, size_px=16)
    elif case == "model":
        write_toy_checkpoint(ckpt, model="acgan")
    elif case == "not_a_checkpoint":
        import torch
        torch.save({"state_dict": {}}, ckpt)
    else:
        write_toy_checkpoint(ckpt)
    label = "cancer" if case == "label" else "bars"
    with pytest.raises(PipelineError, match=match) as err:
        main(["--checkpoint", str(ckpt), "--gan", "cdcgan", "--label", label, "-n", "2", "--out", str(tmp_path / "o"),
              "--data-dir", str(toy_data), "--params", str(params)])
    assert "\n" not in str(err.value)
    assert not (tmp_path / "o").exists()


def test_missing_checkpoint_exits_2_with_one_line(tmp_path, params):
    env = {**os.environ, "PIPELINE_TRACKING": "0", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "stages.generate", "--dataset", "toy", "--gan", "acgan",
                           "--params", str(params)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "models/toy/acgan/best.pt: checkpoint not found" in lines[0], proc.stderr


def test_mlflow_run_is_a_child_of_the_train_gan_run(tmp_path, toy_data, params, monkeypatch):
    import mlflow

    from pipeline.gan.checkpoint import load_checkpoint, save_checkpoint
    from pipeline.tracking import start_run

    monkeypatch.setenv("PIPELINE_TRACKING", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_ARTIFACTS_DESTINATION", str(tmp_path / "artifacts"))
    monkeypatch.chdir(tmp_path)  # MLflow puts the default artifact root beside the working directory
    params.write_text(params.read_text().replace("tracking: false", "tracking: true"))
    with start_run("train_gan", "toy", "cdcgan") as tracker:
        parent = tracker.run_id
    ckpt = write_toy_checkpoint(tmp_path / "ckpt.pt")
    state = load_checkpoint(ckpt)
    save_checkpoint({**state, "mlflow_run_id": parent}, ckpt)
    main(["--checkpoint", str(ckpt), "--label", "bars", "-n", "2", "--out", str(tmp_path / "o"),
          "--data-dir", str(toy_data), "--params", str(params)])
    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("medsynth-toy").experiment_id],
                              filter_string="attributes.run_name = 'generate-toy-cdcgan'")
    assert len(runs) == 1 and runs[0].data.tags["mlflow.parentRunId"] == parent
    assert runs[0].data.metrics["kept_bars"] == 2
    logged = {a.path for a in client.list_artifacts(runs[0].info.run_id, "generate")}
    assert {"generate/samples.png", "generate/manifest.csv"} <= logged
