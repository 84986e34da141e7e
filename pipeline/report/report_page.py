"""The clinician report ``reports/<dataset>/index.html``: one self-contained page, readable without JSON or MLflow.

Sections, top to bottom: a plain-words summary; per class, synthetic images beside their nearest real
training image; what the memorisation gate excluded; GAN training curves; quality metrics beside
their real-vs-real references; confusion matrices of real-only and the best augmented arm; the
reader study (when scored); provenance. A section whose input is missing says which stage to run.
This module computes each section's numbers, texts and images; ``templates/report.html.j2`` writes the HTML.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import yaml

from pipeline.data.cache import SplitArrays
from pipeline.report.config import ReportConfig
from pipeline.report.html import fmt, fmt_ci, nice, p_value, render
from pipeline.report.images import data_uri, labelled, png_bytes, read_uint8, window
from pipeline.report.inputs import Evaluation, GanInputs, QualityRow, ReportInputs, SyntheticImage, Unavailable
from pipeline.report.plots import confusion_pair, training_curves

REASON_TEXT = {"memorised": "excluded as possible copies of a training image (memorisation gate)",
               "unrealistic": "excluded because they did not lie among the real training images of their class "
                              "(realism check)",
               "low_confidence": "excluded because a classifier could not recognise their class"}
SAMPLE_SEED = 0  # which kept images the report shows (fixed, so re-running gives the same page)

QUALITY_MEANINGS = [  # (regex on the metric name, one line for a clinician)
    (r"fid|frechet|(^|_)fd($|_)", "Frechet distance between synthetic and real image features: lower means the "
                                  "synthetic set looks more like the real one."),
    (r"kid|kernel", "Kernel distance between synthetic and real features (less biased than FD on small sets): "
                    "lower is closer."),
    (r"precision|fidelity", "Share of synthetic images that look like some real image (realism): higher is better."),
    (r"recall", "Share of the real images' variety that the synthetic images cover: higher is better."),
    (r"density", "How densely synthetic images sit among real ones (realism; about 1 for real data)."),
    (r"coverage", "Share of real images with a synthetic image close by (variety): higher is better."),
    (r"ms_ssim", "Diversity: mean structural similarity (MS-SSIM) between random pairs of images of one set; "
                 "lower is more varied. Synthetic well above the reference means repetitive images (mode collapse)."),
    (r"divers", "How different synthetic images are from each other, relative to real images; well below 1 "
                "means repetitive images (mode collapse)."),
    (r"memor|copy|duplicate", "Share of synthetic images so close to a training image that they may be copies."),
    (r"nn|nearest", "Distance from a synthetic image to its nearest real training image: very small values "
                    "suggest copying."),
    (r"conf|class_acc|accuracy", "How often a classifier trained on real images recognises the intended class."),
    (r"kept|pass", "Share of generated images that passed the filters."),
]

METRIC_NAMES = {"fd": "Frechet distance (FD)", "fid": "Frechet distance (FID)", "kid": "kernel distance (KID)",
                "diversity_ms_ssim": "diversity (MS-SSIM)"}
MEASURE_NAMES = {"macro_f1": "macro F1", "balanced_accuracy": "balanced accuracy",
                 "minority_recall": "minority-class sensitivity", "auc_macro": "AUC"}
TOC = [("summary", "Summary"), ("samples", "Samples"), ("excluded", "Excluded"), ("training", "Training"),
       ("quality", "Quality"), ("classifier", "Classifier"), ("review", "Reader study"), ("provenance", "Provenance")]


@dataclass
class Provenance:
    """What the report cannot read from the inputs: params, code version, where MLflow is."""

    params: dict = field(default_factory=dict)  # section name -> plain dict
    git_commit: str = "unknown"
    git_dirty: bool | None = None
    tracking_uri: str = ""
    built_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    input_files: list[tuple[str, str]] = field(default_factory=list)  # (path, "size, sha256")


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric.lower(), nice(metric))


def measure_name(metric: str) -> str:
    return MEASURE_NAMES.get(metric, nice(metric))


def sig(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def meaning(metric: str) -> str:
    return next((text for pattern, text in QUALITY_MEANINGS if re.search(pattern, metric, re.I)), "")


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _counts_text(counts: dict, classes: list[str] | None = None) -> str:
    order = [c for c in classes or [] if c in counts] + [c for c in counts if c not in (classes or [])]
    return ", ".join(f"{nice(c)} {counts[c]}" for c in order)


# ------------------------------------------------------------------------------------------ images
class Thumbs:
    """Labelled thumbnails as data URIs, with the data set's display windowing."""

    def __init__(self, inputs: ReportInputs, cfg: ReportConfig):
        self.cfg = cfg
        self.channels = inputs.channels
        self.percentiles = cfg.mammo_window_percentiles if inputs.modality == "mammography" else None
        train = inputs.train if isinstance(inputs.train, SplitArrays) else None
        self.train = train
        self.train_index = {str(i): n for n, i in enumerate(train.image_ids)} if train is not None else {}

    def caption(self) -> str:
        if self.percentiles:
            lo, hi = self.percentiles
            return (f"Mammogram patches are shown with a per-patch contrast stretch: the grey levels between "
                    f"percentile {lo:g} and percentile {hi:g} of each patch are spread over black to white (the same "
                    "for real and synthetic patches), enlarged without smoothing.")
        return "Images are shown as stored, enlarged without smoothing."

    def _uri(self, image_chw: np.ndarray, label: str, synthetic: bool) -> str:
        return data_uri(png_bytes(labelled(window(image_chw, self.percentiles), self.cfg.thumb_px, label, synthetic)))

    def pair(self, row: SyntheticImage, excluded: bool = False) -> dict:
        """A synthetic image and its nearest real training image (a data URI each, or None) with the distances."""
        n = self.train_index.get(row.nn_real_id)
        real = None
        if n is not None and self.train is not None:
            image = self.train.images[n][..., ::-1] if row.nn_mirrored else self.train.images[n]
            real = self._uri(image, "REAL, mirrored" if row.nn_mirrored else "REAL (training)", False)
        dist = []
        if row.nn_feature_distance is not None:
            dist.append(f"feature distance {row.nn_feature_distance:.3g}")
        if row.nn_pixel_distance is not None:
            dist.append(f"pixel distance {row.nn_pixel_distance:.3g}")
        relative = [v for v in (row.nn_feature_relative, row.nn_pixel_relative) if v is not None]
        if relative:
            dist.append(f"closeness ratio {min(relative):.2g}")
        if row.nn_mirrored:
            dist.append("nearest real image (matched mirrored)")
        synthetic = self._uri(read_uint8(row.path, self.channels), "SYNTHETIC", True) if row.path.is_file() else None
        return {"cls": row.cls, "file": row.path.name, "synthetic": synthetic, "real": real,
                "real_missing": "not recorded" if not row.nn_real_id else "not in the training split",
                "distances": ", ".join(dist), "excluded": nice(row.reason or "unspecified") if excluded else None}


