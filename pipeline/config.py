"""Typed configuration: one dataclass per ``params.yaml`` section, loaded with one-line errors.

A leaf: it imports the section dataclasses explicitly (the ingest sections below, then ``gan``,
``generate``, ``evaluate`` and ``report`` from their packages' ``config`` modules), and none of them
imports torch, so any stage, the CLI and the tests load params without it. The dataclass defaults are
the one source of truth: ``params.yaml`` writes them out with comments (a test checks that every value
there equals its default), and the files in ``presets/`` are overlays that name only what differs.
The loader itself (types, ranges, duplicate keys) is :mod:`pipeline.schema`.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import yaml

from pipeline.classify.config import EvaluateConfig
from pipeline.errors import ConfigError
from pipeline.gan.config import GanConfig
from pipeline.generate.config import GenerateConfig
from pipeline.report.config import ReportConfig
from pipeline.schema import build, check_duplicate_keys, convert, rng

# --------------------------------------------------------------------------------------- ingest
@dataclass
class PatchConfig:
    """How mammography films become lesion-centred and normal-tissue patches."""

    context: float = field(default=2.0, metadata=rng(1.0, 8.0))  # patch side = context * lesion diameter
    min_patch_px: int = field(default=64, metadata=rng(8, 4096))  # smallest crop side in film pixels
    max_patch_px: int = field(default=512, metadata=rng(8, 8192))  # largest crop side in film pixels
    normal_patches_per_film: int = field(default=1, metadata=rng(0, 100))  # tissue patches per normal film
    min_breast_fraction: float = field(default=0.9, metadata=rng(0.0, 1.0))  # of a normal patch inside the breast


@dataclass
class QualityGateConfig:
    """Drops images that show no object (e.g. CRIC crops cut beside the cell)."""

    enabled: bool = False
    dark_threshold: int = field(default=120, metadata=rng(0, 255))  # grey level below which a pixel is 'stained'
    min_dark_fraction: float = field(default=0.01, metadata=rng(0.0, 1.0))  # keep if this fraction is darker


@dataclass
class SplitConfig:
    val_fraction: float = field(default=0.15, metadata=rng(0.0, 0.5))
    test_fraction: float = field(default=0.2, metadata=rng(0.05, 0.5))
    seed: int = field(default=0, metadata=rng(0, 2**31 - 1))


@dataclass
class SourceConfig:
    """Where images come from and which reader reads them."""

    reader: Literal["mias", "dicom", "folder", "manifest"] = "folder"
    root: str = ""  # folder (mias: the folder holding Info.txt and the films)
    labels_csv: Optional[str] = None  # dicom: CBIS-DDSM style CSV; manifest: the manifest itself
    patient_pattern: Optional[str] = None  # regex; its first group, searched in the patient id (or the file stem
    # when the reader has none), is the patient. CBIS-DDSM: '(P_\\d+)' since its PatientID tag names the view too


@dataclass
class DatasetConfig:
    """One data set: source, task, classes, splits and cache resolution."""

    modality: Literal["mammography", "cytology"] = "cytology"
    source: SourceConfig = field(default_factory=SourceConfig)
    task: Literal["patches", "images"] = "images"  # mammography: lesion/tissue patches or whole films
    resolution_px: int = field(default=64, metadata={"choices": [32, 64, 128, 256]})
    channels: int = field(default=3, metadata={"choices": [1, 3]})
    class_map: dict[str, str] = field(default_factory=dict)  # source class -> coarser class
    classes: list[str] = field(default_factory=list)  # class order; empty = sorted names found
    patch: PatchConfig = field(default_factory=PatchConfig)
    quality_gate: QualityGateConfig = field(default_factory=QualityGateConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    external_test: Optional[SourceConfig] = None  # an official test set, used as is and never trained on
    on_bad_file: Literal["error", "skip"] = "error"  # skip: warn, count in metrics, go on
    min_image_px: int = field(default=16, metadata=rng(1, 4096))  # a smaller image (or film) is a bad file: a
    # 1 x 1 or 4 x 4 px thumbnail would be stretched into a flat, meaningless training image
    max_per_class: int = field(default=0, metadata=rng(0, None))  # 0 = all; for tiny presets


@dataclass
class PhantomConfig:
    """The built-in procedural data (mammogram-like DICOM films and cell-like RGB images)."""

    seed: int = field(default=1234, metadata=rng(0, 2**31 - 1))
    mammo_patients: int = field(default=120, metadata=rng(2, 100000))  # two films (L/R) each
    mammo_film_px: int = field(default=512, metadata=rng(128, 4096))
    mammo_class_fractions: list[float] = field(default_factory=lambda: [0.7, 0.2, 0.1])  # normal, benign, malignant
    cell_counts: dict[str, int] = field(
        default_factory=lambda: {"normal": 300, "low_grade": 150, "high_grade": 50})
    cell_px: int = field(default=64, metadata=rng(32, 512))
    cells_per_slide: int = field(default=10, metadata=rng(1, 10000))
    cell_blank_fraction: float = field(default=0.05, metadata=rng(0.0, 0.5))  # crops that miss their cell


@dataclass
class PrivacyConfig:
    salt_env: str = "PIPELINE_ID_SALT"  # environment variable with the salt; else a git-ignored .pipeline_salt file


@dataclass
class Params:
    """Root of params.yaml."""

    datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    phantom: PhantomConfig = field(default_factory=PhantomConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    gan: GanConfig = field(default_factory=GanConfig)  # stage train_gan
    generate: GenerateConfig = field(default_factory=GenerateConfig)  # stage generate
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)  # stage evaluate
    report: ReportConfig = field(default_factory=ReportConfig)  # stages report and score_review


def _validate_patch(self: PatchConfig, prefix: str, where: str) -> None:
    if self.min_patch_px > self.max_patch_px:
        raise ConfigError(f"{where}: {prefix}.min_patch_px: {self.min_patch_px} is above max_patch_px "
                          f"{self.max_patch_px}; make min <= max")


def _validate_split(self: SplitConfig, prefix: str, where: str) -> None:
    if self.val_fraction + self.test_fraction >= 0.9:
        raise ConfigError(f"{where}: {prefix}: val_fraction + test_fraction = "
                          f"{self.val_fraction + self.test_fraction:.2f} leaves too little to train; keep it < 0.9")


def _validate_source(self: SourceConfig, prefix: str, where: str) -> None:
    if self.patient_pattern is not None:
        try:
            re.compile(self.patient_pattern)
        except re.error as exc:
            raise ConfigError(f"{where}: {prefix}.patient_pattern: {self.patient_pattern!r} is not a regular "
                              f"expression ({exc}); fix it, e.g. '(P_\\d+)'") from None


def _validate_dataset(self: DatasetConfig, prefix: str, where: str) -> None:
    if not self.source.root and not self.source.labels_csv:
        raise ConfigError(f"{where}: {prefix}.source.root: empty; give the folder that holds the images (or source.labels_csv)")
    if self.modality == "mammography" and self.channels != 1:
        raise ConfigError(f"{where}: {prefix}.channels: mammography is grayscale; set channels: 1")


def _validate_phantom(self: PhantomConfig, prefix: str, where: str) -> None:
    fr = self.mammo_class_fractions
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ConfigError(f"{where}: {prefix}.mammo_class_fractions: {fr} must be 3 non-negative numbers "
                          "(normal, benign, malignant) that sum to 1")
    if any(n < 2 for n in self.cell_counts.values()) or len(self.cell_counts) < 2:
        raise ConfigError(f"{where}: {prefix}.cell_counts: need at least 2 classes with 2 or more images each")


PatchConfig.validate = _validate_patch  # type: ignore[attr-defined]
SplitConfig.validate = _validate_split  # type: ignore[attr-defined]
SourceConfig.validate = _validate_source  # type: ignore[attr-defined]
DatasetConfig.validate = _validate_dataset  # type: ignore[attr-defined]
PhantomConfig.validate = _validate_phantom  # type: ignore[attr-defined]

# The top-level sections of params.yaml, in file order.
SECTIONS: dict[str, type] = {"datasets": dict, "phantom": PhantomConfig, "privacy": PrivacyConfig,
                             "gan": GanConfig, "generate": GenerateConfig, "evaluate": EvaluateConfig,
                             "report": ReportConfig}


def read_yaml(path: str | Path) -> dict:
    """The YAML mapping in ``path``; one-line ConfigError for a missing file, bad syntax or a key written twice."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ConfigError(f"{where}: file not found; pass --params FILE or run from the repository root")
    try:
        text = path.read_text()
        check_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), where)
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" line {line + 1}" if line is not None else ""
        raise ConfigError(f"{where}{at}: not valid YAML ({getattr(exc, 'problem', exc)}); fix the syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: top level must be a mapping of sections; start with e.g. 'datasets:'")
    return raw


