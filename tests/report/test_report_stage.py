"""The report and score_review stages through their main() (in-process: fast) and once through the CLI."""
from __future__ import annotations

import csv
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from pipeline.errors import PipelineError
from tests.conftest import REPO
from tests.report.fakes import make_project, write_params


def stage(name: str, root: Path, *args: str) -> None:
    """Run ``stages.<name>.main()`` with these arguments; a PipelineError propagates."""
    argv = [name, "--params", str(root / "params.yaml"), "--root", str(root), *args]
    with mock.patch.object(sys, "argv", argv):
        importlib.import_module(f"stages.{name}").main()


@pytest.fixture(autouse=True)
def no_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PIPELINE_TRACKING", "0")


def answers_from_key(path: Path, key: dict, reader: str, choose) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["reader", "item", "answer", "confidence", "comment", "timestamp", "page_id"])
        for item, entry in key["items"].items():
            w.writerow([reader, item, choose(entry), 4, "", "2026-11-01T10:00:00Z", key["page_id"]])
    return path


def test_stage_outputs_are_self_contained(tmp_path: Path) -> None:
    make_project(tmp_path)
    write_params(tmp_path, "mammo", "mammography", 1)
    stage("report", tmp_path, "--dataset", "mammo")
    out = tmp_path / "reports" / "mammo"
    index, review = (out / "index.html").read_text(), (out / "review.html").read_text()
    key = json.loads((out / "review_key.json").read_text())
    assert len(key["items"]) == 12 and key["page_id"] in review
    for text in (index, review):
        assert not re.search(r"(src|href)=\"(?!data:|#)", text) and "<link" not in text and "@import" not in text
        assert "http://" not in text and "https://" not in text
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', index)
    assert len(srcs) > 20 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "NOT FOR DIAGNOSIS" in index and "Summary" in index
    # every synthetic thumbnail says so: alt text and caption
    assert index.count('alt="SYNTHETIC image') == index.count("<figcaption>SYNTHETIC")


def test_stage_without_other_outputs_still_writes_pages(tmp_path: Path) -> None:
    write_params(tmp_path, "mammo", "mammography", 1)
    stage("report", tmp_path, "--dataset", "mammo")
    out = tmp_path / "reports" / "mammo"
    assert "not available: run stage ingest" in (out / "index.html").read_text()
    assert "not available" in (out / "review.html").read_text()
    assert json.loads((out / "review_key.json").read_text())["items"] == {}
    with pytest.raises(PipelineError, match="no 'items' in the key"):
        stage("score_review", tmp_path, "--dataset", "mammo", "--answers", str(tmp_path / "none.csv"))


def test_cli_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    write_params(tmp_path, "mammo", "mammography", 1)
    text = (tmp_path / "params.yaml").read_text().replace("review_items: 12", "review_items: 13")
    (tmp_path / "params.yaml").write_text(text)
    result = subprocess.run([sys.executable, "-m", "stages.report", "--params", str(tmp_path / "params.yaml"),
                             "--root", str(tmp_path), "--dataset", "mammo"], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "PIPELINE_TRACKING": "0"}, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'params.yaml'}: report.review_items: 13 is odd; use an even number (half real, "
        "half synthetic)"]
    write_params(tmp_path, "mammo", "mammography", 1)
    with pytest.raises(PipelineError, match="datasets.nope: no such data set"):
        stage("report", tmp_path, "--dataset", "nope")


def test_mlflow_artifacts_and_scores_go_to_the_parent_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("PIPELINE_TRACKING")
    monkeypatch.chdir(tmp_path)  # the default artifact root is relative to the working directory
    client = MlflowClient(uri)
    experiment = client.create_experiment("medsynth-mammo")
    parent = client.create_run(experiment, run_name="evaluate-mammo").info.run_id
    client.set_terminated(parent)
    make_project(tmp_path, gans=("acgan",), parent_run_id=parent)
    write_params(tmp_path, "mammo", "mammography", 1, tracking=True)
    stage("report", tmp_path, "--dataset", "mammo")
    assert f"MLflow run {parent}" in capsys.readouterr().out
    assert {f.path for f in client.list_artifacts(parent, "report")} == {"report/index.html", "report/review.html"}

    key = json.loads((tmp_path / "reports" / "mammo" / "review_key.json").read_text())
    right = answers_from_key(tmp_path / "a.csv", key, "Dr A", lambda e: e["truth"])
    all_syn = answers_from_key(tmp_path / "b.csv", key, "Dr B", lambda e: "synthetic")
    stage("score_review", tmp_path, "--dataset", "mammo", "--answers", str(right), str(all_syn))
    scores = json.loads((tmp_path / "reports" / "mammo" / "review_scores.json").read_text())
    assert scores["readers"]["Dr A"]["accuracy"] == 1.0
    assert scores["readers"]["Dr B"]["sensitivity"] == 1.0 and scores["readers"]["Dr B"]["specificity"] == 0.0
    metrics = client.get_run(parent).data.metrics
    assert metrics["review.Dr A.accuracy"] == 1.0 and metrics["review.pooled.accuracy"] == pytest.approx(0.75)
    assert "report/review_scores.json" in {f.path for f in client.list_artifacts(parent, "report")}
    assert client.get_run(parent).info.status == "FINISHED"
    index = (tmp_path / "reports" / "mammo" / "index.html").read_text()
    assert "Blinded review: could readers tell synthetic from real?" in index and "Dr B" in index

    # a parent id from another store: the run named evaluate-<dataset> is used instead, with a warning
    evaluate_json = tmp_path / "results" / "mammo" / "details.json"
    evaluate_json.write_text(evaluate_json.read_text().replace(parent, "0" * 32))
    with pytest.warns(UserWarning, match="is not in"):
        stage("report", tmp_path, "--dataset", "mammo")
    assert f"MLflow run {parent}" in capsys.readouterr().out
    # no evaluate run at all: a run of its own, named for the stage
    client.set_tag(parent, "mlflow.runName", "something-else")
    with pytest.warns(UserWarning, match="logging to a new run report-mammo"):
        stage("report", tmp_path, "--dataset", "mammo")
    own = client.search_runs([experiment], "attributes.run_name = 'report-mammo'")
    assert len(own) == 1 and own[0].info.status == "FINISHED"
    assert {f.path for f in client.list_artifacts(own[0].info.run_id, "report")} == {"report/index.html",
                                                                                      "report/review.html"}
