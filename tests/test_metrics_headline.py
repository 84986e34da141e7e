"""``dvc metrics show`` on the default pipeline stays readable: every stage's metrics file holds its headline only.

Fixture details in each stage's format go through the stage's own ``headline_metrics`` into the paths dvc.yaml
declares (the project's dvc.yaml and params.yaml, copied), then ``dvc metrics show --json`` is counted. Before
the headline files, the default run showed 718 columns (283 in each evaluate file, ~230 in each generate file).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.classify.evaluate import headline_metrics as evaluate_headline
from pipeline.classify.evaluate import uses_gan
from pipeline.classify.metrics import HEADLINE
from pipeline.classify.records import EvaluateDetails
from pipeline.config import load_params
from pipeline.data.ingest import headline_metrics as ingest_headline
from pipeline.gan.records import TrainSummary
from pipeline.gan.train import headline_metrics as train_gan_headline
from pipeline.generate.records import GenerateDetails
from pipeline.generate.run import headline_metrics as generate_headline
from tests.conftest import REPO

DVC = str(Path(sys.executable).parent / "dvc")
CLASSES = {"mammography": ["normal", "benign", "malignant"], "cervical": ["normal", "low_grade", "high_grade"]}
MAX_COLUMNS_PER_FILE = 50  # evaluate with the 8 default arms: 8 x 5 + 4 GAN arms x 2 gains + best_non_gan = 49
MAX_COLUMNS_PER_DATASET = 80  # the union of one data set's files (ingest, 2 x train_gan, 2 x generate, evaluate)


def interval(mean: float) -> dict:
    return {"mean": mean, "low": mean - 0.05, "high": mean + 0.05}


def evaluate_details(arms: list[str]) -> EvaluateDetails:
    """results/<ds>/details.json as pipeline/classify/evaluate.py writes it (numbers made up)."""
    gain = {m: {"diff": 0.01, "low": -0.02, "high": 0.04, "label": "no gain"} for m in HEADLINE}
    return EvaluateDetails(
        mlflow_parent_run_id="0" * 32, n_seeds=3, minority_class="malignant", best_non_gan="classical",
        classifier="cnn", classifier_detail="cnn", selection="best val_macro_f1", time_s=60.0,
        best_epoch_mean={a: 12.0 for a in arms}, epochs_run_mean={a: 20.0 for a in arms}, train_time_s_mean=5.0,
        train_cpu_s_mean=5.0, arms={a: {m: interval(0.8) for m in HEADLINE} for a in arms},
        gains_vs_real_only={a: gain for a in arms if a != "real_only"}, gains_vs_best_non_gan={a: gain for a in arms})


def train_summary() -> TrainSummary:
    """models/<ds>/<gan>/train_summary.json (pipeline/gan/train.py), numbers made up."""
    return TrainSummary(
        dataset="mammography", model="acgan", epochs=600, epochs_done=600, steps=1200, train_minutes=50.0,
        precision="fp32", best_epoch=500, best_quality_fd=2.2, best_fd_per_class={"benign": 2.0, "malignant": 2.4},
        best_diversity_ratio_per_class={"benign": 0.68, "malignant": 0.82}, final={"loss_D": 1.9, "diversity_ratio": 0.73},
        final_fd_per_class={}, final_diversity_ratio_per_class={}, images_per_s=410.0, device="cpu", world_size=1,
        mlflow_run_id=None)


def generate_details(classes: list[str]) -> GenerateDetails:
    """data/synthetic/<ds>/<gan>/details.json (pipeline/generate/run.py), the parts the headline reads + a few."""
    block = {m: {"value": 3.0, "reference": 4.0, "classes": classes[1:]} for m in ("fd", "kid", "coverage", "recall")}
    return GenerateDetails(
        dataset="mammography", gan="acgan", checkpoint="best.pt epoch 500", ema=True, seed=0,
        counts={c: {"kept": 100, "target": 120, "generated": 300, "memorised": 1, "shortfall": 20} for c in classes[1:]},
        totals={"kept": 200, "target": 240, "generated": 600, "memorised": 2, "shortfall": 40},
        throughput={"generation_images_per_s": 900.0}, memorisation={}, filter={},
        quality={"kept": {"overall": block, "per_class": {c: block for c in classes[1:]}},
                 "generated": {"overall": block}},
        settings={}, dicom_export=False)


def ingest_details(classes: list[str]) -> dict:
    """data/<ds>/ingest.json (pipeline/data/ingest.py), the parts the headline reads + a few."""
    return {"counts": {s: {c: 10 for c in classes} for s in ("train", "val", "test")}, "n_images": 90,
            "quality_gate_dropped_total": 2, "quality_gate_dropped": {c: 1 for c in classes}, "n_groups": 40}


def flat_keys(obj: object, prefix: str = "") -> set[str]:
    if isinstance(obj, dict):
        return set().union(*(flat_keys(v, f"{prefix}{k}.") for k, v in obj.items())) if obj else set()
    return {prefix.rstrip(".")}


@pytest.fixture
def default_run(tmp_path: Path) -> Path:
    """A DVC project with the repository's dvc.yaml and params.yaml and headline files at the declared paths."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(REPO / name, tmp_path / name)
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=tmp_path, check=True, capture_output=True)
    cfg = load_params(REPO / "params.yaml").evaluate
    files = {}
    for ds, classes in CLASSES.items():
        files[f"metrics/ingest/{ds}.json"] = ingest_headline(ingest_details(classes))
        for gan in ("cdcgan", "acgan"):
            files[f"metrics/train_gan/{ds}_{gan}.json"] = train_gan_headline(train_summary())
            files[f"metrics/generate/{ds}_{gan}.json"] = generate_headline(generate_details(classes))
        files[f"metrics/evaluate/{ds}.json"] = evaluate_headline(
            evaluate_details(cfg.arms), [a for a in cfg.arms if uses_gan(a, cfg)])
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps(data))
    return tmp_path


