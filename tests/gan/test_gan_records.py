"""The train_gan stage's output records: written and read back the same; an old file names the stage to re-run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import DataError
from pipeline.gan.records import TrainSummary, train_gan_stage


def summary() -> TrainSummary:
    return TrainSummary(
        dataset="mammo", model="acgan", epochs=20, epochs_done=20, steps=400, train_minutes=1.5, precision="bf16",
        best_epoch=15, best_quality_fd=3.2, best_fd_per_class={"benign": 3.0, "malignant": None},
        best_diversity_ratio_per_class={"benign": 0.9}, final={"loss_D": 1.2, "quality_fd": None},
        final_fd_per_class={"benign": 3.1}, final_diversity_ratio_per_class={"benign": 0.8}, images_per_s=180.0,
        device="cpu", world_size=1, mlflow_run_id=None)


def test_train_summary_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "train_summary.json"
    summary().write(path)
    assert TrainSummary.read(path, train_gan_stage("mammo", "acgan")) == summary()
    assert list(json.loads(path.read_text())) == sorted(summary().to_json())  # indented, keys sorted


def test_non_finite_numbers_are_written_as_null(tmp_path: Path) -> None:
    path = tmp_path / "train_summary.json"
    record = summary()
    record.best_quality_fd = float("inf")  # no score was computed
    record.write(path)
    assert TrainSummary.read(path, "train_gan@mammo-acgan").best_quality_fd is None


def test_an_old_or_missing_summary_names_the_file_and_the_stage(tmp_path: Path) -> None:
    path = tmp_path / "train_summary.json"
    data = summary().to_json()
    del data["world_size"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as err:
        TrainSummary.read(path, train_gan_stage("mammo", "acgan"))
    assert str(err.value) == (f"{path}: no key 'world_size' (written by an older version); "
                              "re-run: dvc repro train_gan@mammo-acgan")
    with pytest.raises(DataError, match=r"missing\.json: not found; re-run: dvc repro train_gan@mammo-acgan$"):
        TrainSummary.read(tmp_path / "missing.json", "train_gan@mammo-acgan")
    path.write_text("{not json")
    with pytest.raises(DataError, match=r"unreadable .*; re-run: dvc repro train_gan@mammo-acgan$"):
        TrainSummary.read(path, "train_gan@mammo-acgan")
