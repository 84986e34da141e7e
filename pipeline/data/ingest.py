"""Ingest one data set: list -> decode -> patches or whole images -> quality gate -> patient split -> cache.

Nothing that identifies a patient leaves this module: groups are salted hashes and image ids have any
embedded patient id replaced by that hash. Source paths are never written.
"""
from __future__ import annotations

import csv
import logging
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.config import DatasetConfig, SourceConfig
from pipeline.data import preprocess
from pipeline.data.cache import SplitArrays, atomic_dir, save_split, write_json_atomic
from pipeline.data.readers import Item, list_items
from pipeline.data.records import hash_patient, scrub_id
from pipeline.data.splits import assign_splits, check_splits
from pipeline.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class Sample:
    image: np.ndarray  # uint8 (C, H, W)
    label: str
    patient: str
    image_id: str
    external_test: bool = False


@dataclass
class IngestReport:
    """What happened to every input, for the metrics JSON."""

    items_listed: int = 0
    bad_files_skipped: int = 0
    abnormal_without_location: int = 0
    quality_gate_dropped: dict[str, int] = field(default_factory=dict)


def map_labels(items: list[Item], cfg: DatasetConfig, where: str) -> None:
    """Apply ``class_map`` and check labels against ``classes`` (when given); unknown labels stop."""
    mapping = {k.lower(): v for k, v in cfg.class_map.items()}
    allowed = set(cfg.classes)
    for item in items:
        if mapping:
            if item.label not in mapping:
                raise DataError(f"{item.path}: label {item.label!r} is not in {where}.class_map "
                                f"({sorted(mapping)}); add it to class_map")
            item.label = mapping[item.label]
        if allowed and item.label not in allowed:
            raise DataError(f"{item.path}: unknown label {item.label!r}; allowed {sorted(allowed)} "
                            f"({where}.classes): fix the label or add it to classes")
        for lesion in item.lesions:
            lesion.label = item.label if not mapping else mapping.get(lesion.label, item.label)


def lesion_side(radius: float, cfg: DatasetConfig) -> int:
    """Crop side for a lesion: ``context`` x its diameter, clipped to [min_patch_px, max_patch_px]."""
    side = int(round(2 * radius * cfg.patch.context))
    return int(np.clip(side, cfg.patch.min_patch_px, cfg.patch.max_patch_px))


def film_rng(seed: int, image_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(image_id.encode())])


