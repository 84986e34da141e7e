"""Generate minority-class images with a trained GAN, gate copies, filter, measure, and write them out.

Reads top to bottom: the data set and the checked generator, the real-data classifier (feature space
and filter), the memorisation thresholds, the realism balls, then per class a loop that generates a
batch, gates and filters it and repeats until the class has its target of KEPT images or
``max_attempts_factor`` x the target have been generated (the shortfall is reported, never hidden).
Then the quality metrics, each beside its real-vs-real reference. :func:`write_outputs` writes the
folder atomically::

    manifest.csv                      one row per generated image (pipeline.data.synthetic.MANIFEST_COLUMNS)
    images/syn_<gan>_<class>_<i>.png  kept images (the only ones a classifier arm reads)
    memorised/syn_....png             excluded as copies, and memorised.csv with their nearest real image ids
    rejected/syn_....png              excluded by the filter (unrealistic or low confidence)
    dicom/syn_....dcm                 kept images as synthetic Secondary Capture DICOM (when exported)
    samples.png                       a grid of kept images, one row per class
    details.json                      every count, threshold, quality value and timing (the DVC metrics
                                      file holds :func:`headline_metrics`)

Each fake gets the first reason that applies, in this order: ``memorised`` (copy gate), ``unrealistic``
(outside the k-NN balls of the real training images of its class, pipeline/quality/realism.py),
``low_confidence`` (the classifier's softmax of its class below the class's threshold: ``min_confidence``,
lowered to what ``confidence_val_pass`` of the class's real validation images reach, so the test refuses
what is less recognisable than most real images, not what a weak classifier finds hard), else ``kept``.
Class confidence alone keeps noise: the softmax picks the nearest class even for an image unlike any of them.

Real training pixels are never written here: the folder may travel as "synthetic", so the nearest real
image of a memorised fake is named by its id only.
"""
from __future__ import annotations

import math
import os
import re
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from pipeline.data.cache import load_meta, load_split
from pipeline.data.synthetic import SYNTHETIC_PREFIX, ManifestRow, fmt, write_manifest
from pipeline.errors import DataError
from pipeline.gan.samples import save_grid
from pipeline.generate.classifier import features_and_probabilities, load_or_train_classifier
from pipeline.generate.config import GenerateConfig
from pipeline.generate.dicom import check_synthetic_dicom, series_uids, write_synthetic_dicom
from pipeline.generate.quality import class_quality, overall, real_reference
from pipeline.generate.records import FOLDER_OF, MEMORISED_COLUMNS, REASONS, GenerateDetails
from pipeline.generate.sampling import LoadedGenerator, check_fits_data, image_seed, load_checked_generator, sample
from pipeline.generate.targets import class_targets
from pipeline.io import atomic_dir, finite, write_csv_atomic
from pipeline.progress import progress
from pipeline.quality.features import extract_features, to_signed_unit
from pipeline.quality.memorisation import build_reference, fit_thresholds, gate
from pipeline.quality.metrics import ms_ssim_setup
from pipeline.quality.realism import fit_realism



@dataclass
class Generated:
    """One generated image and every verdict about it."""

    class_name: str
    index: int
    seed: int
    image: np.ndarray  # uint8 (C, H, W)
    reason: str
    confidence: float
    nn_feature_distance: float
    nn_pixel_distance: float
    nn_real_id: str
    nn_feature_real_id: str
    nn_pixel_real_id: str
    feature_relative: float
    pixel_relative: float
    ball_scale: float  # smallest radius scale at which it enters a k-NN ball of its class (nan: realism off)
    features: torch.Tensor = field(repr=False)

    @property
    def kept(self) -> bool:
        return self.reason == "kept"


@dataclass
class GenerationRun:
    dataset: str
    gan: str
    generator: LoadedGenerator
    classes: list[str]
    records: list[Generated]
    metrics: GenerateDetails  # details.json
    dicom: bool  # export the kept images as synthetic DICOM
    grid_columns: int


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "class"


def file_stem(gan: str, class_name: str, index: int) -> str:
    return f"{SYNTHETIC_PREFIX}{safe_name(gan)}_{safe_name(class_name)}_{index:05d}"


