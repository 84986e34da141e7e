"""Every reader of another stage's output used by the report, in one place.

The train_gan, generate and evaluate stages are developed beside this one, so their formats may
change; each reader here accepts the known spellings and turns what it finds into the small typed
records below. A missing or unreadable input becomes :class:`Unavailable`, which the report shows as
"not available: run stage X" instead of failing. Inputs (paths relative to ``root``)::

    data/<ds>/meta.json, data/<ds>/cache/{train,test}.npz          ingest
    models/<ds>/<gan>/train_summary.json, plots/train_gan/<ds>_<gan>.csv   train_gan
    data/synthetic/<ds>/<gan>/manifest.csv (+ images/, memorised/)     generate
    data/synthetic/<ds>/<gan>/details.json                             generate
    results/<ds>/details.json, predictions CSVs, summary.json          evaluate

(metrics/<stage>/ holds only the headline numbers of ``dvc metrics show``; the report reads the details.)
    reports/<ds>/review_scores.json                                    score_review (optional)
"""
from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.cache import SplitArrays, load_meta, load_split
from pipeline.errors import DataError, PipelineError

KNOWN_GANS = ("cdcgan", "acgan")  # looked for even before their folders exist
DISCRIMINATOR_SUFFIX = "_discriminator"  # pipeline/classify/arms.py: <gan>_discriminator starts from that GAN's D
MIRROR_SUFFIX = "#mirror"  # pipeline.quality.memorisation: the nearest training image matched mirrored
BASELINE_NAMES = ("real_only", "real", "baseline", "none", "no_augmentation", "real-only")
PRIMARY_METRICS = ("macro_f1", "balanced_accuracy", "minority_recall", "auc_macro", "f1_macro", "accuracy", "auc",
                   "macro_auc", "mcc")
ACTUAL_COLUMNS = ("actual", "true", "y_true", "label", "target", "truth", "true_label")
PREDICTED_COLUMNS = ("predicted", "pred", "y_pred", "prediction", "predicted_label")


# ------------------------------------------------------------------------------------------ records
@dataclass
class Unavailable:
    """An input that is not there (or not readable): the report says which stage makes it."""

    what: str
    stage: str
    path: str
    reason: str = "not found"

    def message(self) -> str:
        return f"not available: run stage {self.stage} ({self.what}: {self.path} {self.reason})"


