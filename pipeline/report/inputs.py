"""Every reader of another stage's output used by the report, in one place.

Each file is read through the record class of the package that writes it (pipeline/gan/records.py,
pipeline/generate/records.py, pipeline/classify/records.py) and turned into the small typed records below. A
missing input, or one in an older format, becomes :class:`Unavailable`, which the report shows as "not
available: run stage X" (with the one line that names the file and the stage to re-run) instead of failing.
Inputs (paths relative to ``root``)::

    data/<ds>/meta.json, data/<ds>/cache/{train,test}.npz          ingest
    models/<ds>/<gan>/train_summary.json, plots/train_gan/<ds>_<gan>.csv   train_gan
    data/synthetic/<ds>/<gan>/manifest.csv (+ images/, memorised/)     generate
    data/synthetic/<ds>/<gan>/details.json                             generate
    results/<ds>/details.json, summary.json, predictions/<arm>.csv     evaluate
    reports/<ds>/review_scores.json                                    score_review (optional)

(metrics/<stage>/ holds only the headline numbers of ``dvc metrics show``; the report reads the details.)
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from pipeline.classify.records import HEADLINE, EvaluateDetails, EvaluateSummary, evaluate_stage, predictions_path
from pipeline.data.cache import SplitArrays, load_meta, load_split
from pipeline.data.synthetic import read_manifest as manifest_rows
from pipeline.errors import DataError
from pipeline.gan.records import TrainSummary, train_gan_stage
from pipeline.generate.records import QUALITY_METRICS, GenerateDetails, generate_stage
from pipeline.io import JsonRecord
from pipeline.names import DISCRIMINATOR_SUFFIX, GANS, MIRROR_SUFFIX, REAL_ONLY, arm_gan

T = TypeVar("T")


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

    def manifest(self, gan: str) -> Path:
        return self.synthetic_dir / gan / "manifest.csv"

    @property
    def evaluate_metrics(self) -> Path:
        """Every arm's means, intervals and gains (metrics/evaluate/ holds only the headline)."""
        return self.results_dir / "details.json"

    @property
    def evaluate_summary(self) -> Path:
        """The same comparison with the paired tests and the seeds."""
        return self.results_dir / "summary.json"

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


def _read(reader: Callable[[Path, str], T], path: Path, rerun: str, what: str, paths: Paths) -> T | Unavailable:
    """``reader(path, rerun)`` (a record class's ``read``), or why not: missing, unreadable or an older format."""
    stage = rerun.split("@")[0]
    if not path.is_file():
        return Unavailable(what, stage, paths.rel(path))
    try:
        return reader(path, rerun)
    except DataError as exc:
        return Unavailable(what, stage, paths.rel(path), str(exc).removeprefix(f"{path}: "))


def _parsed(parse: Callable[[], T], what: str, rerun: str, path: Path, paths: Paths) -> T | Unavailable:
    """``parse()`` of a record already read; a nested key it lacks (an older format) becomes :class:`Unavailable`."""
    try:
        return parse()
    except (KeyError, TypeError, AttributeError) as exc:
        return Unavailable(what, rerun.split("@")[0], paths.rel(path),
                           f"in an unknown format ({type(exc).__name__}: {exc}); re-run: dvc repro {rerun}")


def _as_dict(record: JsonRecord | Unavailable) -> dict | Unavailable:
    return record.to_json() if isinstance(record, JsonRecord) else record


def _ci(block: dict) -> tuple[float, float] | None:
    """(low, high) of an interval or gain block, None when either is null."""
    return (block["low"], block["high"]) if block["low"] is not None and block["high"] is not None else None


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
    """The loss-curve CSV (pipeline.gan.records.HISTORY_COLUMNS), blank cells as None."""
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
def read_manifest(paths: Paths, gan: str) -> list[SyntheticImage] | Unavailable:
    """The manifest's rows, each with the gate's closeness ratios from memorised/memorised.csv when memorised."""
    rows = _read(manifest_rows, paths.manifest(gan), generate_stage(paths.dataset, gan), "synthetic manifest", paths)
    if isinstance(rows, Unavailable):
        return rows
    gan_dir = paths.synthetic_dir / gan
    gate = _memorised_rows(gan_dir)
    out = []
    for row in rows:
        name = Path(row.path).name
        ratios = gate.get(name, {})
        out.append(SyntheticImage(
            path=gan_dir / row.path, image_id=name, cls=row.cls, kept=row.kept, reason=row.reason,
            nn_real_id=row.nn_real_id.removesuffix(MIRROR_SUFFIX), nn_feature_distance=_number(row.nn_feature_distance),
            nn_pixel_distance=_number(row.nn_pixel_distance), confidence=_number(row.confidence),
            nn_mirrored=row.nn_real_id.endswith(MIRROR_SUFFIX),
            nn_feature_relative=_number(ratios.get("nn_feature_relative")),
            nn_pixel_relative=_number(ratios.get("nn_pixel_relative"))))
    return out