class Timer:
    """Wall and process-CPU seconds per phase: CPU time says what a phase costs when the machine is shared."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[phase] += time.perf_counter() - wall
            self.cpu[phase] += time.process_time() - cpu

    def report(self, n_images: int) -> dict:
        per_1000 = 1000 / n_images if n_images else float("nan")
        return {
            "generation_images_per_s": n_images / self.wall["generate"] if self.wall["generate"] > 0 else None,
            "generation_cpu_s_per_1000": finite(self.cpu["generate"] * per_1000),
            "gate_and_filter_s_per_1000": finite(self.wall["gate"] * per_1000),
            "gate_and_filter_cpu_s_per_1000": finite(self.cpu["gate"] * per_1000),
            "metrics_s": self.wall["metrics"], "metrics_cpu_s": self.cpu["metrics"],
            "metrics_s_per_1000": finite(self.wall["metrics"] * per_1000),
            "classifier_s": self.wall["classifier"], "threads": torch.get_num_threads(),
        }


def confidence_thresholds(val_p: torch.Tensor, val_y: torch.Tensor, cap: float, val_pass: float,
                          min_val_images: int) -> list[float]:
    """Per class, the softmax of its own class that ``val_pass`` of its real validation images reach, capped at
    ``cap`` (``val_pass`` 0: ``cap`` everywhere). A class with fewer than ``min_val_images`` validation images
    takes the quantile of all validation images' own-class softmax pooled, so a handful cannot set it."""
    n_classes = val_p.shape[1]
    if val_pass <= 0 or len(val_y) == 0:
        return [cap] * n_classes
    own = val_p[torch.arange(len(val_y)), val_y].double()
    pooled = float(torch.quantile(own, 1.0 - val_pass))
    out = []
    for c in range(n_classes):
        mine = own[val_y == c]
        q = float(torch.quantile(mine, 1.0 - val_pass)) if len(mine) >= min_val_images else pooled
        out.append(min(cap, q))
    return out