@dataclass
class Paths:
    """Where one data set's inputs and outputs are, relative to the repository root."""

    root: Path
    dataset: str

    def p(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    @property
    def data_dir(self) -> Path:
        return self.p("data", self.dataset)

    @property
    def synthetic_dir(self) -> Path:
        return self.p("data", "synthetic", self.dataset)

    def train_metrics(self, gan: str) -> Path:
        """The whole train_gan summary (metrics/train_gan/ holds only its headline)."""
        return self.p("models", self.dataset, gan, "train_summary.json")

    def loss_csv(self, gan: str) -> Path:
        return self.p("plots", "train_gan", f"{self.dataset}_{gan}.csv")

    def generate_metrics(self, gan: str) -> Path:
        """The whole generate metrics (metrics/generate/ holds only their headline)."""
        return self.synthetic_dir / gan / "details.json"

    @property
    def evaluate_metrics(self) -> Path:
        """Every arm's means, intervals and gains (metrics/evaluate/ holds only the headline)."""
        return self.results_dir / "details.json"

    @property
    def results_dir(self) -> Path:
        return self.p("results", self.dataset)

    @property
    def reports_dir(self) -> Path:
        return self.p("reports", self.dataset)

    @property
    def review_scores(self) -> Path:
        return self.reports_dir / "review_scores.json"

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


@dataclass
class SyntheticImage:
    """One manifest row."""

    path: Path  # the PNG (resolved; may not exist when the manifest is stale)
    image_id: str  # file name, syn_...
    cls: str
    kept: bool
    reason: str
    nn_real_id: str
    nn_feature_distance: float | None
    nn_pixel_distance: float | None
    confidence: float | None
    nn_mirrored: bool = False  # the nearest real image matched in its mirrored view (generate's "#mirror" id)
    nn_feature_relative: float | None = None  # the gate's statistic: nearest / mean of k nearest distances
    nn_pixel_relative: float | None = None


@dataclass
class QualityRow:
    metric: str  # e.g. "fd" or "precision"
    scope: str  # "all" or a class name
    value: float | None  # kept synthetic images vs real
    reference: float | None  # the same metric between two sets of real images
    value_generated: float | None = None  # all generated images (before the gate and filter) vs real
    note: str = ""  # e.g. why a class has no reference


@dataclass
class GanInputs:
    name: str
    manifest: list[SyntheticImage] | Unavailable
    train_summary: dict | Unavailable
    history: list[dict[str, float | None]] | Unavailable
    quality: list[QualityRow] | Unavailable
    generate_metrics: dict | Unavailable

    @property
    def kept(self) -> list[SyntheticImage]:
        return [r for r in self.manifest if r.kept] if isinstance(self.manifest, list) else []

    @property
    def excluded(self) -> list[SyntheticImage]:
        return [r for r in self.manifest if not r.kept] if isinstance(self.manifest, list) else []


@dataclass
class Arm:
    name: str
    mean: float | None
    ci: tuple[float, float] | None
    gain: float | None = None  # mean minus the real-only arm's mean
    gain_ci: tuple[float, float] | None = None
    gan: str | None = None  # the GAN whose images the arm adds; None = no synthetic images
    label: str | None = None  # evaluate's verdict on the gain: "gain", "loss" or "no gain"
    p_value: float | None = None  # evaluate's paired test of the gain (Wilcoxon over seeds)
    gain_vs_non_gan: float | None = None  # against the best arm without synthetic images
    gain_vs_non_gan_ci: tuple[float, float] | None = None
    gains: dict[str, tuple[float, tuple[float, float] | None, str | None]] = field(default_factory=dict)  # all measures
    discriminator: str | None = None  # semi-supervised arm: the GAN whose trained discriminator it fine-tunes

    @property
    def uses_synthetic(self) -> bool:
        return self.gan is not None

    @property
    def uses_gan(self) -> bool:
        """Built from a GAN (its images or its discriminator): compared with the best non-GAN arm."""
        return self.gan is not None or self.discriminator is not None


@dataclass
class Evaluation:
    metric: str
    arms: list[Arm]
    baseline: str | None
    best: str | None  # best arm that adds synthetic images (else the best other arm)
    parent_run_id: str | None
    confusion: dict[str, np.ndarray] = field(default_factory=dict)  # arm -> counts (actual x predicted)
    confusion_note: str = ""
    raw: dict = field(default_factory=dict)
    best_non_gan: str | None = None  # the reference of gain_vs_non_gan

    def arm(self, name: str | None) -> Arm | None:
        return next((a for a in self.arms if a.name == name), None)

    @property
    def discriminator_arms(self) -> list[Arm]:
        return [a for a in self.arms if a.discriminator is not None]


@dataclass
class ReportInputs:
    paths: Paths
    meta: dict | Unavailable
    train: SplitArrays | Unavailable
    test: SplitArrays | Unavailable
    gans: list[GanInputs]
    evaluation: Evaluation | Unavailable
    review_scores: dict | None

    @property
    def classes(self) -> list[str]:
        return list(self.meta.get("classes", [])) if isinstance(self.meta, dict) else []

    @property
    def modality(self) -> str:
        return str(self.meta.get("modality", "")) if isinstance(self.meta, dict) else ""

    @property
    def channels(self) -> int:
        return int(self.meta.get("channels", 1)) if isinstance(self.meta, dict) else 1


# ------------------------------------------------------------------------------------------ helpers
def _number(value: Any) -> float | None:
    """A finite float, or None for '', None, nan, inf and non-numbers."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _interval(value: Any) -> tuple[float, float] | None:
    """[lo, hi], (lo, hi) or {"lo"/"low"/"lower": .., "hi"/"high"/"upper": ..} -> (lo, hi)."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = _number(value[0]), _number(value[1])
    elif isinstance(value, dict):
        lo = _first_number(value, ("lo", "low", "lower", "ci_low", "ci_lo", "ci_lower"))
        hi = _first_number(value, ("hi", "high", "upper", "ci_high", "ci_hi", "ci_upper"))
    else:
        return None
    return (lo, hi) if lo is not None and hi is not None else None


def _first_number(d: dict, keys: tuple[str, ...]) -> float | None:
    for k in keys:
        if k in d and _number(d[k]) is not None:
            return _number(d[k])
    return None


def _read_json(path: Path, what: str, stage: str, rel: str) -> dict | Unavailable:
    if not path.is_file():
        return Unavailable(what, stage, rel)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return Unavailable(what, stage, rel, f"unreadable ({exc})")
    return data if isinstance(data, dict) else Unavailable(what, stage, rel, "is not a JSON object")


def find_key(obj: Any, pattern: str) -> Any:
    """The first value (depth first) whose key matches the regex ``pattern``, or None."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if re.search(pattern, str(k)) and v not in (None, "", {}):
                return v
        for v in obj.values():
            found = find_key(v, pattern)
            if found is not None:
                return found
    return None


# ------------------------------------------------------------------------------------------ ingest
def read_meta(paths: Paths) -> dict | Unavailable:
    try:
        return load_meta(paths.data_dir)
    except (DataError, OSError, ValueError):
        return Unavailable("data set metadata", "ingest", paths.rel(paths.data_dir / "meta.json"))


def read_split(paths: Paths, split: str) -> SplitArrays | Unavailable:
    try:
        return load_split(paths.data_dir, split)
    except (DataError, OSError, ValueError, KeyError) as exc:
        reason = "not found" if isinstance(exc, DataError) else f"unreadable ({exc})"
        return Unavailable(f"{split} split", "ingest", paths.rel(paths.data_dir / "cache" / f"{split}.npz"), reason)


# ------------------------------------------------------------------------------------------ train_gan
def read_history(path: Path, rel: str) -> list[dict[str, float | None]] | Unavailable:
    """The loss-curve CSV (epoch, step, loss_D, loss_G, D_x, D_G_z, aux_acc, noise_std, quality_fd, ...)."""
    if not path.is_file():
        return Unavailable("GAN loss curves", "train_gan", rel)
    try:
        with path.open(newline="") as fh:
            rows = [{k: _number(v) for k, v in row.items() if k} for row in csv.DictReader(fh)]
    except (OSError, csv.Error) as exc:
        return Unavailable("GAN loss curves", "train_gan", rel, f"unreadable ({exc})")
    if not rows:
        return Unavailable("GAN loss curves", "train_gan", rel, "has no rows")
    return rows


# ------------------------------------------------------------------------------------------ generate
def read_manifest(path: Path, rel: str) -> list[SyntheticImage] | Unavailable:
    """Rows of data/synthetic/<ds>/<gan>/manifest.csv (see pipeline.data.synthetic.MANIFEST_COLUMNS)."""
    if not path.is_file():
        return Unavailable("synthetic manifest", "generate", rel)
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error) as exc:
        return Unavailable("synthetic manifest", "generate", rel, f"unreadable ({exc})")
    gate_rows = _memorised_rows(path.parent)
    out = []
    for row in rows:
        name = (row.get("path") or "").strip()
        if not name:
            continue
        gate_row = gate_rows.get(Path(name).name, {})
        nn_id = (row.get("nn_real_id") or "").strip()
        out.append(SyntheticImage(
            path=_locate(path.parent, name), image_id=Path(name).name, cls=(row.get("class") or "").strip(),
            kept=str(row.get("kept", "")).strip().lower() in ("true", "1", "yes"),
            reason=(row.get("reason") or "").strip(), nn_real_id=nn_id.removesuffix(MIRROR_SUFFIX),
            nn_feature_distance=_number(row.get("nn_feature_distance")),
            nn_pixel_distance=_number(row.get("nn_pixel_distance")), confidence=_number(row.get("confidence")),
            nn_mirrored=nn_id.endswith(MIRROR_SUFFIX),
            nn_feature_relative=_number(row.get("nn_feature_relative", gate_row.get("nn_feature_relative"))),
            nn_pixel_relative=_number(row.get("nn_pixel_relative", gate_row.get("nn_pixel_relative")))))
    return out


def _memorised_rows(gan_dir: Path) -> dict[str, dict]:
    """memorised/memorised.csv (the gate's statistics of each excluded image), by file name; {} if absent."""
    path = gan_dir / "memorised" / "memorised.csv"
    try:
        with path.open(newline="") as fh:
            return {Path(r.get("path") or "").name: r for r in csv.DictReader(fh)}
    except (OSError, csv.Error):
        return {}


def _locate(gan_dir: Path, name: str) -> Path:
    """The manifest's path, else the same file name in images/ or memorised/ (excluded images may move)."""
    direct = gan_dir / name
    if direct.is_file():
        return direct
    for sub in ("images", "memorised", "rejected", "memorized", "excluded"):
        candidate = gan_dir / sub / Path(name).name
        if candidate.is_file():
            return candidate
    return direct


REFERENCE_TOKENS = ("real_vs_real", "realvsreal", "reference", "references", "ref", "real_real", "baseline")
VALUE_TOKENS = ("value", "synthetic", "syn", "synthetic_vs_real", "syn_vs_real", "fake_vs_real", "mean")
NOT_QUALITY = re.compile(r"(^|[_.])(n|count|counts|totals|time_s|seconds|seed|epoch|step|run_id|threshold|"
                         r"images_per_s|throughput|std|reference_std|percentile|shortfall|target)($|[_.])|"
                         r"^n_|mlflow|checkpoint|world_size|device|settings|filter|memorisation")


def read_quality(metrics: dict, classes: list[str]) -> list[QualityRow]:
    """Quality rows of the generate metrics JSON, each number beside its real-vs-real reference.

    The generate stage writes ``quality.{kept,generated}.{overall,per_class.<class>}.<metric>.{value,
    reference}`` (pipeline/generate/run.py); other shapes go through :func:`_generic_quality`.
    """
    quality = metrics.get("quality")
    if isinstance(quality, dict) and isinstance(quality.get("kept") or quality.get("generated"), dict):
        return _subset_quality(quality, classes)
    return _generic_quality(metrics, classes)


def _subset_quality(quality: dict, classes: list[str]) -> list[QualityRow]:
    kept = quality.get("kept") if isinstance(quality.get("kept"), dict) else {}
    generated = quality.get("generated") if isinstance(quality.get("generated"), dict) else {}
    per_kept, per_gen = kept.get("per_class") or {}, generated.get("per_class") or {}
    scopes = [("all", kept.get("overall") or {}, generated.get("overall") or {})]
    names = [c for c in classes if c in per_kept or c in per_gen] + sorted(
        c for c in {**per_kept, **per_gen} if c not in classes)
    scopes += [(c, per_kept.get(c) or {}, per_gen.get(c) or {}) for c in names]
    rows = []
    for scope, k, g in scopes:
        note = ""
        ref_text = k.get("reference") if isinstance(k.get("reference"), str) else g.get("reference")
        if isinstance(ref_text, str) and ref_text.startswith("none"):
            note = "no reference: " + ref_text.removeprefix("none").lstrip(": ")
        for metric in dict.fromkeys([*k, *g]):
            block_k, block_g = k.get(metric), g.get(metric)
            if not isinstance(block_k or block_g, dict) or "value" not in (block_k or block_g):
                continue
            block_k, block_g = block_k or {}, block_g or {}
            reference = _number(block_k.get("reference", block_g.get("reference")))
            rows.append(QualityRow(metric, scope, _number(block_k.get("value")), reference,
                                   _number(block_g.get("value")), note if reference is None else ""))
    return rows


def _generic_quality(metrics: dict, classes: list[str]) -> list[QualityRow]:
    """Pair every quality number in a JSON of unknown layout with its real-vs-real reference.

    Accepted shapes (and mixes of them): ``{"fd": 12, "real_vs_real": {"fd": 4}}``,
    ``{"fd": {"value": 12, "reference": 4}}``, ``{"fd": 12, "fd_real_vs_real": 4}``, any of them under
    ``"quality"`` / ``"metrics"`` and per class (``{"per_class": {"benign": {...}}}`` or ``fd_benign``).
    """
    flat: dict[tuple[str, ...], float] = {}
    _flatten_numbers(metrics, (), flat)
    values: dict[tuple[str, str], float] = {}
    refs: dict[tuple[str, str], float] = {}
    order: list[tuple[str, str]] = []
    class_set = set(classes)
    for parts, number in flat.items():
        tokens = [t for t in parts if t not in ("quality", "metrics", "per_class", "classes", "overall", "all")]
        is_ref = False
        clean: list[str] = []
        for t in tokens:
            low = t.lower()
            stripped = low
            for r in REFERENCE_TOKENS:  # fd_real_vs_real, real_vs_real_fd
                if low == r or low.endswith("_" + r) or low.startswith(r + "_"):
                    is_ref = True
                    stripped = low.removesuffix("_" + r).removeprefix(r + "_") if low != r else ""
                    break
            if stripped and stripped not in VALUE_TOKENS:
                clean.append(stripped)
        scope = "all"
        rest = []
        for t in clean:
            if t in class_set and scope == "all":
                scope = t
            else:
                suffix = next((c for c in classes if t.endswith("_" + c.lower())), None)
                if suffix and scope == "all":
                    scope, t = suffix, t[: -len(suffix) - 1]
                rest.append(t)
        if not rest:
            continue
        metric = ".".join(rest)
        if NOT_QUALITY.search(metric):
            continue
        key = (metric, scope)
        if key not in order:
            order.append(key)
        (refs if is_ref else values)[key] = number
    return [QualityRow(m, s, values.get((m, s)), refs.get((m, s))) for m, s in order]


def _flatten_numbers(obj: Any, prefix: tuple[str, ...], out: dict[tuple[str, ...], float]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten_numbers(v, prefix + (str(k),), out)
    elif not isinstance(obj, (list, str)) and _number(obj) is not None:
        out[prefix] = _number(obj)  # type: ignore[assignment]


# ------------------------------------------------------------------------------------------ evaluate
def read_evaluation(paths: Paths, classes: list[str], synthetic_classical_gan: str | None = None,
                    metric: str | None = None) -> Evaluation | Unavailable:
    """results/<ds>/details.json (arms, CIs, gains, parent run id) + confusion matrices from results/<ds>/."""
    rel = paths.rel(paths.evaluate_metrics)
    data = _read_json(paths.evaluate_metrics, "evaluation metrics", "evaluate", rel)
    summary = _read_json(paths.results_dir / "summary.json", "evaluation summary", "evaluate",
                         paths.rel(paths.results_dir / "summary.json"))
    if isinstance(data, Unavailable):
        if isinstance(summary, Unavailable):
            return data
        data = summary
    merged = {**(summary if isinstance(summary, dict) else {}), **data}
    try:
        evaluation = _parse_evaluation(merged, synthetic_classical_gan, metric)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        return Unavailable("evaluation metrics", "evaluate", rel, f"in an unknown format ({exc})")
    evaluation.confusion, evaluation.confusion_note = read_confusions(paths, classes, merged)
    return evaluation


def _gain_blocks(data: dict, baseline: str | None) -> tuple[dict, dict]:
    """(arm -> gain block against the real-only arm, arm -> gain block against the best non-GAN arm).

    results/<ds>/details.json (pipeline/classify/evaluate.py ``metrics_json``) has ``gains_vs_real_only`` and
    ``gains_vs_best_non_gan``: ``{arm: {metric: {diff, low, high, label}}}``; results/<ds>/summary.json has
    compare_arms' ``gains: {reference_name: {reference: arm, arms: {arm: {metric: {estimate, ...}}}}}``;
    simpler files write ``gains: {arm: ...}``.
    """
    gains = data.get("gains") if isinstance(data.get("gains"), dict) else {}
    nested = {k: v for k, v in gains.items() if isinstance(v, dict) and isinstance(v.get("arms"), dict)}
    if not nested and isinstance(data.get("gains_vs_real_only"), dict):  # summary.json's blocks hold the p values
        non_gan = data.get("gains_vs_best_non_gan")
        return data["gains_vs_real_only"], non_gan if isinstance(non_gan, dict) else {}
    if not nested:
        return gains, {}
    real = next((v["arms"] for k, v in nested.items() if v.get("reference") == baseline or k in BASELINE_NAMES),
                next(iter(nested.values()))["arms"])
    non_gan = next((v["arms"] for k, v in nested.items() if "non_gan" in k or "classical" in k), {})
    return real, non_gan


def _parse_evaluation(data: dict, synthetic_classical_gan: str | None = None, metric: str | None = None
                      ) -> Evaluation:
    """``metric``: the measure to lead with (report.metric); else the file's primary metric, else the first known."""
    arms_raw = data.get("arms")
    if arms_raw is None:
        arms_raw = {k: v for k, v in data.items() if isinstance(v, dict) and any(m in v for m in PRIMARY_METRICS)}
    if isinstance(arms_raw, list):
        arms_raw = {str(a.get("name") or a.get("arm")): a for a in arms_raw if isinstance(a, dict)}
    if not isinstance(arms_raw, dict) or not arms_raw:
        raise ValueError("no 'arms' found")
    first = next(iter(arms_raw.values()))
    available = [m for m in first if isinstance(first.get(m), (dict, int, float))] if isinstance(first, dict) else []
    if metric not in available:
        metric = data.get("primary_metric") or data.get("metric")
    if not isinstance(metric, str) or metric not in available:
        metric = next((m for m in PRIMARY_METRICS if m in available), "score")
    baseline = data.get("baseline") or data.get("baseline_arm") or data.get("reference")
    if baseline not in arms_raw:
        baseline = next((str(a) for a in arms_raw if str(a).lower() in BASELINE_NAMES), None)
    vs_real, vs_non_gan = _gain_blocks(data, baseline)
    arms = []
    for name, raw in arms_raw.items():
        raw = raw if isinstance(raw, dict) else {"mean": raw}
        mean, ci = _metric_of(raw, metric)
        gain, gain_ci, label, p = _gain_of(raw, vs_real.get(name), metric)
        discriminator = raw.get("discriminator") or _arm_discriminator(str(name))
        gan = None if discriminator else (raw.get("gan") or raw.get("generator")
                                          or _arm_gan(str(name), synthetic_classical_gan))
        arm = Arm(str(name), mean, ci, gain, gain_ci, str(gan) if gan else None, label, p,
                  discriminator=str(discriminator) if discriminator else None)
        if name in vs_non_gan:
            arm.gain_vs_non_gan, arm.gain_vs_non_gan_ci, _, _ = _gain_of({}, vs_non_gan[name], metric)
        for m in (m for m in PRIMARY_METRICS if m in available):  # every measure's gain, for the overview table
            g, g_ci, g_label, _ = _gain_of(raw, vs_real.get(name), m) if name in vs_real else (None, None, None, None)
            if g is not None:
                arm.gains[m] = (g, g_ci, g_label)
        arms.append(arm)
    base_arm = next((a for a in arms if a.name == baseline), None)
    for a in arms:  # a gain not written by evaluate is at least the difference of means (no interval)
        if a.gain is None and base_arm and a is not base_arm and a.mean is not None and base_arm.mean is not None:
            a.gain = a.mean - base_arm.mean
    best = data.get("best_arm") or data.get("best")
    if isinstance(best, dict):
        best = best.get("name") or best.get("arm")
    if best not in arms_raw:  # the best arm that adds synthetic images, else the best of the others
        others = [a for a in arms if a.name != baseline and a.discriminator is None
                  and (a.gain is not None or a.mean is not None)]
        synthetic = [a for a in others if a.uses_synthetic]
        pick = max(synthetic or others, key=lambda a: (a.gain if a.gain is not None else a.mean), default=None)
        best = pick.name if pick else None
    parent = find_key(data, r"parent_run_id$") or data.get("mlflow_run_id") or find_key(data, r"^mlflow_run_id$")
    best_non_gan = data.get("best_non_gan")
    return Evaluation(str(metric), arms, baseline, best, str(parent) if parent else None, raw=data,
                      best_non_gan=str(best_non_gan) if best_non_gan in arms_raw else None)


def _arm_discriminator(name: str) -> str | None:
    """The GAN whose discriminator a semi-supervised arm fine-tunes, from its name: acgan_discriminator -> acgan.

    Such an arm adds no synthetic image (it trains on the real split only), so it is neither a GAN-image arm
    nor a candidate for the best non-GAN arm (pipeline/classify/evaluate.py leaves it out of both too).
    """
    low = name.lower()
    if low.endswith(DISCRIMINATOR_SUFFIX):
        return low[: -len(DISCRIMINATOR_SUFFIX)] or None
    return None


def _arm_gan(name: str, synthetic_classical_gan: str | None) -> str | None:
    """The GAN whose images an arm adds, from its name (pipeline/classify/arms.py): cdcgan, acgan_x2, ..."""
    low = name.lower()
    found = next((g for g in KNOWN_GANS if low == g or low.startswith(g + "_") or low.endswith("_" + g)), None)
    if found:
        return found
    if "synthetic" in low and synthetic_classical_gan:
        return synthetic_classical_gan
    return None


def _metric_of(raw: dict, metric: str) -> tuple[float | None, tuple[float, float] | None]:
    block = raw.get(metric, raw.get("metrics", {}).get(metric) if isinstance(raw.get("metrics"), dict) else None)
    if isinstance(block, dict):
        return _first_number(block, ("mean", "value", "estimate", "point")), _interval(block.get("ci", block))
    if block is not None:
        return _number(block), _interval(raw.get(f"{metric}_ci") or raw.get("ci"))
    return _first_number(raw, ("mean", "value", "estimate")), _interval(raw.get("ci", raw))


def _gain_of(raw: dict, top: Any, metric: str) -> tuple[float | None, tuple[float, float] | None, str | None,
                                                        float | None]:
    """(gain, interval, evaluate's label such as 'no gain', paired test p) of one arm."""
    block = top if top is not None else raw.get("gain", raw.get(f"{metric}_gain", raw.get("delta")))
    if isinstance(block, dict):
        if metric in block:
            block = block[metric]
        if isinstance(block, dict):
            label = block.get("label")
            return (_first_number(block, ("mean", "estimate", "gain", "delta", "diff", "difference", "value")),
                    _interval(block.get("ci", block)), str(label) if label else None,
                    _first_number(block, ("wilcoxon_p", "p_value", "p")))
    return _number(block), _interval(raw.get("gain_ci") or raw.get(f"{metric}_gain_ci")), None, None


def read_confusions(paths: Paths, classes: list[str], data: dict) -> tuple[dict[str, np.ndarray], str]:
    """Confusion counts per arm: from a 'confusion' block of the JSON, else from the predictions CSVs."""
    block = find_key(data, r"^confusion(_matrix|_matrices)?$")
    out: dict[str, np.ndarray] = {}
    if isinstance(block, dict):
        for arm, m in block.items():
            arr = np.asarray(m.get("matrix", m.get("counts")) if isinstance(m, dict) else m, dtype=float)
            if arr.ndim == 2 and arr.shape[0] == arr.shape[1] == len(classes):
                out[str(arm)] = arr
    if out:
        return out, "from the evaluation summary"
    seeds: set[str] = set()
    if paths.results_dir.is_dir():
        for csv_path in sorted(paths.results_dir.rglob("*.csv")):
            for arm, matrix, file_seeds in _confusions_from_csv(csv_path, classes, paths.results_dir):
                out[arm] = out.get(arm, 0) + matrix
                seeds |= file_seeds
    note = "from the predictions on the test split"
    if len(seeds) > 1:
        note += f", summed over {len(seeds)} seeds"
    return out, note


def _confusions_from_csv(path: Path, classes: list[str], results_dir: Path) -> list[tuple[str, np.ndarray, set]]:
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            actual = next((h for h in header if h.lower() in ACTUAL_COLUMNS), None)
            predicted = next((h for h in header if h.lower() in PREDICTED_COLUMNS), None)
            if actual is None or predicted is None:
                return []
            rows = list(reader)
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
    default_arm = path.stem.removeprefix("predictions_").removesuffix("_predictions")
    if default_arm in ("predictions", "test", "preds"):
        default_arm = path.parent.name if path.parent != results_dir else default_arm
    split_col = next((h for h in header if h.lower() == "split"), None)
    by_arm: dict[str, np.ndarray] = {}
    seeds: dict[str, set] = {}
    for row in rows:
        if split_col and row.get(split_col, "test").strip().lower() not in ("test", ""):
            continue
        i, j = _class_index(row.get(actual), classes), _class_index(row.get(predicted), classes)
        if i is None or j is None:
            continue
        arm = (row.get("arm") or default_arm).strip()
        by_arm.setdefault(arm, np.zeros((len(classes), len(classes))))[i, j] += 1
        seeds.setdefault(arm, set()).add(str(row.get("seed", "")))
    return [(arm, m, seeds[arm]) for arm, m in by_arm.items()]


def _class_index(value: str | None, classes: list[str]) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if value in classes:
        return classes.index(value)
    number = _number(value)
    if number is not None and number == int(number) and 0 <= int(number) < len(classes):
        return int(number)
    return None


# ------------------------------------------------------------------------------------------ all
def gan_names(paths: Paths) -> list[str]:
    """GANs with any output for this data set: folders under data/synthetic/<ds>/ and the known models."""
    names = list(KNOWN_GANS)
    if paths.synthetic_dir.is_dir():
        names += sorted(d.name for d in paths.synthetic_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    found = []
    for name in dict.fromkeys(names):
        if any(p.exists() for p in (paths.synthetic_dir / name, paths.train_metrics(name), paths.loss_csv(name),
                                    paths.generate_metrics(name))):
            found.append(name)
    return found


def read_gan(paths: Paths, name: str, classes: list[str]) -> GanInputs:
    manifest_path = paths.synthetic_dir / name / "manifest.csv"
    gen_path = paths.generate_metrics(name)
    gen = _read_json(gen_path, "quality metrics", "generate", paths.rel(gen_path))
    return GanInputs(
        name=name,
        manifest=read_manifest(manifest_path, paths.rel(manifest_path)),
        train_summary=_read_json(paths.train_metrics(name), "GAN training metrics", "train_gan",
                                 paths.rel(paths.train_metrics(name))),
        history=read_history(paths.loss_csv(name), paths.rel(paths.loss_csv(name))),
        quality=read_quality(gen, classes) if isinstance(gen, dict) else gen,
        generate_metrics=gen,
    )


def read_review_scores(paths: Paths) -> dict | None:
    data = _read_json(paths.review_scores, "review scores", "score_review", paths.rel(paths.review_scores))
    return data if isinstance(data, dict) else None


def collect(root: str | Path, dataset: str, synthetic_classical_gan: str | None = None,
            metric: str | None = None) -> ReportInputs:
    """Everything the report and the review page need; never raises for a missing input.

    ``synthetic_classical_gan`` (params evaluate.synthetic_classical_gan) names the GAN of the
    synthetic_classical arm when the evaluation file does not; ``metric`` (report.metric) is the measure
    the report leads with.
    """
    paths = Paths(Path(root), dataset)
    meta = read_meta(paths)
    classes = list(meta.get("classes", [])) if isinstance(meta, dict) else []
    try:
        evaluation = read_evaluation(paths, classes, synthetic_classical_gan, metric)
    except PipelineError as exc:  # a reader above should not raise; a report is still better than none
        evaluation = Unavailable("evaluation metrics", "evaluate", paths.rel(paths.evaluate_metrics), str(exc))
    return ReportInputs(
        paths=paths, meta=meta, train=read_split(paths, "train"), test=read_split(paths, "test"),
        gans=[read_gan(paths, g, classes) for g in gan_names(paths)],
        evaluation=evaluation, review_scores=read_review_scores(paths))