def _pick(rows: list[SyntheticImage], k: int) -> list[SyntheticImage]:
    rows = [r for r in rows if r.path.is_file()] or rows
    if len(rows) > k:
        rng = np.random.default_rng(SAMPLE_SEED)
        rows = [rows[i] for i in sorted(rng.choice(len(rows), size=k, replace=False))]
    return sorted(rows, key=_closest_first)


def _closest_first(r: SyntheticImage) -> tuple[bool, float]:
    return r.nn_feature_distance is None, r.nn_feature_distance or 0.0


# ------------------------------------------------------------------------------------------ view data
def summary(inputs: ReportInputs) -> dict:
    """Numbers and texts of the summary's sentences (report.html.j2 writes the sentences)."""
    meta = inputs.meta
    train_counts = (meta.get("counts") or {}).get("train") or {} if isinstance(meta, dict) else {}
    gans = []
    for g in inputs.gans:
        if not isinstance(g.manifest, list):
            continue
        reasons = Counter(r.reason or "unspecified" for r in g.excluded)
        totals = g.generate_metrics.get("totals") if isinstance(g.generate_metrics, dict) else None
        short = totals.get("shortfall") if isinstance(totals, dict) else None
        gans.append({"name": g.name, "n": len(g.manifest), "kept": len(g.kept),
                     "kept_text": _counts_text(Counter(r.cls for r in g.kept), inputs.classes) or "none",
                     "excluded": [f"{n} {REASON_TEXT.get(k, 'excluded: ' + nice(k))}" for k, n in reasons.items()],
                     "shortfall": short if isinstance(short, int) and short > 0 else 0})
    missing = [g.manifest.message() for g in inputs.gans if isinstance(g.manifest, Unavailable)]
    no_gans = ("Synthetic images: " + missing[0] if missing
               else "No GAN outputs yet: not available: run stages train_gan and generate.")
    return {"n_train": sum(train_counts.values()), "train_counts": _counts_text(train_counts, inputs.classes),
            "gans": gans, "no_gans": no_gans}


