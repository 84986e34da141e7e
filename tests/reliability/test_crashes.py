"""``kill -9`` during train_gan, generate and evaluate, then the same stage command again: the outputs are
complete and equal to those of an uninterrupted run, no temporary folder is left, and no MLflow run stays
RUNNING (the killed run is resumed to FINISHED by train_gan, or ended as KILLED by the next run).

Each case runs in two copies of one toy project: ``reference`` runs the stage once (MLflow off: it does not
change the outputs), ``crash`` runs it with MLflow on, is killed with SIGKILL at a point where its MLflow
run is open, and runs it again.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Callable

import yaml

from tests.classify.fakes import tiny_config, write_cache, write_manifest
from tests.gan.gan_toy import tiny_gan_section
from tests.gan.gan_toy import write_cache as write_gan_cache
from tests.reliability.conftest import DATASET, GENERATE, generate_project, leftovers, mlflow_env, mlflow_runs

def runs(project: Path) -> list:
    return mlflow_runs(project / "mlflow.db")


def kill_when(stages, project: Path, module: str, args: list[str], ready: Callable[[], bool],
              timeout_s: float = 240) -> None:
    """Start the stage command in ``project``, SIGKILL it (and anything it started) once ``ready()``."""
    pid, _, err = stages.start(module, *args, cwd=project, env=mlflow_env(project))
    deadline = time.time() + timeout_s
    while not ready() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(pid, signal.SIGKILL)
    code = stages.wait(pid)
    assert ready(), f"stage did not reach the kill point: {err.read_text()[-2000:]}"
    assert code == -signal.SIGKILL, f"stage ended before the kill (exit {code}); nothing was interrupted"


def open_runs(project: Path) -> list[tuple[str, str, bool]]:
    """(name, status, is a child) of every run, read straight from sqlite: an MlflowClient here would create
    or migrate the store while the stage does."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{project / 'mlflow.db'}?mode=ro", uri=True) as db:
            return db.execute("SELECT runs.name, runs.status, EXISTS (SELECT 1 FROM tags WHERE tags.run_uuid = "
                              "runs.run_uuid AND tags.key = 'mlflow.parentRunId') FROM runs").fetchall()
    except sqlite3.Error:  # not there yet, or its tables are being created
        return []


def run_open(project: Path, name: str) -> Callable[[], bool]:
    return lambda: (name, "RUNNING", 0) in open_runs(project)


