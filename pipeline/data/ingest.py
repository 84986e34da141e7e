"""Ingest one data set: list -> decode -> patches or whole images -> quality gate -> patient split -> cache.

Nothing that identifies a patient leaves this module: groups are salted hashes of the patient ids, and
image ids are ``<class>_<salted hash of the source path>[_lesionK|_tissueK]``, so no text of a file or
folder name (CBIS-DDSM stems hold the patient number and the view) reaches the outputs. The mapping back
to the files is written nowhere; with the salt and the source folder it can be recomputed
(:func:`public_id`). Source paths are never written.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from pipeline.config import DatasetConfig, SourceConfig
from pipeline.data import preprocess
from pipeline.data.cache import SplitArrays, save_split
from pipeline.io import atomic_dir, write_json_atomic
from pipeline.data.imageio import border_colour, peek_alpha, read_image
from pipeline.data.readers import Item, Listing, list_items
from pipeline.data.records import hash_patient
from pipeline.data.splits import assign_splits, check_splits
from pipeline.errors import DataError
from pipeline.progress import progress

log = logging.getLogger(__name__)


@dataclass
class Sample:
    image: np.ndarray  # uint8 (C, H, W)
    label: str
    patient: str
    image_id: str  # internal: file stem + crop suffix, never written
    external_test: bool = False
    source_key: str = ""  # the file's path below its source folder: hashed into the public id, never written
    crop: str = ""  # lesionK / tissueK for mammography patches


@dataclass
class IngestReport:
    """What happened to every input, for the metrics JSON."""

    items_listed: int = 0
    bad_files_skipped: int = 0
    litter_ignored: int = 0  # Thumbs.db, desktop.ini, .DS_Store, ._* and other hidden files in class folders
    alpha_composited: int = 0  # images with transparency, composited on alpha_background
    alpha_background: Optional[tuple[float, float, float]] = None
    abnormal_without_location: int = 0
    quality_gate_dropped: dict[str, int] = field(default_factory=dict)


def map_labels(items: list[Item], cfg: DatasetConfig, where: str) -> None:
    """Apply ``class_map`` and check labels against ``classes`` (when given); unknown labels stop.

    The film label (the worst of its rows) is for whole-film tasks; each lesion keeps the label of its own
    row (mini-MIAS mdb144 has a benign and a malignant lesion), mapped and checked the same way.
    """
    mapping = {k.lower(): v for k, v in cfg.class_map.items()}
    allowed = set(cfg.classes)

    def mapped(label: str, source: object) -> str:
        if mapping:
            if label not in mapping:
                raise DataError(f"{source}: label {label!r} is not in {where}.class_map ({sorted(mapping)}); "
                                "add it to class_map")
            label = mapping[label]
        if allowed and label not in allowed:
            raise DataError(f"{source}: unknown label {label!r}; allowed {sorted(allowed)} ({where}.classes): "
                            "fix the label or add it to classes")
        return label

    for item in items:
        item.label = mapped(item.label, item.path)
        for lesion in item.lesions:
            lesion.label = mapped(lesion.label, lesion.where or item.path)


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


def check_size(image: np.ndarray, path: Path, min_px: int) -> None:
    """Stop on an image smaller than ``min_image_px`` on a side: resizing would invent its content."""
    h, w = image.shape[:2]
    if min(h, w) < min_px:
        raise DataError(f"{path}: image is {w} x {h} px, smaller than min_image_px {min_px}; remove it, or lower "
                        "datasets.<name>.min_image_px, or set on_bad_file: skip")


def source_key(path: Path, base: Path) -> str:
    """``path`` below the data set's folder (so a moved folder keeps its ids), else the whole path."""
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def public_id(sample: Sample, salt: str) -> str:
    """The image id written to splits.csv and the cache: class, salted hash of the source key, crop."""
    digest = hashlib.sha256(f"{salt}:image:{sample.source_key}".encode()).hexdigest()[:12]
    return f"{sample.label}_{digest}" + (f"_{sample.crop}" if sample.crop else "")


def composite_alpha(items: list[Item], report: IngestReport, seed: int) -> None:
    """Make images with transparency load on the data set's median border colour (from up to 32 opaque images;
    white if every image is transparent). Dropping alpha would put a cut-out cell on black, a background no
    other image has, and a classifier could learn the class from it."""
    flags = [peek_alpha(it.path) for it in items]
    transparent = [it for it, alpha in zip(items, flags) if alpha]
    if not transparent:
        return
    opaque = [it for it, alpha in zip(items, flags) if not alpha]
    probes = []
    for i in np.random.default_rng(seed).permutation(len(opaque))[:32]:
        try:
            probes.append(opaque[i].load(3))
        except DataError:
            continue  # reported when it is decoded for real
    background = border_colour(probes)
    for item in transparent:
        item.loader = lambda ch, p=item.path: read_image(p, ch, background)
    report.alpha_composited += len(transparent)
    report.alpha_background = background
    log.info("%d images with transparency composited on the data set's median border colour %s",
             len(transparent), tuple(round(255 * c) for c in background))