def gan_view(g: GanInputs, inputs: ReportInputs, cfg: ReportConfig, thumbs: Thumbs) -> dict:
    """One GAN's samples, exclusions, training curves and quality table; Unavailable where an input is missing."""
    view: dict = {"name": g.name, "manifest": g.manifest, "history": g.history}
    if isinstance(g.manifest, list):
        view.update(scale=distance_scale(g.generate_metrics), samples=samples(g, inputs, cfg, thumbs),
                    excluded=excluded(g, cfg, thumbs))
    summary_ = g.train_summary if isinstance(g.train_summary, dict) else {}
    if not isinstance(g.history, Unavailable):
        best_epoch = summary_.get("best_epoch") if isinstance(summary_.get("best_epoch"), (int, float)) else None
        view["curves"] = data_uri(training_curves(g.history, best_epoch))
    view["train_summary"] = g.train_summary if isinstance(g.train_summary, Unavailable) else [
        [nice(k), _short(summary_[k])] for k in ("epochs", "steps", "best_epoch", "best_quality_fd", "images_per_s",
                                                 "device") if summary_.get(k) is not None]
    view["quality"] = (g.quality if isinstance(g.quality, Unavailable) else quality_table(g.quality) if g.quality
                       else "not available: run stage generate (no quality numbers found in "
                            f"{inputs.paths.rel(inputs.paths.generate_metrics(g.name))})")
    return view


def samples(g: GanInputs, inputs: ReportInputs, cfg: ReportConfig, thumbs: Thumbs) -> list[dict]:
    out = []
    for cls in inputs.classes or sorted({r.cls for r in g.kept}):
        rows = [r for r in g.kept if r.cls == cls]
        out.append({"cls": nice(cls), "generated": any(r.cls == cls for r in g.manifest), "kept": len(rows),
                    "shown": [thumbs.pair(r) for r in _pick(rows, cfg.samples_per_class)]})
    return out


def excluded(g: GanInputs, cfg: ReportConfig, thumbs: Thumbs) -> dict:
    rows = sorted((r for r in g.excluded if r.reason == "memorised"), key=_closest_first)
    return {"reasons": [[nice(k), n] for k, n in sorted(Counter(r.reason or "unspecified" for r in g.excluded).items())],
            "rule": gate_rule(g.generate_metrics), "memorised": len(rows),
            "shown": [thumbs.pair(r, excluded=True) for r in rows[: cfg.excluded_max]]}