def _memorised_rows(gan_dir: Path) -> dict[str, dict]:
    """memorised/memorised.csv (pipeline.generate.records.MEMORISED_COLUMNS) by file name; {} if absent."""
    try:
        with (gan_dir / "memorised" / "memorised.csv").open(newline="") as fh:
            return {r["path"]: r for r in csv.DictReader(fh)}
    except (OSError, csv.Error, KeyError):
        return {}


def read_quality(details: GenerateDetails, classes: list[str]) -> list[QualityRow]:
    """Quality rows of generate's ``quality.{kept,generated}.{overall,per_class.<class>}.<metric>.{value,reference}``
    (pipeline/generate/quality.py), each kept-images value beside its real-vs-real reference and the value of all
    generated images; a class without a reference says why (its block's ``reference``: ``"none: <why>"``)."""
    kept, generated = details.quality["kept"], details.quality["generated"]
    scopes = [("all", kept["overall"], generated["overall"])]
    scopes += [(c, kept["per_class"][c], generated["per_class"][c]) for c in classes if c in kept["per_class"]]
    rows = []
    for scope, k, g in scopes:
        why = k.get("reference", "")
        note = "no reference: " + why.removeprefix("none").lstrip(": ") if why.startswith("none") else ""
        for metric in (m for m in k if m in QUALITY_METRICS):  # the file's order
            reference = k[metric]["reference"]
            rows.append(QualityRow(metric, scope, k[metric]["value"], reference, g[metric]["value"],
                                   note if reference is None else ""))
    return rows


# ------------------------------------------------------------------------------------------ evaluate
def read_evaluation(paths: Paths, classes: list[str], synthetic_classical_gan: str | None = None,
                    metric: str | None = None) -> Evaluation | Unavailable:
    """results/<ds>/details.json (arms, intervals, gains, parent run id), summary.json (paired tests, seeds) and
    the confusion matrices of results/<ds>/predictions/."""
    rerun = evaluate_stage(paths.dataset)
    details = _read(EvaluateDetails.read, paths.evaluate_metrics, rerun, "evaluation metrics", paths)
    summary = _read(EvaluateSummary.read, paths.evaluate_summary, rerun, "evaluation summary", paths)
    if isinstance(details, Unavailable) or isinstance(summary, Unavailable):
        return details if isinstance(details, Unavailable) else summary
    evaluation = _parsed(lambda: evaluation_of(details, summary, synthetic_classical_gan, metric),
                         "evaluation metrics", rerun, paths.evaluate_metrics, paths)
    if isinstance(evaluation, Evaluation):
        evaluation.confusion, evaluation.confusion_note = read_confusions(paths, classes, [a.name for a in
                                                                                           evaluation.arms],
                                                                          summary.n_seeds)
    return evaluation


