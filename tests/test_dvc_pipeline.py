"""End to end: the real ``dvc repro`` of the phantoms and ingest stages on a tiny preset, in a copy of the repo."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

DVC = str(Path(sys.executable).parent / "dvc")


def copy_repo(dst: Path) -> Path:
    """Copy what git tracks or would track (no data, models, venv) and make it a one-commit git repo."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dst, check=True, capture_output=True)
    return dst


def tiny_params(repo: Path) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["phantom"].update(mammo_patients=12, mammo_film_px=128, cell_px=32, cells_per_slide=4,
                             cell_counts={"normal": 16, "low_grade": 12, "high_grade": 12})
    params["datasets"]["mammography"]["patch"].update(min_patch_px=16, max_patch_px=64)
    for ds in params["datasets"].values():
        ds["resolution_px"] = 32
        ds["split"].update(val_fraction=0.2, test_fraction=0.3)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.slow
def test_dvc_repro_ingest_on_tiny_phantoms(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    tiny_params(repo)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PIPELINE_ID_SALT": "e2e",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run([DVC, "repro", "ingest"], cwd=repo, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for name in ("mammography", "cervical"):
        metrics = json.loads((repo / "metrics" / "ingest" / f"{name}.json").read_text())
        assert all(sum(metrics["counts"][s].values()) > 0 for s in ("train", "val", "test"))
        assert (repo / "data" / name / "cache" / "test.npz").is_file()
    again = subprocess.run([DVC, "repro", "ingest"], cwd=repo, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "didn't change" in again.stdout
    shown = subprocess.run([DVC, "metrics", "show", "--json"], cwd=repo, env=env, capture_output=True, text=True)
    assert "metrics/ingest/mammography.json" in shown.stdout


@pytest.mark.slow
def test_dvc_plots_render_the_learning_curves(tmp_path: Path) -> None:
    """dvc.yaml's plots: results/<ds>/curves holds only CSVs, drawn as val scores against epoch; the PNGs of the
    same curves are declared apart (curve_images/), as images, so no PNG is parsed as data."""
    repo = copy_repo(tmp_path / "repo")
    (repo / "dvc.lock").unlink(missing_ok=True)  # its hashes of results/ name a cache this copy does not have
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    from PIL import Image

    for name in ("mammography", "cervical"):
        for arm in ("real_only", "acgan_discriminator"):
            curves = repo / "results" / name / "curves"
            curves.mkdir(parents=True, exist_ok=True)
            (curves / f"{arm}-seed0.csv").write_text(
                "epoch,lr,train_loss,val_loss,val_macro_f1,val_balanced_accuracy,monitor_smoothed,selected\n"
                "1,0.0001,1.2,1.1,0.30,0.35,0.30,0\n2,0.001,0.9,1.0,0.45,0.50,0.375,1\n")
            images = repo / "results" / name / "curve_images"
            images.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8)).save(images / f"{arm}.png")
    shown = subprocess.run([DVC, "plots", "show", "--json"], cwd=repo, env=env, capture_output=True, text=True,
                           timeout=300)
    assert shown.returncode == 0, shown.stdout[-2000:] + shown.stderr[-2000:]
    out = json.loads(shown.stdout)
    curve_errors = [e for e in out.get("errors", []) if "curve" in json.dumps(e)]  # other stages' plots are absent
    assert not curve_errors, curve_errors
    data = out["data"]
    curve = data["results/mammography/curves/real_only-seed0.csv"][0]
    assert curve["type"] == "vega" and curve["content"]["encoding"]["x"]["field"] == "epoch"
    assert {row["field"] for row in curve["content"]["data"]["values"]} == {"val_macro_f1", "val_balanced_accuracy"}
    assert data["results/cervical/curve_images/acgan_discriminator.png"][0]["type"] == "image"
    assert not any(k.endswith(".png") and "/curves/" in k for k in data)