def mammography_patches(item: Item, film: np.ndarray, cfg: DatasetConfig, lesion_sides: list[int],
                        seed: int) -> list[tuple[np.ndarray, str, str]]:
    """Lesion-centred crops for abnormal films, breast-tissue crops for normal ones: (patch, label, suffix)."""
    h, w = film.shape[:2]
    out = []
    if item.label == "normal" or not item.lesions:
        rng = film_rng(seed, item.image_id)
        mask = preprocess.breast_mask(film)
        n = cfg.patch.normal_patches_per_film
        sides = rng.choice(lesion_sides, size=n) if lesion_sides else \
            np.full(n, (cfg.patch.min_patch_px + cfg.patch.max_patch_px) // 2)
        for k, side in enumerate(sides):
            centres = preprocess.sample_tissue_centres(mask, int(side), 1, cfg.patch.min_breast_fraction, rng)
            for row, col in centres:
                out.append((preprocess.crop(film, row, col, int(side)), item.label, f"tissue{k}"))
        return out
    for k, lesion in enumerate(item.lesions):
        row = (h - lesion.y) if lesion.y_from_bottom else lesion.y
        col = lesion.x
        if not (0 <= col < w and 0 <= row < h):
            raise DataError(f"{lesion.where or item.path}: lesion centre x={lesion.x:g}, y={lesion.y:g} is outside "
                            f"the {w} x {h} film; fix the coordinates")
        out.append((preprocess.crop(film, row, col, lesion_side(lesion.radius, cfg)), lesion.label, f"lesion{k}"))
    return out


def decode_items(items: list[Item], cfg: DatasetConfig, report: IngestReport, seed: int,
                 external: bool = False) -> list[Sample]:
    """Decode every item into samples; bad files stop (or are skipped and counted when on_bad_file=skip)."""
    patches = cfg.modality == "mammography" and cfg.task == "patches"
    lesion_sides = sorted(lesion_side(les.radius, cfg) for it in items for les in it.lesions)
    samples: list[Sample] = []
    for item in tqdm(items, desc="decode", unit="img", mininterval=5, disable=None):
        if patches and item.label != "normal" and not item.lesions:
            report.abnormal_without_location += 1  # e.g. mini-MIAS '*NOTE 3*': no centre to crop around
            continue
        try:
            image = item.load(cfg.channels)
        except DataError as exc:
            if cfg.on_bad_file == "skip":
                log.warning("skipped: %s", exc)
                report.bad_files_skipped += 1
                continue
            raise
        crops = mammography_patches(item, image, cfg, lesion_sides, seed) if patches \
            else [(preprocess.square_pad(image), item.label, "")]
        for pixels, label, suffix in crops:
            u8 = preprocess.resize_uint8(pixels, cfg.resolution_px)
            gate = cfg.quality_gate
            if gate.enabled and not preprocess.shows_object(u8, gate.dark_threshold, gate.min_dark_fraction):
                report.quality_gate_dropped[label] = report.quality_gate_dropped.get(label, 0) + 1
                continue
            image_id = f"{item.image_id}_{suffix}" if suffix else item.image_id
            samples.append(Sample(u8, label, item.patient, image_id, external))
    return samples


def cap_per_class(items: list[Item], max_per_class: int, seed: int) -> list[Item]:
    """Keep at most ``max_per_class`` items of each label (seeded), for tiny presets."""
    if max_per_class <= 0:
        return items
    rng = np.random.default_rng(seed)
    kept: list[Item] = []
    for label in sorted({it.label for it in items}):
        group = [it for it in items if it.label == label]
        idx = sorted(rng.permutation(len(group))[:max_per_class])
        kept.extend(group[i] for i in idx)
    return kept


def _external_items(source: SourceConfig, cfg: DatasetConfig, where: str) -> list[Item]:
    items = list_items(source)
    map_labels(items, cfg, where)
    return items


def ingest_dataset(name: str, cfg: DatasetConfig, salt: str, out_dir: Path, metrics_path: Path) -> dict:
    """Run the whole ingest of data set ``name`` and write ``out_dir`` atomically; returns the metrics."""
    t0 = time.perf_counter()
    where = f"datasets.{name}"
    report = IngestReport()
    items = list_items(cfg.source)
    map_labels(items, cfg, where)
    items = cap_per_class(items, cfg.max_per_class, cfg.split.seed)
    report.items_listed = len(items)
    samples = decode_items(items, cfg, report, cfg.split.seed)
    if cfg.external_test is not None:
        ext = _external_items(cfg.external_test, cfg, where + ".external_test")
        report.items_listed += len(ext)
        samples += decode_items(ext, cfg, report, cfg.split.seed, external=True)
    if not samples:
        raise DataError(f"{cfg.source.root or cfg.source.labels_csv}: no usable image left after reading; check "
                        "the folder, the quality gate and on_bad_file")
    classes = list(cfg.classes) or sorted({s.label for s in samples})
    if len(classes) < 2:
        raise DataError(f"{cfg.source.root or cfg.source.labels_csv}: a single class ({classes[0]!r}) was found; "
                        "a classifier needs at least 2 classes: add the other class folders or fix the labels")
    ids = [s.image_id for s in samples]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{where}: image id {dup!r} occurs twice (two files with the same name?); rename one")
    labels = [s.label for s in samples]
    split = assign_splits(labels, [s.patient for s in samples], cfg.split.val_fraction, cfg.split.test_fraction,
                          cfg.split.seed, fixed_test=np.array([s.external_test for s in samples]))
    counts = check_splits(labels, split, classes, where)
    groups = [hash_patient(s.patient, salt) for s in samples]
    image_ids = [scrub_id(s.image_id, s.patient, g) for s, g in zip(samples, groups)]
    patient_level = not (cfg.source.reader == "folder" and not cfg.source.patient_pattern)

    with atomic_dir(out_dir) as tmp:
        (tmp / "cache").mkdir()
        with (tmp / "splits.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["image_id", "label", "group", "split", "source_kind"])
            for i, s in enumerate(samples):
                writer.writerow([image_ids[i], s.label, groups[i], split[i],
                                 "external_test" if s.external_test else "dataset"])
        for part in ("train", "val", "test"):
            idx = np.flatnonzero(split == part)
            arrays = SplitArrays(
                images=np.stack([samples[i].image for i in idx]) if len(idx) else
                np.zeros((0, cfg.channels, cfg.resolution_px, cfg.resolution_px), np.uint8),
                labels=np.array([classes.index(samples[i].label) for i in idx], dtype=np.int64),
                image_ids=np.array([image_ids[i] for i in idx], dtype=str))
            save_split(tmp / "cache" / f"{part}.npz", arrays)
        meta = {"dataset": name, "classes": classes, "modality": cfg.modality, "task": cfg.task,
                "channels": cfg.channels, "resolution_px": cfg.resolution_px, "reader": cfg.source.reader,
                "patient_level_split": patient_level, "n_groups": len(set(groups)), "counts": counts,
                "synthetic": False}
        write_json_atomic(tmp / "meta.json", meta)

    metrics = {"dataset": name, "counts": counts, "n_images": len(samples), "n_groups": len(set(groups)),
               "patient_level_split": patient_level, "items_listed": report.items_listed,
               "bad_files_skipped": report.bad_files_skipped,
               "abnormal_without_location": report.abnormal_without_location,
               "quality_gate_dropped": {c: report.quality_gate_dropped.get(c, 0) for c in classes},
               "quality_gate_dropped_total": sum(report.quality_gate_dropped.values()),
               "time_s": round(time.perf_counter() - t0, 2)}
    write_json_atomic(metrics_path, metrics)
    return metrics