def available_threads(requested: int) -> int:
    if requested:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def generate_synthetic(cfg: GenerateConfig, checkpoint: str | Path | LoadedGenerator, data_dir: str | Path,
                       dataset: str | None = None, gan: str | None = None,
                       counts: dict[str, int] | None = None) -> GenerationRun:
    """Generate, gate, filter and measure; ``counts`` (class -> kept images) overrides ``cfg.target``.

    ``checkpoint`` is a file or a generator already loaded with :func:`load_checked_generator`.
    """
    torch.set_num_threads(available_threads(cfg.num_threads))
    data_dir = Path(data_dir)
    gen = checkpoint if isinstance(checkpoint, LoadedGenerator) else \
        load_checked_generator(checkpoint, cfg.prefer_ema, gan, dataset)
    dataset = dataset or gen.dataset or data_dir.name
    gan = gan or gen.model
    meta = load_meta(data_dir)
    check_fits_data(gen, meta, dataset)
    classes = [str(c) for c in meta["classes"]]
    if len({safe_name(c) for c in classes}) != len(classes):
        raise DataError(f"{data_dir}/meta.json: class names {classes} collide once made file-name safe; rename them")

    # ------------------------------------------------------------------ real data, classifier, thresholds
    train, val = load_split(data_dir, "train"), load_split(data_dir, "val")
    if len(val) == 0 or len(train) < 2:
        raise DataError(f"{data_dir}/cache: {len(train)} training and {len(val)} validation images; the copy gate "
                        "calibrates on validation images: give the data set a validation split (split.val_fraction)")
    train_x, train_y = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    val_x, val_y = torch.from_numpy(val.images), torch.from_numpy(val.labels)
    real_counts = {c: int((train_y == i).sum()) for i, c in enumerate(classes)}
    if counts is not None:
        unknown = sorted(set(counts) - set(classes))
        if unknown:
            raise DataError(f"--label {unknown[0]!r}: not a class of {dataset}; use one of {', '.join(classes)}")
        targets = {c: counts[c] for c in classes if counts.get(c, 0) > 0}
    else:
        targets = class_targets(real_counts, cfg.target)

    timer = Timer()
    cache = Path(cfg.classifier.cache_dir) / dataset if cfg.classifier.cache_dir else None
    with timer("classifier"):
        net = load_or_train_classifier(train_x, train_y, len(classes), cfg.classifier, cache)
    train_f, train_p = features_and_probabilities(net, train_x)
    val_f, val_p = features_and_probabilities(net, val_x)
    reference = build_reference(train_x, train_f, list(train.image_ids), lambda x: extract_features(net, x),
                                cfg.memorisation.match_flips, cfg.memorisation.max_shift_px)
    thresholds = fit_thresholds(reference, val_x, val_f, cfg.memorisation.percentile, cfg.memorisation.neighbours_k)
    fc = cfg.filter
    min_conf = confidence_thresholds(val_p, val_y, fc.min_confidence, fc.confidence_val_pass,
                                     fc.realism_min_val_images)
    realism = fit_realism(train_x, train_f, train_y, val_x, val_f, val_y, len(classes), fc.realism_spaces,
                          fc.realism_k, fc.realism_val_pass, fc.realism_min_val_images) \
        if fc.enabled and fc.realism else None

    # ------------------------------------------------------------------ generate, gate, filter, repeat
    records: list[Generated] = []
    counts_out: dict[str, dict] = {}
    for c_name, target in targets.items():
        c = classes.index(c_name)
        cap = math.ceil(target * cfg.target.max_attempts_factor)
        n_kept = index = 0
        bar = progress(total=target, desc=f"{dataset}/{gan}/{c_name}", unit="kept")
        while n_kept < target and index < cap:
            n = min(cfg.batch_size, target - n_kept, cap - index)
            seeds = [image_seed(cfg.seed, c, index + k) for k in range(n)]
            with timer("generate"):
                images = sample(gen.G, seeds, c, gen.z_dim)
            with timer("gate"):
                feats, probs = features_and_probabilities(net, images)
                verdict = gate(images, feats, reference, thresholds)
                ball_scale = realism.entry_scales(images, feats, c).numpy() if realism else np.full(n, np.nan)
                realistic = ball_scale <= realism.scale(c) if realism else np.ones(n, dtype=bool)
            conf = probs[:, c].numpy()
            for k in range(n):
                if verdict.memorised[k]:
                    reason = "memorised"
                elif not realistic[k]:
                    reason = "unrealistic"
                elif cfg.filter.enabled and conf[k] < min_conf[c]:
                    reason = "low_confidence"
                else:
                    reason = "kept"
                records.append(Generated(c_name, index + k, seeds[k], images[k].numpy(), reason, float(conf[k]),
                                         float(verdict.feature_distance[k]), float(verdict.pixel_distance[k]),
                                         verdict.nn_real_id[k], verdict.feature_nn_id[k], verdict.pixel_nn_id[k],
                                         float(verdict.feature_relative[k]), float(verdict.pixel_relative[k]),
                                         float(ball_scale[k]), feats[k]))
                n_kept += reason == "kept"
            bar.update(min(target, n_kept) - bar.n)
            index += n
        bar.close()
        mine = [r for r in records if r.class_name == c_name]
        counts_out[c_name] = {"real_train": real_counts[c_name], "target": target, "generated": len(mine),
                              **{r: sum(x.reason == r for x in mine) for r in REASONS},
                              "shortfall": max(0, target - n_kept)}
    n_generated = len(records)

    # ------------------------------------------------------------------ quality, beside real-vs-real references
    with timer("metrics"):
        train_sets = {c: (train_f[train_y == classes.index(c)], train_x[train_y == classes.index(c)]) for c in targets}
        val_sets = {c: val_f[val_y == classes.index(c)] for c in targets}
        quality = measure_quality(records, train_sets, val_sets, cfg)

    real_pass = {c: (float((val_p[val_y == i, i] >= min_conf[i]).double().mean()) if bool((val_y == i).any()) else None)
                 for i, c in enumerate(classes)}
    totals = {r: sum(x.reason == r for x in records) for r in REASONS}
    kernel, weights = ms_ssim_setup(gen.resolution_px, cfg.metrics.ms_ssim_kernel_px, cfg.metrics.ms_ssim_max_scales)
    dicom = cfg.dicom_export == "on" or (cfg.dicom_export == "auto" and meta.get("modality") == "mammography")
    metrics = GenerateDetails(
        dataset=dataset, gan=gan, checkpoint=gen.label, ema=gen.ema, seed=cfg.seed,
        counts=counts_out,
        totals={"target": sum(targets.values()), "generated": n_generated, **totals,
                "shortfall": sum(v["shortfall"] for v in counts_out.values())},
        throughput=timer.report(n_generated),
        memorisation={**thresholds.as_dict(), "match_flips": cfg.memorisation.match_flips,
                      "rule": "memorised if, in feature OR pixel (RMS) space, the nearest training-image distance d "
                              "AND r = d / mean of the k nearest are both below the percentile of the same over "
                              "real validation images"},
        filter={"enabled": cfg.filter.enabled, "min_confidence": fc.min_confidence,
                "confidence_val_pass": fc.confidence_val_pass,
                "confidence_threshold": {c: float(min_conf[i]) for i, c in enumerate(classes)},
                "real_val_pass_rate": real_pass,
                "real_train_pass_rate": {c: float((train_p[train_y == i, i] >= min_conf[i]).double().mean())
                                         for i, c in enumerate(classes) if bool((train_y == i).any())},
                "realism": {"enabled": True, **realism.as_dict(classes)} if realism else {"enabled": False}},
        quality=quality,
        settings={"feature_space": f"FeatureNet ({cfg.classifier.feature_dim}-d) trained here on the real training "
                                   "split, class-balanced",
                  "kid": "own unbiased MMD^2, cubic polynomial kernel (MONAI MMDMetric is linear-kernel)",
                  "ms_ssim": {"kernel_px": kernel, "scales": len(weights), "weights": list(weights),
                              "implementation": "monai.metrics.regression.compute_ms_ssim"},
                  "reference": "real validation vs real training images of the class"},
        dicom_export=dicom,
    )
    return GenerationRun(dataset, gan, gen, classes, records, metrics, dicom, cfg.grid_columns)