def evaluation_of(details: EvaluateDetails, summary: EvaluateSummary, synthetic_classical_gan: str | None = None,
                  metric: str | None = None) -> Evaluation:
    """``metric``: the measure to lead with (report.metric), else macro-F1. p values: the summary's paired tests."""
    measures = [m for m in HEADLINE if m in next(iter(details.arms.values()), {})]
    metric = metric if metric in measures else HEADLINE[0]
    p_values = summary.gains["real_only"]["arms"]
    arms = []
    for name, block in details.arms.items():
        discriminator = name.removesuffix(DISCRIMINATOR_SUFFIX) if name.endswith(DISCRIMINATOR_SUFFIX) else None
        arm = Arm(name, block[metric]["mean"], _ci(block[metric]), gan=arm_gan(name, synthetic_classical_gan),
                  discriminator=discriminator)
        gains = details.gains_vs_real_only.get(name, {})
        arm.gains = {m: (gains[m]["diff"], _ci(gains[m]), gains[m]["label"]) for m in measures if m in gains}
        arm.gain, arm.gain_ci, arm.label = arm.gains.get(metric, (None, None, None))
        arm.p_value = p_values.get(name, {}).get(metric, {}).get("wilcoxon_p")
        vs_non_gan = details.gains_vs_best_non_gan.get(name, {}).get(metric)
        if vs_non_gan:
            arm.gain_vs_non_gan, arm.gain_vs_non_gan_ci = vs_non_gan["diff"], _ci(vs_non_gan)
        arms.append(arm)
    baseline = REAL_ONLY if REAL_ONLY in details.arms else None
    # the best arm that adds synthetic images, else the best of the others (the discriminator arms apart)
    others = [a for a in arms if a.name != baseline and a.discriminator is None
              and (a.gain is not None or a.mean is not None)]
    synthetic = [a for a in others if a.uses_synthetic]
    pick = max(synthetic or others, key=lambda a: (a.gain if a.gain is not None else a.mean), default=None)
    return Evaluation(metric, arms, baseline, pick.name if pick else None, details.mlflow_parent_run_id or None,
                      best_non_gan=details.best_non_gan if details.best_non_gan in details.arms else None)


def read_confusions(paths: Paths, classes: list[str], arms: list[str], n_seeds: int
                    ) -> tuple[dict[str, np.ndarray], str]:
    """Confusion counts (actual x predicted) per arm from results/<ds>/predictions/<arm>.csv, summed over seeds; an
    arm whose file is missing or names an unknown class is left out (the report says so)."""
    out: dict[str, np.ndarray] = {}
    for arm in arms if classes else []:
        counts = np.zeros((len(classes), len(classes)))
        try:
            with predictions_path(paths.results_dir, arm).open(newline="") as fh:
                for row in csv.DictReader(fh):
                    counts[classes.index(row["actual"]), classes.index(row["predicted"])] += 1
        except (OSError, csv.Error, KeyError, ValueError):
            continue
        out[arm] = counts
    note = "from the predictions on the test split" + (f", summed over {n_seeds} seeds" if n_seeds > 1 else "")
    return out, note


# ------------------------------------------------------------------------------------------ all
def gan_names(paths: Paths) -> list[str]:
    """The GANs with any output for this data set."""
    return [g for g in GANS if any(p.exists() for p in (paths.synthetic_dir / g, paths.train_metrics(g),
                                                        paths.loss_csv(g)))]


def read_gan(paths: Paths, name: str, classes: list[str]) -> GanInputs:
    gen_path = paths.generate_metrics(name)
    rerun = generate_stage(paths.dataset, name)
    gen = _read(GenerateDetails.read, gen_path, rerun, "quality metrics", paths)
    return GanInputs(
        name=name,
        manifest=read_manifest(paths, name),
        train_summary=_as_dict(_read(TrainSummary.read, paths.train_metrics(name), train_gan_stage(paths.dataset, name),
                                     "GAN training metrics", paths)),
        history=read_history(paths.loss_csv(name), paths.rel(paths.loss_csv(name))),
        quality=gen if isinstance(gen, Unavailable) else _parsed(lambda: read_quality(gen, classes), "quality metrics",
                                                                 rerun, gen_path, paths),
        generate_metrics=_as_dict(gen),
    )


def read_review_scores(paths: Paths) -> dict | None:
    """reports/<ds>/review_scores.json (pipeline/report/scoring.py), None until the score_review stage ran."""
    try:
        data = json.loads(paths.review_scores.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def collect(root: str | Path, dataset: str, synthetic_classical_gan: str | None = None,
            metric: str | None = None) -> ReportInputs:
    """Everything the report and the review page need; never raises for a missing input.

    ``synthetic_classical_gan`` (params evaluate.synthetic_classical_gan) names the GAN of the
    synthetic_classical arm; ``metric`` (report.metric) is the measure the report leads with.
    """
    paths = Paths(Path(root), dataset)
    meta = read_meta(paths)
    classes = list(meta.get("classes", [])) if isinstance(meta, dict) else []
    return ReportInputs(
        paths=paths, meta=meta, train=read_split(paths, "train"), test=read_split(paths, "test"),
        gans=[read_gan(paths, g, classes) for g in gan_names(paths)],
        evaluation=read_evaluation(paths, classes, synthetic_classical_gan, metric),
        review_scores=read_review_scores(paths))
