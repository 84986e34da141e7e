"""Fixtures of the reliability tests: one stage-command server per session, and what every failure must show."""
from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.reliability.stagerun import Result, StageRunner


DATASET = {"toy": {"source": {"reader": "folder", "root": "unused"}, "resolution_px": 32, "channels": 1,
                   "modality": "cytology"}}  # params.yaml needs one; the stages read --data-dir caches
GENERATE = ["--dataset", "toy", "--gan", "cdcgan", "--params", "params.yaml"]


def generate_project(root: Path) -> None:
    """A project ready for the generate stage's DVC form: toy cache, untrained checkpoint, fast params."""
    from tests.generate.gen_toy import fast_generate_section, write_toy_cache, write_toy_checkpoint

    write_toy_cache(root / "data" / "toy")
    write_toy_checkpoint(root / "models" / "toy" / "cdcgan" / "best.pt")
    params = {"datasets": DATASET, "generate": fast_generate_section(tracking=True, num_threads=1)}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture(scope="session")
def stages() -> StageRunner:
    """Runs ``python -m stages.<name> ...`` commands (see stagerun.py); MLflow off unless a test turns it on."""
    runner = StageRunner({"PIPELINE_TRACKING": "0"})
    yield runner
    runner.close()


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite store with its tables made: creating them costs ~7 s, copying this file nothing."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments(max_results=1)
    return path


@dataclasses.dataclass
class PhantomProject:
    root: Path  # holds params.yaml, data/, models/, metrics/, plots/, results/, reports/, runs/, mlflow.db, mlruns/
    logs: dict[str, Result]  # stage -> what its command printed

    @property
    def synthetic(self) -> Path:
        return self.root / "data" / "synthetic" / "mammo" / "acgan"


CHAIN = [("phantoms", []), ("ingest", ["--dataset", "mammo"]),
         ("train_gan", ["--dataset", "mammo", "--model", "acgan"]),
         ("generate", ["--dataset", "mammo", "--gan", "acgan"]),
         ("evaluate", ["--dataset", "mammo"]), ("report", ["--dataset", "mammo"])]


@pytest.fixture(scope="session")
def phantom_project(stages: StageRunner, empty_mlflow_db: Path,
                    tmp_path_factory: pytest.TempPathFactory) -> PhantomProject:
    """The whole pipeline on tiny phantom settings, every stage through its command, MLflow on (~30 s).

    The phantom DICOMs carry fake patient names, ids, birth dates, accession numbers, institution and study
    dates (pipeline/data/phantoms/dicom.py). Between train_gan and generate the generator's weights are widened
    (as tests/generate/gen_toy.py does): a 2-epoch GAN draws near-identical images that the memorisation
    gate rightly rejects, and generate must keep some for the report and the DICOM export to be checked.
    """
    import torch

    from pipeline.gan.checkpoint import load_checkpoint, save_checkpoint
    from tests.classify.fakes import tiny_config
    from tests.gan.gan_toy import tiny_gan_section
    from tests.generate.gen_toy import fast_generate_section

    root = tmp_path_factory.mktemp("phantom_project")
    params = {
        "phantom": {"seed": 7, "mammo_patients": 16, "mammo_film_px": 128, "mammo_class_fractions": [0.4, 0.3, 0.3],
                    "cell_counts": {"normal": 2, "abnormal": 2}, "cell_px": 32, "cells_per_slide": 2},
        "datasets": {"mammo": {
            "modality": "mammography", "task": "patches", "channels": 1, "resolution_px": 32,
            "source": {"reader": "dicom", "root": "data/phantoms/mammography",
                       "labels_csv": "data/phantoms/mammography/labels.csv"},
            "classes": ["normal", "benign", "malignant"], "patch": {"min_patch_px": 16, "max_patch_px": 64},
            "split": {"val_fraction": 0.2, "test_fraction": 0.3, "seed": 0}}},
        "gan": tiny_gan_section(epochs=2, tracking=True),
        "generate": fast_generate_section(tracking=True, num_threads=1),
        "evaluate": dataclasses.asdict(tiny_config(arms=["real_only", "acgan"], seeds=[0], tracking=True)),
        "report": {"review_items": 8, "samples_per_class": 2, "excluded_max": 2, "tracking": True},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(empty_mlflow_db, root / "mlflow.db")
    env = mlflow_env(root)
    logs = {}
    for stage, args in CHAIN:
        logs[stage] = stages.run(f"stages.{stage}", *args, "--params", "params.yaml", cwd=root, env=env)
        assert logs[stage].returncode == 0, (stage, logs[stage].stderr[-3000:])
        if stage == "train_gan":
            best = root / "models" / "mammo" / "acgan" / "best.pt"
            state = load_checkpoint(best)
            torch.manual_seed(0)
            for name, weight in state["G"].items():
                if name.endswith("weight") and weight.ndim > 1:
                    weight.normal_(0.0, 0.3)
            save_checkpoint(state, best)
    return PhantomProject(root, logs)


def mlflow_env(project: Path) -> dict[str, str]:
    """Environment of a stage command that tracks into ``project/mlflow.db``."""
    return {"PIPELINE_TRACKING": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}


def mlflow_runs(db: Path) -> list[tuple[str, str, str, dict]]:
    """(run name, status, run id, tags) of every run in the sqlite store ``db``; only once no stage writes to it."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{db}")
    return [(r.info.run_name, r.info.status, r.info.run_id, r.data.tags)
            for e in client.search_experiments() for r in client.search_runs([e.experiment_id], max_results=1000)]


def assert_one_line_error(result: Result, *parts: str, after_logs: bool = False) -> str:
    """Exit 2 and exactly one stderr line 'error: <file or key>: <problem>; <fix>' holding ``parts``.

    ``after_logs``: a stage that fails half-way has logged its progress first (INFO/WARNING lines of the
    pipeline's or MLflow's loggers); the error is then the last line and the only other kind.
    """
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr_lines
    if after_logs:
        log_line = re.compile(r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d )?(INFO|WARNING) ")
        assert all(log_line.match(line) for line in lines[:-1]), result.stderr[-3000:]
        lines = lines[-1:]
    assert len(lines) == 1, result.stderr[-3000:]
    line = lines[0]
    assert line.startswith("error: "), line
    for part in parts:
        assert part in line, (part, line)
    assert re.search(r"; \S", line), f"no fix after the problem: {line}"
    return line


def leftovers(root: Path) -> list[Path]:
    """Temporary files and folders of atomic writes (``.<name>.tmp...``) left anywhere under ``root``."""
    return sorted(p for p in root.rglob(".*") if ".tmp" in p.name)
