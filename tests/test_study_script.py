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
