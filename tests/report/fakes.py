"""A tiny fake project on disk, written through the record classes of the stages that make each file.

- ingest: ``pipeline.data.cache`` (meta.json, cache/<split>.npz)
- train_gan: ``pipeline.gan.records`` (models/<ds>/<gan>/train_summary.json; loss CSV with HISTORY_COLUMNS)
- generate: ``pipeline.generate.records`` (manifest.csv rows, images/syn_*.png, memorised/memorised.csv and
  details.json with quality numbers and real-vs-real references)
- evaluate: ``pipeline.classify.records`` (results/<ds>/details.json, summary.json, predictions/<arm>.csv)
The headline files under metrics/ are not written: the report does not read them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from pipeline.classify.records import (HEADLINE, PREDICTION_COLUMNS, EvaluateDetails, EvaluateSummary,
                                       predictions_path)
from pipeline.data.cache import SplitArrays
from pipeline.gan.records import HISTORY_COLUMNS, TrainSummary
from pipeline.data.synthetic import ManifestRow, write_manifest
from pipeline.generate.records import MEMORISED_COLUMNS, GenerateDetails
from pipeline.io import write_csv_atomic
from tests.toydata import write_ingested

CLASSES = ["normal", "benign", "malignant"]


def blob_image(rng: np.random.Generator, cls: int, channels: int, px: int, synthetic: bool) -> np.ndarray:
    """uint8 (C, H, W): textured background with a bright blob whose size grows with the class."""
    yy, xx = np.mgrid[0:px, 0:px] / px
    cy, cx = rng.uniform(0.35, 0.65, 2)
    r = 0.08 + 0.07 * cls
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    texture = rng.normal(0, 0.08 if synthetic else 0.1, (px, px))
    grey = np.clip(0.25 + 0.5 * blob + texture, 0, 1)
    if channels == 1:
        return (grey * 255).astype(np.uint8)[None]
    tint = np.array([0.9, 0.6, 0.8])[:, None, None]
    return (np.clip(grey[None] * tint + 0.1, 0, 1) * 255).astype(np.uint8)


def write_params(root: Path, dataset: str, modality: str, channels: int, review_items: int = 12,
                 tracking: bool = False) -> Path:
    params = {
        "datasets": {dataset: {"modality": modality, "channels": channels, "resolution_px": 32,
                               "source": {"reader": "folder", "root": "unused"}, "classes": CLASSES}},
        "report": {"samples_per_class": 3, "excluded_max": 4, "review_items": review_items, "review_seed": 7,
                   "review_gan": "best", "tracking": tracking},
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def make_project(root: Path, dataset: str = "mammo", modality: str = "mammography", channels: int = 1,
                 px: int = 32, gans: tuple[str, ...] = ("acgan", "cdcgan"), patient_level_split: bool = True,
                 parent_run_id: str | None = None, with_evaluation: bool = True,
                 discriminator_arm: bool = False) -> Path:
    """Write every input of the report stage for ``dataset`` under ``root``; returns ``root``.

    ``discriminator_arm``: the evaluation also has the semi-supervised arm ``acgan_discriminator`` (it scores
    above every other arm, so a reader that took it for a GAN-image or a non-GAN arm would pick it as best)."""
    rng = np.random.default_rng(0)
    arrays = {}
    splits = {"train": [8, 6, 4], "val": [2, 2, 1], "test": [6, 5, 3]}
    for split, per_class in splits.items():
        images, labels, ids = [], [], []
        for c, n in enumerate(per_class):
            for k in range(n):
                images.append(blob_image(rng, c, channels, px, synthetic=False))
                labels.append(c)
                ids.append(f"{split}_{CLASSES[c]}_{k:03d}_a1b2c3")
        arrays[split] = SplitArrays(np.stack(images), np.array(labels, np.int64), np.array(ids))
    write_ingested(root / "data" / dataset, arrays, CLASSES, dataset=dataset, modality=modality,
                   patient_level_split=patient_level_split, n_groups=20)
    train_ids = [f"train_{CLASSES[c]}_{k:03d}_a1b2c3" for c, n in enumerate(splits["train"]) for k in range(n)]
    for g, gan in enumerate(gans):
        _gan_outputs(root, dataset, gan, channels, px, rng, train_ids, seed=g)
    if with_evaluation:
        _evaluation(root, dataset, gans, parent_run_id, rng, discriminator_arm)
    return root


def _gan_outputs(root: Path, dataset: str, gan: str, channels: int, px: int, rng: np.random.Generator,
                 train_ids: list[str], seed: int) -> None:
    out = root / "data" / "synthetic" / dataset / gan
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "memorised").mkdir(parents=True, exist_ok=True)
    rows = []
    for c, cls in enumerate(CLASSES):
        for k in range(7):  # 5 kept, 1 memorised, 1 unrealistic (last class) or low confidence, as run.py files them
            reason = "kept" if k < 5 else "memorised" if k == 5 else \
                "unrealistic" if cls == CLASSES[-1] else "low_confidence"
            name = f"syn_{gan}_{cls}_{k:05d}.png"
            sub = {"kept": "images", "memorised": "memorised"}.get(reason, "rejected")
            (out / sub).mkdir(exist_ok=True)
            arr = blob_image(rng, c, channels, px, synthetic=True)
            Image.fromarray(arr[0] if channels == 1 else arr.transpose(1, 2, 0)).save(out / sub / name)
            nn = [i for i in train_ids if f"_{cls}_" in i][k % 3] + ("#mirror" if k == 1 else "")
            rows.append(ManifestRow(f"{sub}/{name}", cls, gan, "best.pt epoch 15", seed * 1000 + k, reason,
                                    0.6 + 0.05 * k, 0.2 + 0.3 * k, 0.05 + 0.02 * k, nn))
    write_manifest(out / "manifest.csv", rows)
    write_csv_atomic(out / "memorised" / "memorised.csv", [  # the gate's statistics
        {"path": Path(r.path).name, "class": r.cls, "seed": r.seed, "nn_real_id": r.nn_real_id,
         "nn_feature_real_id": r.nn_real_id, "nn_feature_distance": r.nn_feature_distance, "feature_threshold": 1.0,
         "nn_feature_relative": 0.3, "relative_feature_threshold": 0.41, "nn_pixel_real_id": r.nn_real_id,
         "nn_pixel_distance": r.nn_pixel_distance, "pixel_threshold_rms": 0.1, "nn_pixel_relative": 0.6,
         "relative_pixel_threshold": 0.52} for r in rows if r.reason == "memorised"], MEMORISED_COLUMNS)
    TrainSummary(
        dataset=dataset, model=gan, epochs=20, epochs_done=20, steps=400, train_minutes=1.5, precision="fp32",
        best_epoch=15, best_quality_fd=3.2, best_fd_per_class={c: 3.0 for c in CLASSES},
        best_diversity_ratio_per_class={c: 0.9 for c in CLASSES}, final={"loss_D": 1.2, "loss_G": 0.9},
        final_fd_per_class={c: 3.1 for c in CLASSES}, final_diversity_ratio_per_class={c: 0.9 for c in CLASSES},
        images_per_s=180.0, device="cpu", world_size=1, mlflow_run_id=f"trainrun{seed}",
    ).write(root / "models" / dataset / gan / "train_summary.json")
    write_csv_atomic(root / "plots" / "train_gan" / f"{dataset}_{gan}.csv", [
        {"epoch": e, "step": 20 * e, "loss_D": 1.4 - 0.02 * e, "loss_G": 0.7 + 0.03 * e, "D_x": 0.6, "D_G_z": 0.4,
         "aux_acc": 0.5 + 0.02 * e if gan == "acgan" else "", "noise_std": 0.1 * (1 - e / 20),
         "quality_fd": 8 - 0.3 * e if e % 5 == 0 else "", "diversity_ratio": 0.9 if e % 5 == 0 else "",
         "images_per_s": 180} for e in range(1, 21)], HISTORY_COLUMNS)
    generate_metrics(dataset, gan).write(out / "details.json")


def _quality_block(offset: float, reference: bool) -> dict:
    base = {"fd": 4.1, "kid": 0.012, "precision": 0.71, "recall": 0.48, "density": 0.9, "coverage": 0.6,
            "diversity_ms_ssim": 0.31}
    ref = {"fd": 2.0, "kid": 0.004, "precision": 0.8, "recall": 0.79, "density": 1.0, "coverage": 0.8,
           "diversity_ms_ssim": 0.22}
    return {k: {"value": v + offset, "std": 0.1, "reference": ref[k] if reference else None, "reference_std": None}
            for k, v in base.items()}


def generate_metrics(dataset: str, gan: str) -> GenerateDetails:
    """data/synthetic/<ds>/<gan>/details.json as pipeline/generate/run.py writes it (numbers made up)."""
    per_class = {c: {"n_fake": 5, "n_train": 6, "n_val": 2, "n_fake_per_draw": 2,
                     "reference": "train_vs_val" if c != "malignant" else "none: 1 validation image(s), need >= 2",
                     **_quality_block(0.1 * i, c != "malignant")} for i, c in enumerate(CLASSES)}
    overall = {k: {**v, "classes": CLASSES[:2]} for k, v in _quality_block(0.05, True).items()}
    counts = {c: {"real_train": n, "target": 5, "generated": 7, "kept": 5, "memorised": 1,
                  "unrealistic": int(c == CLASSES[-1]), "low_confidence": int(c != CLASSES[-1]), "shortfall": 0}
              for c, n in zip(CLASSES, (8, 6, 4))}
    return GenerateDetails(
        dataset=dataset, gan=gan, checkpoint="best.pt epoch 15", ema=False, seed=0, counts=counts,
        totals={"target": 15, "generated": 21, "kept": 15, "memorised": 3, "unrealistic": 1, "low_confidence": 2,
                "shortfall": 0},
        throughput={"generation_images_per_s": 900.0, "metrics_s": 1.0, "threads": 2},
        memorisation={"relative_feature_threshold": 0.41, "relative_pixel_threshold": 0.52, "percentile": 1.0,
                      "k": 5, "n_real_reference": 5, "real_val_flag_rate": 0.02, "real_val_median_nn_feature": 1.3,
                      "real_val_median_nn_pixel_rms": 0.11, "match_flips": True, "rule": "..."},
        filter={"enabled": True, "min_confidence": 0.5, "real_val_pass_rate": {c: 0.9 for c in CLASSES}},
        quality={"kept": {"per_class": per_class, "overall": overall},
                 "generated": {"per_class": per_class, "overall": overall}},
        settings={"reference": "real validation vs real training images of the class"}, dicom_export=False)


def _interval(estimate: float, half: float) -> dict:
    return {"estimate": estimate, "low": round(estimate - half, 4), "high": round(estimate + half, 4), "level": 0.95}


def comparison(gans: tuple[str, ...], discriminator_arm: bool = False) -> dict:
    """pipeline.classify.stats.compare_arms output plus level and best_non_gan (numbers made up)."""
    means = {"real_only": 0.62, "class_weighted": 0.63, "classical": 0.64,
             **{gan: 0.70 - 0.03 * i for i, gan in enumerate(gans)},
             **({"acgan_discriminator": 0.75} if discriminator_arm else {})}
    arms = {arm: {**{m: _interval(mean - 0.01 * k, 0.07) for k, m in enumerate(HEADLINE)},
                  "per_seed": {m: [mean, mean] for m in HEADLINE}} for arm, mean in means.items()}

    def gains(reference: str) -> dict:
        return {arm: {**{m: {**_interval(mean - means[reference], 0.06),
                             "label": "gain" if mean - means[reference] > 0.06 else "no gain", "wilcoxon_p": 0.5}
                         for m in HEADLINE},
                      "mcnemar": {"arm_only_correct": 3, "reference_only_correct": 1, "p": 0.6}}
                for arm, mean in means.items() if arm != reference}

    return {"arms": arms, "gains": {"real_only": {"reference": "real_only", "arms": gains("real_only")},
                                    "best_non_gan": {"reference": "classical", "arms": gains("classical")}},
            "level": 0.95, "best_non_gan": "classical"}


def evaluate_metrics(dataset: str, gans: tuple[str, ...], parent_run_id: str | None,
                     discriminator_arm: bool = False) -> EvaluateDetails:
    """results/<ds>/details.json as pipeline/classify/evaluate.py ``evaluate_details`` makes it from ``comparison``."""
    comp = comparison(gans, discriminator_arm)
    gains = {ref_name: {arm: {m: {"diff": g[m]["estimate"], "low": g[m]["low"], "high": g[m]["high"],
                                  "label": g[m]["label"]} for m in HEADLINE} for arm, g in block["arms"].items()}
             for ref_name, block in comp["gains"].items()}
    return EvaluateDetails(
        mlflow_parent_run_id=parent_run_id or "", n_seeds=2, minority_class="malignant", best_non_gan="classical",
        classifier="cnn", classifier_detail="cnn", selection="best val_macro_f1", best_epoch_mean={},
        epochs_run_mean={}, time_s=12.0, train_time_s_mean=1.5, train_cpu_s_mean=1.5,
        arms={arm: {m: {"mean": a[m]["estimate"], "low": a[m]["low"], "high": a[m]["high"]} for m in HEADLINE}
              for arm, a in comp["arms"].items()},
        gains_vs_real_only=gains["real_only"], gains_vs_best_non_gan=gains["best_non_gan"])


def evaluate_summary(dataset: str, gans: tuple[str, ...], parent_run_id: str | None,
                     discriminator_arm: bool = False) -> EvaluateSummary:
    """results/<ds>/summary.json (numbers made up, no runs)."""
    comp = comparison(gans, discriminator_arm)
    return EvaluateSummary(
        dataset=dataset, classes=CLASSES, minority_class="malignant", seeds=[0, 1], classifier="cnn",
        selection="best val_macro_f1", arms=comp["arms"], best_non_gan="classical", n_seeds=2, split_hash="0" * 12,
        params_hash="1" * 12, n_test=14, n_synthetic={gan: 15 for gan in gans}, mlflow_parent_run_id=parent_run_id,
        timing={"time_s": 12.0}, method="made up", gains=comp["gains"], level=0.95, runs=[])


def _evaluation(root: Path, dataset: str, gans: tuple[str, ...], parent_run_id: str | None,
                rng: np.random.Generator, discriminator_arm: bool = False) -> None:
    """results/<ds>/details.json, summary.json and predictions/<arm>.csv (2 seeds)."""
    results = root / "results" / dataset
    evaluate_metrics(dataset, gans, parent_run_id, discriminator_arm).write(results / "details.json")
    evaluate_summary(dataset, gans, parent_run_id, discriminator_arm).write(results / "summary.json")
    truth = [c for c, n in enumerate([6, 5, 3]) for _ in range(n)]
    for arm in comparison(gans, discriminator_arm)["arms"]:
        accuracy = 0.8 if arm in gans else 0.6
        rows = []
        for seed in (0, 1):
            for k, t in enumerate(truth):
                p = t if rng.random() < accuracy else (t + 1) % 3
                rows.append({"image_id": f"test_{k}", "actual": CLASSES[t], "predicted": CLASSES[p], "arm": arm,
                             "seed": seed, **{f"p_{c}": 0.8 if i == p else 0.1 for i, c in enumerate(CLASSES)}})
        write_csv_atomic(predictions_path(results, arm), rows, [*PREDICTION_COLUMNS, *(f"p_{c}" for c in CLASSES)])
