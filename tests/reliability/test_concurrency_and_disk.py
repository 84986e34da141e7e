"""Two stage commands logging into one new MLflow sqlite store at once lose no run; a full disk (a file-size
limit on the command, or ENOSPC injected in-process), an unwritable output folder and an MLflow store that
cannot be written stop a stage with one line naming the path and a fix, and leave no partial output.
"""
from __future__ import annotations

import errno
import os
import shutil
import sys
from pathlib import Path
from unittest import mock

import pytest

from tests.reliability.conftest import (GENERATE, assert_one_line_error, generate_project, leftovers, mlflow_env,
                                        mlflow_runs)
from tests.reliability.test_bad_inputs import GAN_ARGS, gan_case, ingest_case, run_ingest, with_arg

INGEST = ["--params", "params.yaml", "--dataset", "d", "--out", "out", "--metrics", "metrics.json"]


def test_two_runs_at_once_on_a_new_store_lose_nothing(stages, tmp_path: Path) -> None:
    """Both commands create the store's tables at the same moment: without the lock in tracking.ready_store
    one of them died on MLflow's schema migration ('duplicate column name') and its run was lost."""
    generate_project(tmp_path)
    env = mlflow_env(tmp_path)
    started = [stages.start("stages.generate", *GENERATE, "--out", f"out{k}", "--metrics", f"m{k}.json",
                            cwd=tmp_path, env=env) for k in (1, 2)]
    codes = [stages.wait(pid) for pid, _, _ in started]
    assert codes == [0, 0], [err.read_text()[-2000:] for _, _, err in started]
    seen = mlflow_runs(tmp_path / "mlflow.db")
    assert sorted((name, status) for name, status, _, _ in seen) == [("generate-toy-cdcgan", "FINISHED")] * 2
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for _, _, run_id, _ in seen:
        run = client.get_run(run_id)
        assert run.data.metrics["total_kept"] == 14 and len(run.data.params) > 20
        assert {a.path for a in client.list_artifacts(run_id, "generate")} >= {"generate/manifest.csv"}


# --------------------------------------------------------------------------------------------- full disk
def test_file_size_limit_ingest(stages, tmp_path: Path) -> None:
    """``ulimit -f``: a write past the limit fails with EFBIG (Python ignores SIGXFSZ), like a full disk."""
    ingest_case(tmp_path, "cells")
    result = stages.run("stages.ingest", *INGEST, cwd=tmp_path, fsize_limit=16_000)
    assert_one_line_error(result, "error: out: File too large; free disk space or raise the file-size limit")
    assert not (tmp_path / "out").exists() and not (tmp_path / "metrics.json").exists()
    assert leftovers(tmp_path) == []


def test_file_size_limit_train_gan(stages, tmp_path: Path) -> None:
    """torch.save into a file turned the error into a RuntimeError without path or cause (a traceback)."""
    gan_case(tmp_path, 1)
    result = stages.run("stages.train_gan", *GAN_ARGS, cwd=tmp_path, fsize_limit=16_000)
    assert_one_line_error(result, "runs/features.pt: File too large")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_full_mlflow_store(stages, tmp_path: Path, empty_mlflow_db: Path) -> None:
    generate_project(tmp_path)
    shutil.copy(empty_mlflow_db, tmp_path / "mlflow.db")
    limit = (tmp_path / "mlflow.db").stat().st_size + 4096  # the store may grow by one page
    result = stages.run("stages.generate", *GENERATE, cwd=tmp_path, env=mlflow_env(tmp_path), fsize_limit=limit)
    assert_one_line_error(result, f"sqlite:///{tmp_path / 'mlflow.db'}: the MLflow store cannot be written",
                          "PIPELINE_TRACKING=0", after_logs=True)
    assert leftovers(tmp_path) == []
    out = tmp_path / "data" / "synthetic" / "toy" / "cdcgan"
    if out.exists():  # written whole before MLflow logging failed
        from pipeline.data.synthetic import read_manifest

        assert all((out / row.path).is_file() for row in read_manifest(out / "manifest.csv"))
    # with space again, the same command succeeds and nothing stays RUNNING
    assert stages.run("stages.generate", *GENERATE, cwd=tmp_path, env=mlflow_env(tmp_path)).returncode == 0
    assert [s for _, s, _, _ in mlflow_runs(tmp_path / "mlflow.db") if s == "RUNNING"] == []


def test_no_space_left_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """ENOSPC from a write deep inside numpy's npz writer (it names no file): the line names the output."""
    import stages.ingest
    from stages._common import run

    ingest_case(tmp_path, "cells")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIPELINE_ID_SALT", "x")

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("numpy.savez", full_disk)
    with mock.patch.object(sys, "argv", ["ingest", *INGEST]), pytest.raises(SystemExit) as exit_:
        run(stages.ingest.main)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: out: No space left on device; free disk space or write the outputs to another disk"]
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


# -------------------------------------------------------------------------------------- unwritable folder
@pytest.mark.parametrize("stage", ["ingest", "train_gan"])
def test_a_file_where_the_output_folder_should_be(stages, tmp_path: Path, stage: str) -> None:
    """Checked before any work (stages._common.check_writable): train_gan does not train first."""
    (tmp_path / "blocker").write_text("not a folder")
    if stage == "ingest":
        ingest_case(tmp_path, "cells")
        result = stages.run("stages.ingest", *with_arg(INGEST, "--out", "blocker/out"), cwd=tmp_path)
    else:
        gan_case(tmp_path, 1)
        result = stages.run("stages.train_gan", *with_arg(GAN_ARGS, "--out-dir", "blocker/out"), cwd=tmp_path)
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))
    assert_one_line_error(result, "error: blocker: File exists; a file stands where a folder is needed")
    assert not (tmp_path / "metrics.json").exists() and leftovers(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod 555 folder anyway; the test above covers "
                                               "an unwritable output path for root")
def test_read_only_output_folder(stages, tmp_path: Path) -> None:
    ingest_case(tmp_path, "cells")
    (tmp_path / "locked").mkdir(mode=0o555)
    try:
        result = stages.run("stages.ingest", *with_arg(INGEST, "--out", "locked/out"), cwd=tmp_path)
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert_one_line_error(result, "error: locked: Permission denied; make the folder writable")
    assert not (tmp_path / "metrics.json").exists()


def test_metrics_path_checked_before_the_output_is_written(stages, tmp_path: Path) -> None:
    """An unwritable --metrics used to fail after the output folder was written: half the outputs."""
    (tmp_path / "blocker").write_text("not a folder")
    ingest_case(tmp_path, "cells")
    result = stages.run("stages.ingest", *with_arg(INGEST, "--metrics", "blocker/m.json"), cwd=tmp_path)
    assert_one_line_error(result, "error: blocker: File exists")
    assert not (tmp_path / "out").exists()
    assert run_ingest(stages, tmp_path).returncode == 0  # and the same data set ingests where it can write