def measure_quality(records: list[Generated], train_sets: dict[str, tuple[torch.Tensor, torch.Tensor]],
                    val_sets: dict[str, torch.Tensor], cfg: GenerateConfig) -> dict:
    """Per-class and overall metrics of the kept and of all generated images of each class in ``train_sets``.

    ``train_sets``: class -> (training features, training uint8 images); ``val_sets``: class -> validation features.
    """
    references = {c: real_reference(f, x, val_sets[c], cfg.metrics, cfg.seed) for c, (f, x) in train_sets.items()}
    quality = {}
    for subset in ("kept", "generated"):
        per_class = {}
        for c, (train_f, train_x) in train_sets.items():
            mine = [r for r in records if r.class_name == c and (subset == "generated" or r.kept)]
            fake_f = torch.stack([r.features for r in mine]) if mine else torch.zeros(0, train_f.shape[1])
            fake_x = torch.from_numpy(np.stack([r.image for r in mine])) if mine else train_x[:0]
            per_class[c] = class_quality(fake_f, fake_x, references[c], cfg.metrics, cfg.seed)
        quality[subset] = {"per_class": per_class, "overall": overall(per_class)}
    return quality


def headline_metrics(metrics: GenerateDetails) -> dict:
    """The metrics file of ``dvc metrics show`` from a run's ``metrics``: kept and target per class, and the kept
    images' FD and coverage (all classes) beside their real-vs-real references (the rest: ``details.json``)."""
    overall_kept = metrics.quality["kept"]["overall"]
    out: dict = {"kept": {c: n["kept"] for c, n in metrics.counts.items()},
                 "target": {c: n["target"] for c, n in metrics.counts.items()}}
    for name in ("fd", "coverage"):
        block = overall_kept.get(name) or {}
        out[name] = {"value": block.get("value"), "reference": block.get("reference")}
    return out


SYNTHETIC_PNG_TEXT = {"Synthetic": "true",
                      "Comment": "SYNTHETIC image made by a GAN; not a patient image; not for diagnosis"}


def write_png(path: Path, image: np.ndarray, text: dict[str, str] | None = None) -> None:
    """``image`` (C, H, W) uint8 as PNG; every text chunk of :data:`SYNTHETIC_PNG_TEXT` and ``text`` marks it."""
    arr = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    info = PngInfo()
    for key, value in {**SYNTHETIC_PNG_TEXT, **(text or {})}.items():
        info.add_text(key, value)
    Image.fromarray(np.ascontiguousarray(arr)).save(path, format="PNG", pnginfo=info)