def same_files(a: Path, b: Path, ignore: Callable[[Path], bool] = lambda p: False) -> None:
    """Folders ``a`` and ``b`` hold the same file names with the same bytes (``ignore``: compared elsewhere)."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and files_a
    for rel in files_a:
        if not ignore(rel):
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def without(obj: object, keys: set[str]) -> object:
    """A JSON object without the keys that differ between two runs by nature (times, run ids)."""
    if isinstance(obj, dict):
        return {k: without(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [without(v, keys) for v in obj]
    return obj


def assert_no_open_run(project: Path, killed: str) -> None:
    """Nothing RUNNING; the killed run (if not resumed) KILLED; the re-run FINISHED."""
    seen = runs(project)
    assert seen and not [r for r in seen if r[1] == "RUNNING"], [(r[0], r[1]) for r in seen]
    assert any(name == killed and status == "FINISHED" for name, status, _, _ in seen)


def two_projects(tmp_path: Path, write: Callable[[Path], None], empty_db: Path) -> tuple[Path, Path]:
    reference = tmp_path / "reference"
    write(reference)
    shutil.copytree(reference, tmp_path / "crash")
    shutil.copy(empty_db, tmp_path / "crash" / "mlflow.db")
    return reference, tmp_path / "crash"


# ---------------------------------------------------------------------------------------------- generate
def test_generate_killed_then_rerun(stages, tmp_path: Path, empty_mlflow_db: Path) -> None:
    reference, crash = two_projects(tmp_path, generate_project, empty_mlflow_db)
    assert stages.run("stages.generate", *GENERATE, cwd=reference).returncode == 0

    kill_when(stages, crash, "stages.generate", GENERATE, run_open(crash, "generate-toy-cdcgan"))
    assert not (crash / "data" / "synthetic" / "toy" / "cdcgan").exists()  # nothing half-written
    killed = [r for r in runs(crash) if r[1] == "RUNNING"]
    assert len(killed) == 1  # SIGKILL: MLflow could not end it

    again = stages.run("stages.generate", *GENERATE, cwd=crash, env=mlflow_env(crash))
    assert again.returncode == 0, again.stderr
    assert f"MLflow run {killed[0][2]} (generate-toy-cdcgan) was left RUNNING by process" in again.stderr
    status = {run_id: s for _, s, run_id, _ in runs(crash)}
    assert status[killed[0][2]] == "KILLED"
    assert_no_open_run(crash, "generate-toy-cdcgan")

    out = Path("data/synthetic/toy/cdcgan")
    same_files(reference / out, crash / out, ignore=lambda p: p.name == "details.json")  # manifest, PNG, DICOM
    for metrics in (Path("metrics/generate/toy_cdcgan.json"), out / "details.json"):
        assert without(json.loads((reference / metrics).read_text()), {"throughput"}) == \
            without(json.loads((crash / metrics).read_text()), {"throughput"}), metrics
    assert leftovers(crash) == []


# ---------------------------------------------------------------------------------------------- evaluate
EVALUATE = ["--dataset", "toy", "--params", "params.yaml", "--data-dir", "data/toy", "--synthetic-dir", "syn"]


def evaluate_project(root: Path) -> None:
    write_cache(root / "data" / "toy")
    write_manifest(root / "syn" / "acgan", "acgan", {"malignant": 4, "benign": 2})
    cfg = tiny_config(arms=["real_only", "acgan"], seeds=[0, 1], tracking=True)
    params = {"datasets": DATASET, "evaluate": dataclasses.asdict(cfg)}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def child_finished(project: Path) -> Callable[[], bool]:
    """The parent run is open and one arm x seed child has finished: the kill lands between two children."""
    def ready() -> bool:
        seen = open_runs(project)
        return ("evaluate-toy", "RUNNING", 0) in seen and any(s == "FINISHED" and child for _, s, child in seen)
    return ready


def test_evaluate_killed_then_rerun(stages, tmp_path: Path, empty_mlflow_db: Path) -> None:
    reference, crash = two_projects(tmp_path, evaluate_project, empty_mlflow_db)
    assert stages.run("stages.evaluate", *EVALUATE, cwd=reference).returncode == 0

    kill_when(stages, crash, "stages.evaluate", EVALUATE, child_finished(crash))
    assert not (crash / "results" / "toy").exists() and not (crash / "metrics" / "evaluate" / "toy.json").exists()
    open_before = {run_id for _, s, run_id, _ in runs(crash) if s == "RUNNING"}
    assert open_before  # the parent at least

    again = stages.run("stages.evaluate", *EVALUATE, cwd=crash, env=mlflow_env(crash))
    assert again.returncode == 0, again.stderr
    status = {run_id: s for _, s, run_id, _ in runs(crash)}
    assert {status[r] for r in open_before} == {"KILLED"}
    assert_no_open_run(crash, "evaluate-toy")
    children = [r for r in runs(crash) if r[3].get("mlflow.parentRunId") and r[1] == "FINISHED"]
    parent = json.loads((crash / "results" / "toy" / "details.json").read_text())["mlflow_parent_run_id"]
    assert len([c for c in children if c[3]["mlflow.parentRunId"] == parent]) == 2 * 2  # every arm x seed

    volatile = {"time_s", "timing", "mlflow_parent_run_id", "train_time_s", "train_cpu_s", "train_time_s_mean",
                "train_cpu_s_mean"}
    same_files(reference / "results" / "toy", crash / "results" / "toy",
               ignore=lambda p: p.name in ("summary.json", "details.json"))
    for path in ("results/toy/summary.json", "results/toy/details.json", "metrics/evaluate/toy.json"):
        assert without(json.loads((reference / path).read_text()), volatile) == \
            without(json.loads((crash / path).read_text()), volatile), path
    assert leftovers(crash) == []


# --------------------------------------------------------------------------------------------- train_gan
TRAIN = ["--dataset", "toy", "--model", "acgan", "--params", "params.yaml"]


def gan_project(root: Path) -> None:
    write_gan_cache(root / "data" / "toy")
    gan = tiny_gan_section(epochs=8, tracking=True, sample_every_epochs=4)
    gan["watch"]["every_epochs"] = 4
    gan["train"]["log_every_steps"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump({"datasets": DATASET, "gan": gan}))


def test_train_gan_killed_then_rerun_through_the_stage(stages, tmp_path: Path, empty_mlflow_db: Path) -> None:
    """tests/gan kills the stage and resumes in-process without MLflow; here both are the stage, with MLflow."""
    import torch

    from pipeline.gan.checkpoint import load_checkpoint

    reference, crash = two_projects(tmp_path, gan_project, empty_mlflow_db)
    assert stages.run("stages.train_gan", *TRAIN, cwd=reference).returncode == 0

    last = crash / "runs" / "toy" / "acgan" / "last.pt"
    kill_when(stages, crash, "stages.train_gan", TRAIN, lambda: last.is_file())
    assert load_checkpoint(last)["epoch"] < 8 and not (crash / "models" / "toy" / "acgan").exists()
    [(name, status, run_id, _)] = runs(crash)
    assert status == "RUNNING"

    again = stages.run("stages.train_gan", *TRAIN, cwd=crash, env=mlflow_env(crash))
    assert again.returncode == 0, again.stderr
    assert [(r[0], r[1], r[2]) for r in runs(crash)] == [(name, "FINISHED", run_id)]  # resumed, then ended

    a = load_checkpoint(reference / "models" / "toy" / "acgan" / "last.pt")
    b = load_checkpoint(crash / "models" / "toy" / "acgan" / "last.pt")
    assert a["epoch"] == b["epoch"] == 8
    for key in ("G", "D"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key  # bitwise on CPU
    same_files(reference / "models" / "toy" / "acgan" / "samples", crash / "models" / "toy" / "acgan" / "samples")
    assert leftovers(crash) == []