def gate_rule(generate_metrics: dict | Unavailable) -> dict | None:
    """The gate's rule, from the generate metrics' ``memorisation`` block (relative or absolute); None if absent."""
    mem = generate_metrics.get("memorisation") if isinstance(generate_metrics, dict) else None
    if not isinstance(mem, dict):
        return None
    num = {k: v for k, v in mem.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    relative = "relative_feature_threshold" in num or "relative_pixel_threshold" in num
    if relative:
        parts = [f"{v:.3g} in {space}" for space, v in (("features", num.get("relative_feature_threshold")),
                                                         ("pixels", num.get("relative_pixel_threshold")))
                 if v is not None]
    else:
        parts = [f"{label} below {num[key]:.3g}" for key, label in (("feature_threshold", "feature distance"),
                                                                    ("pixel_threshold_rms", "pixel distance (RMS)"))
                 if key in num]
        if not parts:
            return None
    pct, rate = num.get("percentile"), num.get("real_val_flag_rate")
    return {"relative": relative, "below": " or ".join(parts), "percentile": None if pct is None else f"{pct:g}",
            "rate": None if rate is None else f"{rate:.0%}", "scale": distance_scale(generate_metrics)}


def distance_scale(generate_metrics: dict | Unavailable) -> str:
    """'For scale: a new real image is typically at ...', from the gate's real-vs-real medians; '' if absent."""
    mem = generate_metrics.get("memorisation") if isinstance(generate_metrics, dict) else None
    if not isinstance(mem, dict):
        return ""
    scale = [f"{label} {mem[key]:.3g}" for key, label in (("real_val_median_nn_feature", "feature distance"),
                                                          ("real_val_median_nn_pixel_rms", "pixel distance"))
             if isinstance(mem.get(key), (int, float))]
    return (f"For scale: a new real image is typically at {' and '.join(scale)} from its nearest training image."
            if scale else "")


def _quality_cell(q: QualityRow | None) -> dict | None:
    if q is None:
        return None
    changed = q.value_generated is not None and q.value is not None and abs(q.value_generated - q.value) > 1e-12
    return {"value": sig(q.value), "reference": f"real {sig(q.reference)}" if q.reference is not None else "no reference",
            "before_gate": sig(q.value_generated) if changed else None}


def quality_table(rows: list[QualityRow]) -> dict:
    """One row per measure, one column per scope ('all' first), the meaning last; notes below."""
    scopes = list(dict.fromkeys(["all"] * any(q.scope == "all" for q in rows) + [q.scope for q in rows]))
    by_key = {(q.metric, q.scope): q for q in rows}
    return {"scopes": ["all classes" if s == "all" else nice(s) for s in scopes],
            "rows": [{"name": metric_name(m), "cells": [_quality_cell(by_key.get((m, s))) for s in scopes],
                      "meaning": meaning(m)} for m in dict.fromkeys(q.metric for q in rows)],
            "notes": list(dict.fromkeys(f"{nice(q.scope)}: {q.note}" for q in rows if q.note))}


def per_class_rates(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest sensitivity and specificity per class of a confusion matrix (actual x predicted)."""
    m = np.asarray(m, dtype=float)
    tp = np.diag(m)
    actual, predicted, total = m.sum(axis=1), m.sum(axis=0), m.sum()
    fn, fp = actual - tp, predicted - tp
    tn = total - tp - fn - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(actual > 0, tp / actual, np.nan), np.where(tn + fp > 0, tn / (tn + fp), np.nan)


def classifier(inputs: ReportInputs) -> dict | None:
    """The measures, the confusion plot and per-class rates of real-only against the best arm; None without."""
    ev = inputs.evaluation
    if not isinstance(ev, Evaluation):
        return None
    name = measure_name(ev.metric)
    view = {"measure": name, "measure_title": name[:1].upper() + name[1:],
            "with_p": any(a.p_value is not None for a in ev.arms),
            "with_non_gan": any(a.gain_vs_non_gan is not None for a in ev.arms),
            "measures": list(dict.fromkeys(m for a in ev.arms for m in a.gains)), "confusion": None}
    view["measure_names"] = [measure_name(m) for m in view["measures"]]
    base, best = ev.baseline, ev.best
    if sum(a in ev.confusion for a in (base, best)) < 2 or not inputs.classes:
        missing = ", ".join(a or "?" for a in (base, best) if a not in ev.confusion)
        view["missing"] = (f"not available: run stage evaluate (confusion matrices of {missing or 'the arms'} "
                             f"not found in {inputs.paths.rel(inputs.paths.results_dir)})")
        return view
    mb, ma = ev.confusion[base], ev.confusion[best]
    view["confusion"] = data_uri(confusion_pair([(f"real only ({base})", mb), (f"best augmented ({best})", ma)],
                                                inputs.classes))
    rates = [[None if np.isnan(v) else float(v) for v in r] for r in (*per_class_rates(mb), *per_class_rates(ma))]
    view["rates"] = [(nice(c), [(rates[0][i], rates[2][i]), (rates[1][i], rates[3][i])])
                     for i, c in enumerate(inputs.classes)]
    return view


def review(scores: dict | None) -> dict | None:
    """The scored reader study's tables (plain values); None before any answers were scored."""
    if not scores or not scores.get("readers"):
        return None
    readers = list(scores["readers"].items())
    ag = scores.get("agreement") or {}
    pooled = scores.get("pooled") or {}
    return {"n_items": scores.get("n_items", "?"), "n_readers": len(readers),
            "pooled": {"accuracy": fmt(pooled.get("accuracy"), 2), "ci": fmt_ci(pooled.get("accuracy_ci95"), 2)},
            "readers": [[name, str(r.get("n", "")), fmt(r.get("accuracy"), 2), fmt_ci(r.get("accuracy_ci95"), 2),
                         p_value(r.get("p_value_vs_chance")), fmt(r.get("sensitivity"), 2),
                         fmt(r.get("specificity"), 2), fmt(r.get("mean_confidence"), 1)]
                        for name, r in readers + [("all readers pooled", pooled)]],
            "per_class": [[name, nice(cls), str(c.get("n", "")), fmt(c.get("accuracy"), 2),
                           fmt(c.get("sensitivity"), 2), fmt(c.get("specificity"), 2)]
                          for name, r in readers for cls, c in (r.get("per_class") or {}).items()],
            "agreement": ag if ag.get("method") else None,
            "comments": [[c["reader"], c["item"], c["comment"]] for c in scores.get("comments") or []]}


def provenance(inputs: ReportInputs, prov: Provenance) -> dict:
    """The data set's description and the MLflow runs of the stages (the rest is read from ``prov``)."""
    meta = inputs.meta if isinstance(inputs.meta, dict) else {}
    keys = ("dataset", "modality", "reader", "task", "channels", "resolution_px", "n_groups", "patient_level_split")
    runs = []
    for g in inputs.gans:
        for stage, src in (("train_gan", g.train_summary), ("generate", g.generate_metrics)):
            run_id = src.get("mlflow_run_id") if isinstance(src, dict) else None
            if run_id:
                runs.append((f"{stage} {g.name}", run_id))
    if isinstance(inputs.evaluation, Evaluation) and inputs.evaluation.parent_run_id:
        runs.append(("evaluate (parent run of the data set)", inputs.evaluation.parent_run_id))
    return {"data": [[nice(k), meta[k]] for k in keys if k in meta]
            + [[f"{split} images", _counts_text(counts, inputs.classes)]
               for split, counts in (meta.get("counts") or {}).items()],
            "runs": runs, "params": yaml.safe_dump(prov.params, sort_keys=False, default_flow_style=None)}


def render_report(inputs: ReportInputs, cfg: ReportConfig, prov: Provenance, dataset: str) -> str:
    thumbs = Thumbs(inputs, cfg)
    scores = review(inputs.review_scores)
    return render("report.html.j2", dataset=dataset, toc=[(a, t) for a, t in TOC if a != "review" or scores],
                  meta=inputs.meta, train=inputs.train, ev=inputs.evaluation, summary=summary(inputs),
                  thumbs_caption=thumbs.caption(), gans=[gan_view(g, inputs, cfg, thumbs) for g in inputs.gans],
                  classifier=classifier(inputs), review=scores, prov=prov, provenance=provenance(inputs, prov))


def params_for_report(params: object, dataset: str) -> dict:
    """The params.yaml sections that shaped this data set's results, as plain dicts."""
    out: dict = {}
    datasets = getattr(params, "datasets", {})
    if dataset in datasets:
        out[f"datasets.{dataset}"] = dataclasses.asdict(datasets[dataset])
    for name, section in (getattr(params, "extra", {}) or {}).items():
        out[name] = dataclasses.asdict(section) if dataclasses.is_dataclass(section) else section
    return out