def decode_items(items: list[Item], cfg: DatasetConfig, report: IngestReport, seed: int,
                 external: bool = False) -> list[Sample]:
    """Decode every item into samples; bad files stop (or are skipped and counted when on_bad_file=skip)."""
    patches = cfg.modality == "mammography" and cfg.task == "patches"
    lesion_sides = sorted(lesion_side(les.radius, cfg) for it in items for les in it.lesions)
    source = cfg.external_test if external else cfg.source
    base = Path(source.root) if source.root else Path(source.labels_csv or ".").parent
    composite_alpha(items, report, seed)
    samples: list[Sample] = []
    for item in progress(items, desc="decode", unit="img", mininterval=1):
        if patches and item.label != "normal" and not item.lesions:
            report.abnormal_without_location += 1  # e.g. mini-MIAS '*NOTE 3*': no centre to crop around
            continue
        try:
            image = item.load(cfg.channels)
            check_size(image, item.path, cfg.min_image_px)
        except DataError as exc:
            if cfg.on_bad_file == "skip":
                log.warning("skipped: %s", exc)
                report.bad_files_skipped += 1
                continue
            raise
        crops = mammography_patches(item, image, cfg, lesion_sides, seed) if patches \
            else [(preprocess.square_pad(image), item.label, "")]
        key = ("external_test:" if external else "") + source_key(item.path, base)
        for pixels, label, suffix in crops:
            u8 = preprocess.resize_uint8(pixels, cfg.resolution_px)
            gate = cfg.quality_gate
            if gate.enabled and not preprocess.shows_object(u8, gate.dark_threshold, gate.min_dark_fraction):
                report.quality_gate_dropped[label] = report.quality_gate_dropped.get(label, 0) + 1
                continue
            image_id = f"{item.image_id}_{suffix}" if suffix else item.image_id
            samples.append(Sample(u8, label, item.patient, image_id, external, key, suffix))
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


def _list(source: SourceConfig, cfg: DatasetConfig, where: str, report: IngestReport) -> list[Item]:
    listing = Listing(skip_bad=cfg.on_bad_file == "skip")
    items = list_items(source, listing)
    report.litter_ignored += listing.litter_ignored
    report.bad_files_skipped += listing.bad_files_skipped
    map_labels(items, cfg, where)
    return items


def ingest_dataset(name: str, cfg: DatasetConfig, salt: str, out_dir: Path, metrics_path: Path) -> dict:
    """Run the whole ingest of data set ``name`` and write ``out_dir`` atomically (with ``ingest.json``: every
    count and setting), then the headline to ``metrics_path``; returns ingest.json's content and ``time_s``."""
    t0 = time.perf_counter()
    where = f"datasets.{name}"
    report = IngestReport()
    items = _list(cfg.source, cfg, where, report)
    items = cap_per_class(items, cfg.max_per_class, cfg.split.seed)
    report.items_listed = len(items)
    samples = decode_items(items, cfg, report, cfg.split.seed)
    if cfg.external_test is not None:
        ext = _list(cfg.external_test, cfg, where + ".external_test", report)
        report.items_listed += len(ext)
        samples += decode_items(ext, cfg, report, cfg.split.seed, external=True)
    if not samples:
        raise DataError(f"{cfg.source.root or cfg.source.labels_csv}: no usable image left after reading; check "
                        "the folder, the quality gate and on_bad_file")
    classes = list(cfg.classes) or sorted({s.label for s in samples})
    if len(classes) < 2:
        raise DataError(f"{cfg.source.root or cfg.source.labels_csv}: a single class ({classes[0]!r}) was found; "
                        "a classifier needs at least 2 classes: add the other class folders or fix the labels")
    image_ids = [public_id(s, salt) for s in samples]
    if len(set(image_ids)) != len(image_ids):
        dup = next(s for s, i in zip(samples, image_ids) if image_ids.count(i) > 1)
        raise DataError(f"{where}: {dup.source_key} is read twice (source and external_test?); drop one of them")
    labels = [s.label for s in samples]
    split = assign_splits(labels, [s.patient for s in samples], cfg.split.val_fraction, cfg.split.test_fraction,
                          cfg.split.seed, fixed_test=np.array([s.external_test for s in samples]))
    counts = check_splits(labels, split, classes, where)
    groups = [hash_patient(s.patient, salt) for s in samples]
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
                   "bad_files_skipped": report.bad_files_skipped, "litter_ignored": report.litter_ignored,
                   "alpha_composited": report.alpha_composited,
                   "alpha_background_rgb": [round(255 * c) for c in report.alpha_background]
                   if report.alpha_background else None,
                   "abnormal_without_location": report.abnormal_without_location,
                   "quality_gate_dropped": {c: report.quality_gate_dropped.get(c, 0) for c in classes},
                   "quality_gate_dropped_total": sum(report.quality_gate_dropped.values())}
        # no time in the output: later stages depend on data/<dataset>, and an unchanged ingest must not re-run them
        write_json_atomic(tmp / "ingest.json", metrics)

    write_json_atomic(metrics_path, headline_metrics(metrics))
    return {**metrics, "time_s": round(time.perf_counter() - t0, 2)}


def headline_metrics(metrics: dict) -> dict:
    """The metrics file of ``dvc metrics show``: the counts (the rest of ``metrics``: ``<out_dir>/ingest.json``)."""
    return {"counts": metrics["counts"], "n_images": metrics["n_images"],
            "quality_gate_dropped": metrics["quality_gate_dropped_total"]}
