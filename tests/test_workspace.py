"""State of a queued DVC experiment (run in <repo>/.dvc/tmp/exps/<tmp>/) goes to the repository that queued it."""
from __future__ import annotations

from pathlib import Path

from pipeline import tracking
from pipeline.data.records import load_salt
from pipeline.workspace import main_checkout


def test_main_checkout_maps_an_experiment_copy_back(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    copy = repo / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    copy.mkdir(parents=True)
    assert main_checkout(copy) == repo.resolve()
    assert main_checkout(copy / "pipeline") == repo.resolve()
    assert main_checkout(repo) == repo.resolve()
    assert main_checkout(tmp_path / "elsewhere" / ".dvc" / "tmp") == (tmp_path / "elsewhere" / ".dvc" / "tmp").resolve()


def test_default_store_and_salt_of_a_queued_experiment(tmp_path: Path, monkeypatch) -> None:
    repo = tmp_path / "repo"
    copy = repo / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    copy.mkdir(parents=True)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PIPELINE_ID_SALT", raising=False)
    monkeypatch.setattr(tracking, "REPO_ROOT", copy)
    assert tracking.tracking_uri() == f"sqlite:///{repo.resolve() / 'mlflow.db'}"
    monkeypatch.chdir(copy)
    salt = load_salt()
    assert (repo / ".pipeline_salt").read_text().strip() == salt
    assert not (copy / ".pipeline_salt").exists()
    assert load_salt() == salt  # a second experiment reads the same salt