def test_dvc_metrics_show_fits_per_data_set(default_run: Path) -> None:
    shown = subprocess.run([DVC, "metrics", "show", "--json"], cwd=default_run, capture_output=True, text=True,
                           check=True)
    (revision,) = json.loads(shown.stdout).values()
    columns = {path: flat_keys(v["data"]) for path, v in revision["data"].items()}
    assert len(columns) == 12, sorted(columns)  # 2 data sets x (ingest, 2 x train_gan, 2 x generate, evaluate)
    too_wide = {p: len(c) for p, c in columns.items() if len(c) > MAX_COLUMNS_PER_FILE}
    assert not too_wide, too_wide
    for ds in CLASSES:
        union = set().union(*(c for p, c in columns.items() if ds in p))
        assert len(union) <= MAX_COLUMNS_PER_DATASET, (ds, len(union))
    evaluate = columns["metrics/evaluate/mammography.json"]
    assert {"real_only.macro_f1", "real_only.macro_f1_low", "real_only.minority_recall",
            "acgan.gain_vs_real_only", "acgan.gain_vs_best_non_gan", "best_non_gan"} <= evaluate
    assert "real_only.gain_vs_real_only" not in evaluate and not any("label" in c for c in evaluate)
    assert columns["metrics/train_gan/cervical_acgan.json"] == {
        "steps", "epochs_done", "best_epoch", "best_fd", "lowest_diversity_ratio", "images_per_s"}
    assert {"kept.malignant", "target.malignant", "fd.value", "fd.reference", "coverage.value",
            "coverage.reference"} <= columns["metrics/generate/mammography_acgan.json"]


