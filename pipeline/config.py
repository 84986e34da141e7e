"""Typed configuration: one dataclass per ``params.yaml`` section, loaded with one-line errors.

Every field is typed; ranges and choices live in ``field(metadata=...)`` next to the default, so the
dataclass is the single description of what params.yaml may hold. ``load_params`` walks the YAML
tree against these types and stops at the first unknown key, wrong type or out-of-range value with a
message such as::

    ConfigError: params.yaml: datasets.mammography.resolution_px: 100 is not one of [32, 64, 128, 256]
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from pipeline.errors import ConfigError


def rng(lo: float | None = None, hi: float | None = None, **kw: Any) -> dict:
    """Metadata for a numeric field allowed in [lo, hi] (None = unbounded)."""
    return {"range": (lo, hi), **kw}


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
    extra: dict[str, Any] = field(default_factory=dict)  # free-form sections of later stages


# ------------------------------------------------------------------------------------ loading
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin in (list, dict):
        return origin.__name__
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key, where)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {key}: {value!r} is not allowed; use one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key}: expected a mapping of {tp.__name__} keys, got {value!r}; "
                              "write its keys indented under it")
        return build(tp, value, key, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key}: expected a list, got {value!r}; write it as [a, b, ...]")
        return [_convert(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key}: expected a mapping, got {value!r}; write it as {{key: value, ...}}")
        return {str(k): _convert(v, args[1], f"{key}.{k}", where) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key}: expected true or false, got {value!r}; write true or false "
                              "without quotes")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key}: expected an integer, got {value!r}; write a whole number "
                              "without quotes")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key}: expected a number, got {value!r}; write a number without quotes")
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{where}: {key}: {value!r} is not a finite number; give a finite value")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key}: expected a string, got {value!r}; put the value in quotes")
        return value
    return value


def _check_meta(value: Any, meta: typing.Mapping, key: str, where: str) -> None:
    if value is None:
        return
    if "range" in meta:
        lo, hi = meta["range"]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            lo_s = "-inf" if lo is None else lo
            hi_s = "inf" if hi is None else hi
            raise ConfigError(f"{where}: {key}: {value!r} is out of range; allowed [{lo_s}, {hi_s}]")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{where}: {key}: {value!r} is not one of {meta['choices']}; use one of them")


def build(cls: type, data: dict, prefix: str = "", where: str = "params.yaml") -> Any:
    """Build dataclass ``cls`` from ``data``, naming ``prefix.key`` in every error."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        name = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"{where}: {name}: unknown key; allowed keys: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        converted = _convert(value, hints[name], key, where)
        _check_meta(converted, fields[name].metadata, key, where)
        kwargs[name] = converted
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(prefix, where)
    return obj


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

# Sections owned by later stages register here: name -> dataclass. Unknown top-level keys are errors.
SECTIONS: dict[str, type] = {"datasets": dict, "phantom": PhantomConfig, "privacy": PrivacyConfig}


def register_section(name: str, cls: type) -> None:
    SECTIONS[name] = cls


def check_duplicate_keys(node: yaml.Node | None, where: str, prefix: str = "") -> None:
    """Stop on a key written twice in one mapping: YAML keeps the last value without a word, so
    ``resolution_px: 64`` followed by ``resolution_px: 32`` would silently run at 32 px."""
    if isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            check_duplicate_keys(child, where, f"{prefix}[{i}]")
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        name = f"{prefix}.{key}" if prefix else key
        line = key_node.start_mark.line + 1
        if key != "<<" and key in seen:
            raise ConfigError(f"{where} line {line}: {name}: key written twice (lines {seen[key]} and {line}), "
                              "YAML would keep only the last value; delete one of them")
        seen[key] = line
        check_duplicate_keys(value_node, where, name)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read ``path`` and return typed :class:`Params`; raises :class:`ConfigError` with one line."""
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
    _import_sections()
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]}: unknown section; allowed: {', '.join(SECTIONS)}")
    datasets = _convert(raw.get("datasets") or {}, dict[str, DatasetConfig], "datasets", where)
    if not datasets:
        raise ConfigError(f"{where}: datasets: empty; define at least one data set")
    params = Params(datasets=datasets,
                    phantom=build(PhantomConfig, raw.get("phantom") or {}, "phantom", where),
                    privacy=build(PrivacyConfig, raw.get("privacy") or {}, "privacy", where))
    for name, cls in SECTIONS.items():
        if name in ("datasets", "phantom", "privacy"):
            continue
        params.extra[name] = build(cls, raw.get(name) or {}, name, where)
    return params


def _import_sections() -> None:
    """Import the modules that register later-stage sections (kept optional so ingest works alone)."""
    import importlib

    for mod in ("pipeline.gan.config", "pipeline.generate.config", "pipeline.classify.config",
                "pipeline.report.config"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def dataset(params: Params, name: str, where: str = "params.yaml") -> DatasetConfig:
    if name not in params.datasets:
        raise ConfigError(f"{where}: datasets.{name}: no such data set; defined: {', '.join(params.datasets)}")
    return params.datasets[name]