def write_outputs(run: GenerationRun, out_dir: str | Path, metrics_name: str | None = None) -> Path:
    """Write the folder described in the module docstring, atomically; returns ``out_dir``."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        for folder in sorted(set(FOLDER_OF.values())):  # unrealistic and low_confidence share rejected/
            (tmp / folder).mkdir()
        if run.dicom:
            (tmp / "dicom").mkdir()
            study_uid, series_uid = series_uids(run.generator.label, run.dataset, run.gan)
        rows, memorised_rows = [], []
        for n, r in enumerate(progress(run.records, desc="write", unit="img")):
            stem = file_stem(run.gan, r.class_name, r.index)
            rel = f"{FOLDER_OF[r.reason]}/{stem}.png"
            write_png(tmp / rel, r.image, {"Generator": f"{run.gan} ({run.dataset})", "Class": r.class_name})
            rows.append(ManifestRow(rel, r.class_name, run.gan, run.generator.label, r.seed, r.reason, r.confidence,
                                    r.nn_feature_distance, r.nn_pixel_distance, r.nn_real_id))
            if r.reason == "memorised":
                memorised_rows.append({"path": f"{stem}.png", "class": r.class_name, "seed": r.seed,
                                       "nn_real_id": r.nn_real_id, "nn_feature_real_id": r.nn_feature_real_id,
                                       "nn_feature_distance": fmt(r.nn_feature_distance),
                                       "nn_feature_relative": fmt(r.feature_relative),
                                       "nn_pixel_real_id": r.nn_pixel_real_id,
                                       "nn_pixel_distance": fmt(r.nn_pixel_distance),
                                       "nn_pixel_relative": fmt(r.pixel_relative)})
            if run.dicom and r.kept:
                dcm = tmp / "dicom" / f"{stem}.dcm"
                write_synthetic_dicom(dcm, r.image, gan=run.gan, class_name=r.class_name, seed=r.seed,
                                      checkpoint_label=run.generator.label, study_uid=study_uid,
                                      series_uid=series_uid, instance_number=n + 1)
                check_synthetic_dicom(dcm)
        write_manifest(tmp / "manifest.csv", rows)
        mem = run.metrics.memorisation
        write_csv_atomic(tmp / "memorised" / "memorised.csv",
                         [{**m, **{k: fmt(mem[k]) for k in ("feature_threshold", "relative_feature_threshold",
                                                             "pixel_threshold_rms", "relative_pixel_threshold")}}
                          for m in memorised_rows], MEMORISED_COLUMNS)
        write_sample_grid(run, tmp / "samples.png")
        if metrics_name:
            run.metrics.write(tmp / metrics_name)
    return out_dir


def write_sample_grid(run: GenerationRun, path: Path) -> Path | None:
    """Up to ``grid_columns`` kept images per generated class, one row per class (black where fewer)."""
    names = list(run.metrics.counts)
    if not names:
        return None
    res, ch = run.generator.resolution_px, run.generator.channels
    tiles = []
    for name in names:
        kept = [r.image for r in run.records if r.class_name == name and r.kept][:run.grid_columns]
        row = torch.full((run.grid_columns, ch, res, res), -1.0)
        if kept:
            row[:len(kept)] = to_signed_unit(torch.from_numpy(np.stack(kept)))
        tiles.append(row)
    return save_grid(torch.cat(tiles), len(names), path, names)


def log_to_mlflow(tracker, run: GenerationRun, out_dir: Path) -> None:
    """Counts, throughput and quality (value and reference) as metrics; grid, manifest and gate CSV as artifacts."""
    flat: dict[str, float] = {}
    for c, cnt in run.metrics.counts.items():
        flat.update({f"{k}_{c}": v for k, v in cnt.items()})
    flat.update({f"total_{k}": v for k, v in run.metrics.totals.items()})
    flat.update({k: v for k, v in run.metrics.throughput.items() if isinstance(v, (int, float))})
    for subset, q in run.metrics.quality.items():
        for scope, per in [*q["per_class"].items(), ("overall", q["overall"])]:
            for key in ("fd", "kid", "precision", "recall", "density", "coverage", "diversity_ms_ssim"):
                for part in ("value", "reference"):
                    v = per[key].get(part)
                    if isinstance(v, (int, float)):
                        flat[f"{subset}_{key}_{scope}{'' if part == 'value' else '_ref'}"] = v
    for key in ("feature_threshold", "pixel_threshold_rms", "relative_feature_threshold", "relative_pixel_threshold",
                "real_val_flag_rate"):
        flat[f"memorisation_{key}"] = run.metrics.memorisation[key]
    for c, per in run.metrics.filter["realism"].get("per_class", {}).items():
        for key in ("scale", "real_val_pass_rate"):
            if isinstance(per.get(key), (int, float)):
                flat[f"realism_{key}_{c}"] = per[key]
    tracker.log_metrics(flat)  # names cleaned by the tracker
    for name in ("samples.png", "manifest.csv", "memorised/memorised.csv"):
        if (out_dir / name).is_file():
            tracker.log_artifact(out_dir / name, "generate")
