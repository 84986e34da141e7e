"""scripts/study.py: the parallel plan (core shares, stage commands) and a run of its phases on a stub DVC."""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("study", REPO / "scripts" / "study.py")
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)


def test_core_shares_are_disjoint_and_cover_every_core():
    assert study.core_shares([0, 1], 2) == [[0], [1]]
    assert study.core_shares([0, 1], 4) == [[0], [1]]  # more jobs than cores: one core each, the rest wait
    assert study.core_shares([0, 1, 2, 3], 2) == [[0, 2], [1, 3]]
    assert study.core_shares([0, 1, 2, 3], 1) == [[0, 1, 2, 3]]
    shares = study.core_shares(list(range(7)), 3)
    assert sorted(c for s in shares for c in s) == list(range(7)) and max(map(len, shares)) - min(map(len, shares)) <= 1


def test_stage_jobs_are_the_dvc_yaml_commands_for_each_matrix_item():
    names = ["phantoms", "ingest@cbis-ddsm", "train_gan@cbis-ddsm-cdcgan", "train_gan@herlev-acgan",
             "generate@herlev-acgan", "evaluate@herlev"]
    jobs = dict(study.stage_jobs(names, "train_gan"))
    assert jobs == {"train_gan@cbis-ddsm-cdcgan": [sys.executable, "-m", "stages.train_gan", "--dataset", "cbis-ddsm",
                                                   "--model", "cdcgan"],
                    "train_gan@herlev-acgan": [sys.executable, "-m", "stages.train_gan", "--dataset", "herlev",
                                               "--model", "acgan"]}
    assert dict(study.stage_jobs(names, "generate")) == {
        "generate@herlev-acgan": [sys.executable, "-m", "stages.generate", "--dataset", "herlev", "--gan", "acgan"]}
    # the commands are the ones dvc.yaml runs (so `dvc commit` records what `dvc repro` would have run)
    dvc_yaml = (REPO / "dvc.yaml").read_text()
    assert "cmd: python -m stages.train_gan --dataset ${item.dataset} --model ${item.gan}" in dvc_yaml
    assert "cmd: python -m stages.generate --dataset ${item.dataset} --gan ${item.gan}" in dvc_yaml


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU pinning needs Linux")
def test_parallel_jobs_run_pinned_side_by_side_and_a_failure_stops_with_its_log(tmp_path):
    cores = study.cpu_set()
    probe = "import os, sys, time; time.sleep(1); print(sorted(os.sched_getaffinity(0))); sys.exit({code})"
    jobs = [(f"train_gan@d-g{i}", [sys.executable, "-c", probe.format(code=0)]) for i in range(2)]
    seconds = study.run_parallel(jobs, cores, tmp_path / "logs", tmp_path)
    assert set(seconds) == {"train_gan@d-g0", "train_gan@d-g1"}
    pinned = [json.loads((tmp_path / "logs" / f"train_gan_d-g{i}.log").read_text()) for i in range(2)]
    shares = study.core_shares(cores, 2)
    assert sorted(map(tuple, pinned)) == sorted(map(tuple, shares))  # each job saw only its own share

    failing = [("generate@d-g", [sys.executable, "-c", probe.format(code=3)])]
    with pytest.raises(SystemExit, match=r"generate@d-g failed \(exit 3\); see .*generate_d-g.log"):
        study.run_parallel(failing, cores, tmp_path / "logs", tmp_path)


table_spec = importlib.util.spec_from_file_location("study_table", REPO / "scripts" / "study_table.py")
study_table = importlib.util.module_from_spec(table_spec)
table_spec.loader.exec_module(study_table)


def test_study_table_says_gain_only_when_the_interval_excludes_zero(tmp_path):
    assert study_table.verdict({"diff": 0.02, "low": 0.001, "high": 0.04}) == "gain"
    assert study_table.verdict({"diff": -0.02, "low": -0.04, "high": -0.001}) == "loss"
    assert study_table.verdict({"diff": 0.02, "low": -0.01, "high": 0.05}).startswith("no difference shown")
    assert study_table.verdict(None) == "not measured"

    interval = {"mean": 0.6, "low": 0.55, "high": 0.65}
    gains = {"macro_f1": {"diff": 0.03, "low": -0.01, "high": 0.07}, "minority_recall": {"diff": 0.1, "low": 0.02,
                                                                                          "high": 0.2}}
    (tmp_path / "results" / "toy").mkdir(parents=True)
    (tmp_path / "results" / "toy" / "details.json").write_text(json.dumps({
        "n_seeds": 10, "minority_class": "rare", "time_s": 60, "best_non_gan": "classical",
        "arms": {a: {"macro_f1": interval} for a in ("real_only", "classical", "cdcgan")},
        "gains_vs_real_only": {"classical": gains, "cdcgan": gains}, "gains_vs_best_non_gan": {"cdcgan": gains}}))
    gan_dir = tmp_path / "data" / "synthetic" / "toy" / "cdcgan"
    gan_dir.mkdir(parents=True)
    (gan_dir / "details.json").write_text(json.dumps({
        "counts": {"rare": {"kept": 40, "generated": 50}},
        "quality": {"kept": {"overall": {"fd": {"value": 30.0, "reference": 20.0},
                                         "coverage": {"value": 0.3, "reference": 0.5}}}}}))
    (gan_dir / "samples.png").write_bytes(b"png")
    (tmp_path / "data" / "toy").mkdir()
    (tmp_path / "data" / "toy" / "meta.json").write_text(json.dumps({
        "classes": ["common", "rare"], "n_groups": 30, "patient_level_split": True,
        "counts": {"train": {"common": 20, "rare": 4}, "val": {"common": 5, "rare": 1}, "test": {"common": 8}}}))
    grids = study_table.copy_grids(tmp_path, "toy", tmp_path)
    timing = {"preset": "presets/toy.yaml", "cores": 2, "total_seconds": 600, "note": "evaluate re-run alone",
              "phases": {"train_gan": {"seconds": 540}, "evaluate_and_report": {"seconds": 60}}}
    text = study_table.render(tmp_path, "toy", grids, timing)
    assert "- cdcgan: macro-F1 +0.030 [-0.010, +0.070] (no difference shown (interval spans 0)); " \
           "minority recall +0.100 [+0.020, +0.200] (gain)" in text
    assert "| cdcgan | - | - | - | rare 40/50 | 30.00 (1.50x real-vs-real) | 0.30 (0.60x real-vs-real) |" in text
    assert "![toy cdcgan kept images](toy_cdcgan_kept.png)" in text and (tmp_path / "toy_cdcgan_kept.png").is_file()
    assert "| train_gan | 9.0 |" in text and "| total | 10.0 |" in text
    assert "2 classes; 24 / 6 / 8 train / validation / test images (minority class rare: 4 / 1 / 0); " \
           "split by patient (30 patients)." in text
    assert "How these were measured: evaluate re-run alone." in text
