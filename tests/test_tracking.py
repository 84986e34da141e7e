"""MLflow helpers: URI, switches, retries, and runs that always end FINISHED or FAILED."""
from __future__ import annotations

import dataclasses

import pytest

from pipeline import tracking
from pipeline.tracking import Tracker, flatten, start_run, tracking_enabled, tracking_uri, with_retry


def test_tracking_uri_default_and_env(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri() == f"sqlite:///{tracking.REPO_ROOT / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/x.db")
    assert tracking_uri() == "sqlite:////tmp/x.db"


def test_telemetry_is_off():
    import os

    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_tracking_switch(monkeypatch):
    monkeypatch.delenv("PIPELINE_TRACKING", raising=False)
    assert tracking_enabled(True) and not tracking_enabled(False)
    monkeypatch.setenv("PIPELINE_TRACKING", "0")
    assert not tracking_enabled(True)


def test_flatten_dataclasses():
    @dataclasses.dataclass
    class Inner:
        lr: float = 0.1

    @dataclasses.dataclass
    class Outer:
        inner: Inner = dataclasses.field(default_factory=Inner)
        name: str = "x"

    assert flatten(Outer(), "gan") == {"gan.inner.lr": 0.1, "gan.name": "x"}


def test_retry_on_database_locked(monkeypatch):
    monkeypatch.setattr(tracking.time, "sleep", lambda s: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert with_retry(flaky) == "ok" and len(calls) == 3
    with pytest.raises(ValueError):  # anything else is raised at once
        with_retry(lambda: (_ for _ in ()).throw(ValueError("bad")))


def test_disabled_run_is_a_no_op():
    with start_run("train_gan", "toy", "acgan", enabled=False, params={"a": 1}) as tracker:
        assert isinstance(tracker, Tracker) and not tracker.enabled
        tracker.log_metrics({"loss": 1.0}, step=1)
        tracker.log_artifact("/nonexistent")
        assert tracker.log_torch_model(None, "generator", {}, "/nonexistent") == "off"


def test_runs_end_finished_or_failed_and_link(tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("PIPELINE_TRACKING", raising=False)
    client = mlflow.MlflowClient(uri)

    with start_run("train_gan", "toy", "acgan", params={"gan.train.lr_g": 2e-4}) as parent:
        parent.log_metrics({"loss_D": 0.5}, step=1)
    run = client.get_run(parent.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "train_gan-toy-acgan"
    assert run.data.tags["dataset"] == "toy" and run.data.tags["model"] == "acgan"
    assert run.data.tags["stage"] == "train_gan" and run.data.tags["git_commit"]
    assert run.data.params == {"gan.train.lr_g": "0.0002"}

    with pytest.raises(KeyError):
        with start_run("generate", "toy", "acgan", parent_run_id=parent.run_id) as child:
            raise KeyError("boom")
    run = client.get_run(child.run_id)
    assert run.info.status == "FAILED" and run.data.tags["mlflow.parentRunId"] == parent.run_id

    with pytest.warns(UserWarning, match="params changed"):  # a resumed run keeps its params
        with start_run("train_gan", "toy", "acgan", run_id=parent.run_id,
                       params={"gan.train.lr_g": 1e-3, "gan.train.epochs": 5}) as resumed:
            assert resumed.run_id == parent.run_id
    run = client.get_run(parent.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"gan.train.lr_g": "0.0002", "gan.train.epochs": "5"}

    # later stages find this run: by the id a checkpoint recorded, else the latest of that name
    from pipeline.tracking import find_run, start_child_run

    assert find_run("train_gan", "toy", "acgan", parent.run_id) == parent.run_id
    assert find_run("train_gan", "toy", "acgan", "0" * 32) == parent.run_id
    assert find_run("train_gan", "toy", "cdcgan") is None and find_run("train_gan", "other") is None
    with start_run("evaluate", "toy") as evaluate:
        with start_child_run(evaluate, "real_only-seed0", params={"seed": 0}, tags={"arm": "real_only"}) as arm:
            arm.log_metrics({"macro_f1": 0.5})
    run = client.get_run(arm.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == evaluate.run_id
    assert run.data.tags["arm"] == "real_only" and run.data.metrics == {"macro_f1": 0.5}


def test_experiments_open_on_the_training_runs_view(tmp_path, monkeypatch):
    """MLflow 3's UI shows the model-training view for experiments tagged custom_model_development; a kind set by
    hand is kept."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("PIPELINE_TRACKING", raising=False)
    client = mlflow.MlflowClient(uri)
    with start_run("ingest", "toy"):
        pass
    assert client.get_experiment_by_name("medsynth-toy").tags["mlflow.experimentKind"] == "custom_model_development"
    other = client.create_experiment("medsynth-other", tags={"mlflow.experimentKind": "genai_development"})
    with start_run("ingest", "other"):
        pass
    assert client.get_experiment(other).tags["mlflow.experimentKind"] == "genai_development"