def parse_params(raw: dict, where: str = "params.yaml") -> Params:
    """Typed :class:`Params` from a YAML mapping; a missing section or key takes its dataclass default."""
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]}: unknown section; allowed: {', '.join(SECTIONS)}")
    datasets = convert(raw.get("datasets") or {}, dict[str, DatasetConfig], "datasets", where)
    if not datasets:
        raise ConfigError(f"{where}: datasets: empty; define at least one data set")
    sections = {name: build(cls, raw.get(name) or {}, name, where) for name, cls in SECTIONS.items()
                if name != "datasets"}
    return Params(datasets=datasets, **sections)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read ``path`` and return typed :class:`Params`; raises :class:`ConfigError` with one line."""
    return parse_params(read_yaml(path), str(path))


def merge(base: dict, overlay: dict) -> dict:
    """``overlay`` written over ``base``: mappings merge key by key, anything else (lists too) is replaced;
    ``datasets`` is replaced whole, since a preset's data sets are not added to the phantoms."""
    out = dict(base)
    for key, value in overlay.items():
        if key != "datasets" and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def defaults() -> dict:
    """Every section's default values as plain YAML data (the data sets excepted: they have none)."""
    full = dataclasses.asdict(Params())
    return {name: full[name] for name in SECTIONS if name != "datasets"}


