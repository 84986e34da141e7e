"""The ``medsynth`` console script: installed by pyproject.toml, --help of every command, validate, report,
score-review and ui end to end (generate and models: tests/generate/test_registry.py)."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import cli
from tests.conftest import REPO
from tests.report.fakes import make_project, write_params

ENV = {**os.environ, "PIPELINE_TRACKING": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}


def console_script() -> str:
    """The installed ``medsynth`` of this environment (``pip install -e .`` writes it next to python)."""
    path = Path(sys.executable).parent / "medsynth"
    if not path.is_file():
        path = Path(shutil.which("medsynth") or "")
    assert path.is_file(), "medsynth is not installed: run .venv/bin/python -m pip install -e . (pyproject.toml " \
                           "[project.scripts])"
    return str(path)


def medsynth(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed console script (tracking off unless ``env`` says otherwise)."""
    return subprocess.run([console_script(), *args], cwd=cwd, env={**ENV, **(env or {})}, capture_output=True,
                          text=True, timeout=300)


def test_console_script_help_lists_every_command():
    result = medsynth("--help")
    assert result.returncode == 0, result.stderr
    for command in (*cli.STAGES, "report", "validate", "models", "ui"):
        assert f"    {command}" in result.stdout, command
    assert "models:/mammography-acgan@champion" in result.stdout  # the examples


@pytest.mark.parametrize("command", [*cli.STAGES, "report", "validate", "models", "ui"])
def test_help_of_each_command(command, capsys):
    try:
        code = cli.main([command, "--help"])  # a stage command returns the stage's exit code
    except SystemExit as exc:  # the tool commands' argparse exits
        code = exc.code
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: medsynth {command}") and "--help" in out
    if command == "generate":
        assert "models:/<dataset>-<gan>/<version>" in out and "--label" in out
    if command in cli.STAGES:
        assert "--params" in out


def test_python_m_forms_keep_working():
    result = subprocess.run([sys.executable, "-m", "stages.generate", "--help"], cwd=REPO, env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.startswith("usage: generate.py")
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "validate", "params.yaml"], cwd=REPO, env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "params.yaml: valid" in result.stdout, result.stderr


def test_validate(tmp_path, capsys):
    assert cli.main(["validate", str(REPO / "params.yaml"), *map(str, sorted((REPO / "presets").glob("*.yaml")))]) == 0
    out = capsys.readouterr().out
    assert out.count(": valid; data sets: ") == 1 + len(list((REPO / "presets").glob("*.yaml")))
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets:\n  d:\n    source: {root: nowhere}\ngan:\n  train:\n    epochs: ten\n")
    twice = tmp_path / "twice.yaml"
    twice.write_text("datasets:\n  d:\n    resolution_px: 32\n    resolution_px: 64\n")
    good = tmp_path / "good.yaml"
    good.write_text("datasets:\n  d:\n    source: {root: nowhere}\n")
    assert cli.main(["validate", str(bad), str(twice), str(good)]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"error: {bad}: gan.train.epochs: expected an integer, got 'ten'; write a whole number without quotes",
        f"error: {twice} line 4: datasets.d.resolution_px: key written twice (lines 3 and 4), YAML would keep only "
        "the last value; delete one of them"]
    assert f"{good}: valid; data sets: d;" in captured.out
    assert "note: datasets.d.source.root: nowhere does not exist here" in captured.out


def test_report_build_print_open_and_score_review_end_to_end(tmp_path, monkeypatch, capsys):
    make_project(tmp_path)
    params = write_params(tmp_path, "mammo", "mammography", 1)
    missing = medsynth("report", "--dataset", "mammo", "--root", str(tmp_path))
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        f"error: {tmp_path}/reports/mammo/index.html: not found; build it with `dvc repro report@mammo` or "
        "`medsynth report --dataset mammo --build`"]

    built = medsynth("report", "--dataset", "mammo", "--root", str(tmp_path), "--params", str(params), "--build")
    assert built.returncode == 0, built.stderr
    index = tmp_path / "reports" / "mammo" / "index.html"
    assert f"report: {index}" in built.stdout and "review page:" in built.stdout and index.is_file()

    opened = []
    monkeypatch.setattr(cli.webbrowser, "open", lambda url: opened.append(url) or True)
    assert cli.main(["report", "--dataset", "mammo", "--root", str(tmp_path), "--open"]) == 0
    assert opened == [index.resolve().as_uri()] and f"report: {index}" in capsys.readouterr().out

    key = json.loads((tmp_path / "reports" / "mammo" / "review_key.json").read_text())
    answers = tmp_path / "a.csv"
    with answers.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["reader", "item", "answer", "confidence", "comment", "timestamp", "page_id"])
        for item, entry in key["items"].items():
            w.writerow(["Dr A", item, entry["truth"], 4, "", "2026-11-01T10:00:00Z", key["page_id"]])
    scored = medsynth("score-review", "--dataset", "mammo", "--root", str(tmp_path), "--params", str(params),
                      "--answers", str(answers))
    assert scored.returncode == 0, scored.stderr
    assert "Dr A: 12 answers, accuracy 1.000" in scored.stdout
    assert json.loads((tmp_path / "reports" / "mammo" / "review_scores.json").read_text())["readers"]["Dr A"]["n"] == 12
    wrong = medsynth("score-review", "--dataset", "nope", "--params", str(params), "--answers", str(answers))
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1
    assert "datasets.nope: no such data set" in wrong.stderr


def test_ui_runs_mlflow_ui_on_the_pipelines_store(monkeypatch, tmp_path, capsys):
    """mlflow ui on the pipeline's store, after one line per data set with the address of its runs table
    (``#/experiments/<id>/runs``: MLflow 3 otherwise opens an experiment on its GenAI overview)."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(uri)
    ids = {name: client.create_experiment(name) for name in ("medsynth-herlev", "medsynth-mias", "someone-else")}
    calls = []
    monkeypatch.setattr(cli.os, "execv", lambda path, argv: calls.append(argv))
    cli.main(["ui", "--port", "5001"])
    assert calls == [[sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--port", "5001"]]
    lines = capsys.readouterr().err.splitlines()
    assert f"  medsynth-herlev: http://127.0.0.1:5001/#/experiments/{ids['medsynth-herlev']}/runs" in lines
    assert f"  medsynth-mias: http://127.0.0.1:5001/#/experiments/{ids['medsynth-mias']}/runs" in lines
    assert not any("someone-else" in line for line in lines)
    client.set_experiment_tag(ids["medsynth-mias"], "mlflow.sharedViewState.arms", "{}")  # as evaluate saves it
    cli.main(["ui", "--host=0.0.0.0"])  # a server for the network is still opened from this machine
    lines = capsys.readouterr().err.splitlines()
    assert f"  medsynth-mias: http://127.0.0.1:5000/#/experiments/{ids['medsynth-mias']}/runs?viewStateShareKey=arms" \
        in lines
    assert f"  medsynth-herlev: http://127.0.0.1:5000/#/experiments/{ids['medsynth-herlev']}/runs" in lines
