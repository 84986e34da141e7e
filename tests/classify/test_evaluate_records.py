"""The evaluate stage's output records: written and read back the same; an old file names the stage to re-run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.classify.records import HEADLINE, EvaluateDetails, EvaluateSummary, evaluate_stage
from pipeline.errors import DataError

STAGE = evaluate_stage("mammo")


def interval(mean: float) -> dict:
    return {"mean": mean, "low": mean - 0.05, "high": mean + 0.05}


def details() -> EvaluateDetails:
    gain = {m: {"diff": 0.01, "low": -0.02, "high": 0.04, "label": "no gain"} for m in HEADLINE}
    return EvaluateDetails(
        mlflow_parent_run_id="", n_seeds=2, minority_class="malignant", best_non_gan="classical", classifier="cnn",
        classifier_detail="cnn channels=[8, 16]", selection="best val_macro_f1", best_epoch_mean={"real_only": 3.0},
        epochs_run_mean={"real_only": 6.0}, time_s=12.5, train_time_s_mean=1.5, train_cpu_s_mean=1.25,
        arms={a: {m: interval(0.7) for m in HEADLINE} for a in ("real_only", "classical", "acgan")},
        gains_vs_real_only={"classical": gain, "acgan": gain}, gains_vs_best_non_gan={"real_only": gain, "acgan": gain})


def summary() -> EvaluateSummary:
    return EvaluateSummary(
        dataset="mammo", classes=["normal", "malignant"], minority_class="malignant", seeds=[0, 1], classifier="cnn",
        selection="best val_macro_f1", arms={"real_only": {"macro_f1": {"estimate": 0.7, "low": 0.6, "high": 0.8}}},
        best_non_gan="real_only", n_seeds=2, split_hash="ab", params_hash="cd", n_test=18,
        n_synthetic={"acgan": 7}, mlflow_parent_run_id=None, timing={"time_s": 12.5, "workers": 1}, method="bootstrap",
        gains={"real_only": {"reference": "real_only", "arms": {}}}, level=0.95,
        runs=[{"arm": "real_only", "seed": 0, "macro_f1": 0.7}])


def test_details_round_trip_sorted_and_indented_by_one(tmp_path: Path) -> None:
    path = tmp_path / "details.json"
    details().write(path)
    assert EvaluateDetails.read(path, STAGE) == details()
    assert path.read_text() == json.dumps(details().to_json(), indent=1, sort_keys=True) + "\n"


def test_summary_round_trip_in_the_order_written(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    summary().write(path)
    assert EvaluateSummary.read(path, STAGE) == summary()
    assert path.read_text() == json.dumps(summary().to_json(), indent=1) + "\n"
    assert list(json.loads(path.read_text()))[:4] == ["dataset", "classes", "minority_class", "seeds"]


@pytest.mark.parametrize("record", [details(), summary()], ids=["details", "summary"])
def test_an_old_file_names_the_key_the_file_and_the_stage(tmp_path: Path, record) -> None:
    data = record.to_json()
    del data["arms"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as err:
        type(record).read(path, STAGE)
    assert str(err.value) == f"{path}: no key 'arms' (written by an older version); re-run: dvc repro evaluate@mammo"
    path.write_text("[]")
    with pytest.raises(DataError, match=r"not a JSON object; re-run: dvc repro evaluate@mammo$"):
        type(record).read(path, STAGE)