def preset_path(name: str, presets_dir: str | Path = "presets") -> Path:
    """``presets/<name>.yaml`` for a bare name, else the path given."""
    path = Path(name)
    return path if path.suffix in (".yaml", ".yml") else Path(presets_dir) / f"{name}.yaml"


def render_preset(path: str | Path) -> str:
    """The complete params.yaml text for the overlay at ``path``: the defaults with the overlay written over
    them, checked by :func:`parse_params`. DVC tracks params.yaml key by key, so it must hold every key."""
    path = Path(path)
    overlay = read_yaml(path)
    if not overlay.get("datasets"):
        raise ConfigError(f"{path}: datasets: empty; a preset must name its data sets")
    merged = merge(defaults(), overlay)
    merged = {name: merged[name] for name in SECTIONS if name in merged}
    parse_params(merged, str(path))
    return (f"# Written by `medsynth preset {path.stem}`: the defaults (pipeline/*/config.py, commented in the\n"
            f"# committed params.yaml) with {path} written over them. Back to the default run:\n"
            f"#   git checkout params.yaml\n"
            + yaml.safe_dump(merged, sort_keys=False, default_flow_style=None, width=110))


def dataset(params: Params, name: str, where: str = "params.yaml") -> DatasetConfig:
    if name not in params.datasets:
        raise ConfigError(f"{where}: datasets.{name}: no such data set; defined: {', '.join(params.datasets)}")
    return params.datasets[name]