TOY_STAGE = """\
import csv, json, sys
from pathlib import Path

import yaml

sys.path.insert(0, sys.argv[1])
from pipeline.classify.evaluate import headline_metrics
from tests.test_metrics_headline import evaluate_details

epochs = yaml.safe_load(Path("params.yaml").read_text())["toy"]["epochs"]
details = evaluate_details(["real_only", "classical", "acgan"])
details.arms["acgan"]["macro_f1"] = {"mean": 0.5 + 0.1 * epochs, "low": 0.4, "high": 0.9}
Path("metrics").mkdir(exist_ok=True)
Path("metrics/evaluate.json").write_text(json.dumps(headline_metrics(details, ["acgan"])))
Path("plots").mkdir(exist_ok=True)
with open("plots/loss.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["epoch", "loss_D"])
    w.writerows([e, round(2.0 / (e + epochs), 4)] for e in range(1, 6))
Path("predictions").mkdir(exist_ok=True)
with open("predictions/acgan_seed0.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["image_id", "actual", "predicted"])
    w.writerows([i, "benign", "benign" if i < 3 + epochs else "malignant"] for i in range(8))
"""

TOY_DVC_YAML = """\
stages:
  evaluate:
    cmd: python stage.py {repo}
    deps: [stage.py]
    params: [toy]
    outs: [predictions]
    metrics:
      - metrics/evaluate.json: {{cache: false}}
    plots:
      - plots/loss.csv: {{x: epoch, y: loss_D}}
plots:
  - predictions:
      template: confusion
      x: actual
      y: predicted
"""


@pytest.mark.slow
def test_dvc_exp_show_metrics_diff_and_plots_diff_compare_two_experiments(tmp_path: Path) -> None:
    """Two ``dvc exp run -S`` experiments of a stage that writes the evaluate headline, a loss curve and prediction
    CSVs declared as in dvc.yaml: ``dvc exp show`` lists both with readable columns, ``dvc metrics diff`` names the
    metric that changed, ``dvc plots diff`` renders the curve and the confusion matrix for each experiment."""
    from tests.test_scaling import git_commit_all, git_dvc_repo, sh, tool_env

    repo = git_dvc_repo(tmp_path / "repo")
    (repo / "params.yaml").write_text("toy:\n  epochs: 0\n")
    (repo / "stage.py").write_text(TOY_STAGE)
    (repo / "dvc.yaml").write_text(TOY_DVC_YAML.format(repo=REPO))
    (repo / ".gitignore").write_text("/predictions\n")
    git_commit_all(repo, "toy stage")
    env = tool_env()
    for name, epochs in (("short", 1), ("long", 3)):
        sh([DVC, "exp", "run", "-q", "-n", name, "-S", f"toy.epochs={epochs}"], repo, env)

    shown = json.loads(sh([DVC, "exp", "show", "--json"], repo, env))
    experiments = {e["name"]: e for rev in shown for e in (rev.get("experiments") or [])}
    assert {"short", "long"} <= set(experiments), sorted(experiments)
    for name, epochs in (("short", 1), ("long", 3)):
        (exp,) = experiments[name]["revs"]
        metrics = exp["data"]["metrics"]["metrics/evaluate.json"]["data"]
        assert metrics["acgan"]["macro_f1"] == pytest.approx(0.5 + 0.1 * epochs)
        assert exp["data"]["params"]["params.yaml"]["data"]["toy"]["epochs"] == epochs
    table = sh([DVC, "exp", "show", "--csv", "--only-changed"], repo, env).splitlines()
    assert len(table[0].split(",")) <= 40, table[0]  # readable: only what differs between the experiments

    diff = json.loads(sh([DVC, "metrics", "diff", "short", "long", "--json"], repo, env))
    changed = diff["metrics/evaluate.json"]
    assert changed["acgan.macro_f1"]["old"] == pytest.approx(0.6) and changed["acgan.macro_f1"]["new"] == pytest.approx(0.8)
    assert "real_only.macro_f1" not in changed  # unchanged metrics are left out

    plots = json.loads(sh([DVC, "plots", "diff", "short", "long", "--json"], repo, env))["data"]
    assert {"plots/loss.csv", "predictions/acgan_seed0.csv"} <= set(plots), sorted(plots)
    for name, rendered in plots.items():
        revisions = {r for p in rendered for r in p.get("revisions", [])}
        assert {"short", "long"} <= revisions, (name, revisions)
