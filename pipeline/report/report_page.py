"""The clinician report ``reports/<dataset>/index.html``: one self-contained page, readable without JSON or MLflow.

Sections, top to bottom: a plain-words summary; per class, synthetic images beside their nearest real
training image; what the memorisation gate excluded; GAN training curves; quality metrics beside
their real-vs-real references; confusion matrices of real-only and the best augmented arm; the
reader study (when scored); provenance. A section whose input is missing says which stage to run.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass, field

import numpy as np
import yaml

from pipeline.data.cache import SplitArrays
from pipeline.report.config import ReportConfig
from pipeline.report.html import esc, fmt, fmt_ci, page, table, unavailable
from pipeline.report.images import data_uri, labelled, png_bytes, read_uint8, window
from pipeline.report.inputs import Arm, Evaluation, QualityRow, ReportInputs, SyntheticImage, Unavailable
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


def p_value(value: float | None) -> str:
    return "–" if value is None else "&lt;0.001" if value < 0.001 else f"{value:.3f}"


def sig(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def meaning(metric: str) -> str:
    return next((text for pattern, text in QUALITY_MEANINGS if re.search(pattern, metric, re.I)), "")


def nice(name: str) -> str:
    return name.replace("_", " ")


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

    def synthetic(self, row: SyntheticImage) -> str:
        if not row.path.is_file():
            return f'<span class="unavailable">image file missing: {esc(row.path.name)}</span>'
        uri = self._uri(read_uint8(row.path, self.channels), "SYNTHETIC", True)
        return (f'<img class="thumb" src="{uri}" alt="SYNTHETIC image, class {esc(row.cls)}" '
                f'title="SYNTHETIC ({esc(row.cls)})">')

    def nearest_real(self, row: SyntheticImage) -> str:
        n = self.train_index.get(row.nn_real_id)
        if n is None or self.train is None:
            why = "not recorded" if not row.nn_real_id else "not in the training split"
            return f'<span class="caption">nearest real image {why}</span>'
        image = self.train.images[n][..., ::-1] if row.nn_mirrored else self.train.images[n]
        uri = self._uri(image, "REAL, mirrored" if row.nn_mirrored else "REAL (training)", False)
        return f'<img class="thumb" src="{uri}" alt="real training image nearest to the synthetic one">'

    def pair(self, row: SyntheticImage, extra: str = "") -> str:
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
        text = "SYNTHETIC " + esc(row.cls) + (" &middot; " + esc(", ".join(dist)) if dist else "") + extra
        return (f'<figure class="pair"><div class="imgs">{self.synthetic(row)}{self.nearest_real(row)}</div>'
                f"<figcaption>{text}</figcaption></figure>")


def _pick(rows: list[SyntheticImage], k: int) -> list[SyntheticImage]:
    rows = [r for r in rows if r.path.is_file()] or rows
    if len(rows) > k:
        rng = np.random.default_rng(SAMPLE_SEED)
        rows = [rows[i] for i in sorted(rng.choice(len(rows), size=k, replace=False))]
    return sorted(rows, key=lambda r: (r.nn_feature_distance is None, r.nn_feature_distance or 0.0))


# ------------------------------------------------------------------------------------------ sections
def _counts_text(counts: dict, classes: list[str] | None = None) -> str:
    order = [c for c in classes or [] if c in counts] + [c for c in counts if c not in (classes or [])]
    return ", ".join(f"{esc(nice(c))} {counts[c]}" for c in order)


def _verdict(gain: float | None, ci: tuple[float, float] | None) -> str:
    if gain is None:
        return "no gain was computed"
    if ci is None:
        return "no confidence interval was computed, so this difference may be chance"
    if ci[0] > 0:
        return "the whole interval is above zero: <b>a gain</b>"
    if ci[1] < 0:
        return "the whole interval is below zero: <b>augmentation made it worse</b>"
    return "the interval includes zero: <b>no clear gain</b>"


_DISCRIMINATOR_TEXT = ("the trained {} discriminator's class head, fine-tuned on the real training images; "
                       "it adds no synthetic images")


def _against_references(arm: Arm, ev: Evaluation) -> str:
    """'scored X against Y with real images only: change ...; verdict. Against the best arm without ...'."""
    base = ev.arm(ev.baseline)
    against = f" against {fmt(base.mean)} with real images only" if base and base.mean is not None else ""
    text = (f"scored {fmt(arm.mean)}{against}: change <b>{fmt(arm.gain, signed=True)}</b> (95% CI "
            f"{fmt_ci(arm.gain_ci, signed=True)}); {_verdict(arm.gain, arm.gain_ci)}.")
    if arm.gain_vs_non_gan is not None:
        ref = f" ({esc(ev.best_non_gan)})" if ev.best_non_gan else ""
        text += (f" Against the best arm without synthetic images{ref}: "
                 f"{fmt(arm.gain_vs_non_gan, signed=True)} (95% CI {fmt_ci(arm.gain_vs_non_gan_ci, signed=True)}); "
                 f"{_verdict(arm.gain_vs_non_gan, arm.gain_vs_non_gan_ci)}.")
    return text


def _arm_mark(arm: Arm) -> str:
    """&#9679; adds synthetic images, &#9675; starts from a GAN's discriminator (semi-supervised)."""
    return " &#9679;" if arm.uses_synthetic else " &#9675;" if arm.discriminator else ""


def _verdict_word(gain: float | None, ci: tuple[float, float] | None) -> str:
    if gain is None or ci is None:
        return ""
    return "gain" if ci[0] > 0 else "loss" if ci[1] < 0 else "no gain"


def summary(inputs: ReportInputs, dataset: str) -> str:
    items = []
    meta = inputs.meta
    if isinstance(meta, dict):
        train_counts = (meta.get("counts") or {}).get("train") or {}
        n_train = sum(train_counts.values())
        items.append(f"Data set <b>{esc(dataset)}</b> ({esc(meta.get('modality', '?'))}): {n_train} real training "
                     f"images ({_counts_text(train_counts, inputs.classes)}).")
    else:
        items.append(esc(meta.message()))
    with_manifest = [g for g in inputs.gans if isinstance(g.manifest, list)]
    if with_manifest:
        for g in with_manifest:
            kept: dict[str, int] = {}
            for r in g.kept:
                kept[r.cls] = kept.get(r.cls, 0) + 1
            reasons: dict[str, int] = {}
            for r in g.excluded:
                reasons[r.reason or "unspecified"] = reasons.get(r.reason or "unspecified", 0) + 1
            excluded = "; ".join(f"{n} {esc(REASON_TEXT.get(k, 'excluded: ' + nice(k)))}" for k, n in reasons.items())
            totals = g.generate_metrics.get("totals") if isinstance(g.generate_metrics, dict) else None
            short = totals.get("shortfall") if isinstance(totals, dict) else None
            shortfall = (f" It fell <b>{short} images short</b> of its target: too few acceptable images."
                         if isinstance(short, int) and short > 0 else "")
            kept_text = _counts_text(kept, inputs.classes) or "none"
            items.append(f"GAN <b>{esc(g.name)}</b> generated {len(g.manifest)} synthetic images: <b>{len(g.kept)} "
                         f"kept</b> ({kept_text}){'; ' + excluded if excluded else ''}." + shortfall)
    elif inputs.gans:
        items.append("Synthetic images: " + esc(next(g.manifest.message() for g in inputs.gans
                                                      if isinstance(g.manifest, Unavailable))))
    else:
        items.append("No GAN outputs yet: not available: run stages train_gan and generate.")
    ev = inputs.evaluation
    if isinstance(ev, Evaluation):
        best = ev.arm(ev.best)
        if best is not None:
            kind = "with synthetic images" if best.uses_synthetic else "(no arm added synthetic images)"
            items.append(f"Classifier ({esc(measure_name(ev.metric))}): the best arm {kind}, "
                         f"<b>{esc(best.name)}</b>, " + _against_references(best, ev))
        else:
            items.append("Classifier: no augmented arm was evaluated.")
        for arm in ev.discriminator_arms:
            source = _DISCRIMINATOR_TEXT.format(esc(arm.discriminator.upper()))
            items.append(f"Semi-supervised arm <b>{esc(arm.name)}</b> ({source}), " + _against_references(arm, ev))
    else:
        items.append("Classifier gain: " + esc(ev.message()))
    scores = inputs.review_scores
    if scores and scores.get("readers"):
        pooled = scores.get("pooled") or {}
        n = len(scores["readers"])
        items.append(f"Blinded review: {n} reader{'s' if n != 1 else ''} told real from synthetic with accuracy "
                     f"{fmt(pooled.get('accuracy'), 2)} (0.5 = guessing; 95% CI "
                     f"{fmt_ci(tuple(pooled['accuracy_ci95']) if pooled.get('accuracy_ci95') else None, 2)}).")
    warn = ""
    if isinstance(meta, dict) and meta.get("patient_level_split") is False:
        warn = ('<p class="warning"><b>No patient-level split.</b> This data set has no patient identifiers, so '
                "images of one patient may be in both the training and the test split. Every result below may "
                "therefore look better than it would on new patients.</p>")
    lis = "".join(f"<li>{i}</li>" for i in items)
    return f'<section class="summary" id="summary"><h2>Summary</h2><ul>{lis}</ul></section>{warn}'


def samples_section(inputs: ReportInputs, cfg: ReportConfig, thumbs: Thumbs) -> str:
    out = ['<h2 id="samples">Synthetic images beside their nearest real training image</h2>',
           f'<p class="caption">{esc(thumbs.caption())} Each pair: the SYNTHETIC image (red label) and the real '
           "training image it is closest to (grey label). Distances: lower means more alike; the feature distance is "
           "measured in the project's image-feature space, the pixel distance on the 0&ndash;1 grey scale.</p>"]
    if isinstance(inputs.train, Unavailable):
        out.append(unavailable(inputs.train))
    out += per_gan(inputs, "manifest", "not available: run stages train_gan and generate (no synthetic images yet)",
                   lambda g: _samples_of(g, inputs, cfg, thumbs))
    return "".join(out)


def _samples_of(g, inputs: ReportInputs, cfg: ReportConfig, thumbs: Thumbs) -> str:
    out = []
    scale = distance_scale(g.generate_metrics)
    if scale:
        out.append(f'<p class="caption">{esc(scale)}</p>')
    for cls in inputs.classes or sorted({r.cls for r in g.kept}):
        rows = [r for r in g.kept if r.cls == cls]
        shown = _pick(rows, cfg.samples_per_class)
        if not any(r.cls == cls for r in g.manifest):
            out.append(f'<h4>{esc(nice(cls))}</h4><p class="caption">none generated for this class</p>')
            continue
        out.append(f"<h4>{esc(nice(cls))}: {len(shown)} of {len(rows)} kept</h4>")
        out.append('<div class="pairs">' + "".join(thumbs.pair(r) for r in shown) + "</div>" if shown
                   else '<p class="caption">every synthetic image of this class was excluded</p>')
    return "".join(out)


def per_gan(inputs: ReportInputs, field: str, missing: str, body) -> list[str]:
    """One ``<h3>`` block per GAN: ``body(g)``, or the reason ``g.<field>`` is unavailable; ``missing`` if no GAN."""
    if not inputs.gans:
        return [unavailable(missing)]
    out = []
    for g in inputs.gans:
        out.append(f"<h3>{esc(g.name)}</h3>")
        value = getattr(g, field)
        out.append(unavailable(value) if isinstance(value, Unavailable) else body(g))
    return out


def excluded_section(inputs: ReportInputs, cfg: ReportConfig, thumbs: Thumbs) -> str:
    out = ['<h2 id="excluded">Images the memorisation gate excluded</h2>',
           '<p class="caption">Synthetic images too close to a real training image are excluded, because they may be '
           "copies of a patient's image rather than new images. They were not used for training.</p>"]
    out += per_gan(inputs, "manifest", "not available: run stage generate", lambda g: _excluded_of(g, cfg, thumbs))
    return "".join(out)


def _excluded_of(g, cfg: ReportConfig, thumbs: Thumbs) -> str:
    out = []
    reasons: dict[str, int] = {}
    for r in g.excluded:
        reasons[r.reason or "unspecified"] = reasons.get(r.reason or "unspecified", 0) + 1
    if not reasons:
        return '<p class="caption">No image was excluded.</p>'
    out.append(gate_rule(g.generate_metrics))
    out.append(table(["reason", "images"], [[esc(nice(k)), str(v)] for k, v in sorted(reasons.items())], (1,)))
    rows = sorted((r for r in g.excluded if r.reason == "memorised"),
                  key=lambda r: (r.nn_feature_distance is None, r.nn_feature_distance or 0.0))
    if not rows:
        return "".join(out) + '<p class="caption">The memorisation gate excluded no image.</p>'
    shown = rows[: cfg.excluded_max]
    note = f" (the closest {len(shown)} of {len(rows)})" if len(rows) > len(shown) else ""
    out.append(f'<p class="caption">Images the gate excluded{note}, each beside its nearest real training '
               "image:</p>")
    out.append('<div class="pairs">' + "".join(
        thumbs.pair(r, f" &middot; excluded: {esc(nice(r.reason or 'unspecified'))}") for r in shown) + "</div>")
    return "".join(out)


def gate_rule(generate_metrics: dict | Unavailable) -> str:
    """The gate's rule in words, from the generate metrics' ``memorisation`` block (relative or absolute)."""
    mem = generate_metrics.get("memorisation") if isinstance(generate_metrics, dict) else None
    if not isinstance(mem, dict):
        return ""
    num = {k: v for k, v in mem.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    pct = num.get("percentile")
    of_real = (f" (percentile {pct:g} of the same measure for real validation images, i.e. new patients)"
               if pct is not None else "")
    rate = num.get("real_val_flag_rate")
    false_alarms = (f" The same rule flags {rate:.0%} of real validation images." if rate is not None else "")
    if "relative_feature_threshold" in num or "relative_pixel_threshold" in num:
        parts = [f"{v:.3g} in {space}" for space, v in (("features", num.get("relative_feature_threshold")),
                                                         ("pixels", num.get("relative_pixel_threshold")))
                 if v is not None]
        text = ("Gate rule: an image is excluded as a possible copy when it is much closer to one training image "
                "than to its other near neighbours: its <i>closeness ratio</i> (distance to the nearest training "
                "image divided by the mean distance to its few nearest) is below " + " or ".join(parts) + of_real
                + "." + false_alarms)
    else:
        parts = [f"{label} below {num[key]:.3g}" for key, label in (("feature_threshold", "feature distance"),
                                                                    ("pixel_threshold_rms", "pixel distance (RMS)"))
                 if key in num]
        if not parts:
            return ""
        text = ("Gate rule: excluded when the nearest training image is at " + " or ".join(parts) + of_real + "."
                + false_alarms)
    return f'<p class="caption">{text} {distance_scale(generate_metrics)}</p>'


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


def training_section(inputs: ReportInputs) -> str:
    out = ['<h2 id="training">GAN training</h2>',
           '<p class="caption">Losses of the two networks, the discriminator\'s outputs on real and synthetic images, '
           "and the quality score checked during training (its best epoch is the generator used). Wildly swinging "
           "losses or a discriminator that is always sure point to unstable training.</p>"]
    if not inputs.gans:
        out.append(unavailable("not available: run stage train_gan"))
    for g in inputs.gans:
        out.append(f"<h3>{esc(g.name)}</h3>")
        summary_ = g.train_summary if isinstance(g.train_summary, dict) else {}
        best_epoch = summary_.get("best_epoch") if isinstance(summary_.get("best_epoch"), (int, float)) else None
        if isinstance(g.history, Unavailable):
            out.append(unavailable(g.history))
        else:
            uri = data_uri(training_curves(g.history, best_epoch))
            out.append(f'<img class="plot" src="{uri}" alt="training curves of {esc(g.name)}">')
        if isinstance(g.train_summary, Unavailable):
            out.append(unavailable(g.train_summary))
        else:
            rows = [[esc(nice(k)), esc(_short(summary_.get(k)))] for k in
                    ("epochs", "steps", "best_epoch", "best_quality_fd", "images_per_s", "device")
                    if summary_.get(k) is not None]
            out.append(table(["", "value"], rows))
    return "".join(out)


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def quality_section(inputs: ReportInputs) -> str:
    out = ['<h2 id="quality">Image quality</h2>',
           '<p class="caption">Each measure compares the kept synthetic images (those used for training) with the '
           "real training images. Under each value, <i>real</i> is the reference: the same measure for real "
           "validation images against the real training images. A synthetic value close to it means synthetic "
           "images differ from real ones about as much as new real images do. <i>before gate</i> is the value for "
           "all generated images, before the memorisation gate and the confidence filter (shown where it differs). "
           "&lsquo;All classes&rsquo; is the average over the classes that have a reference.</p>"]
    out += per_gan(inputs, "quality", "not available: run stage generate", lambda g: quality_table(g.quality) if g.quality
                   else unavailable("not available: run stage generate (no quality numbers found in "
                                    f"{inputs.paths.rel(inputs.paths.generate_metrics(g.name))})"))
    return "".join(out)


def _quality_cell(q: QualityRow | None) -> str:
    if q is None:
        return "–"
    ref = f"real {sig(q.reference)}" if q.reference is not None else "no reference"
    cell = f'<b>{sig(q.value)}</b><br><span class="ref">{ref}'
    if q.value_generated is not None and q.value is not None and abs(q.value_generated - q.value) > 1e-12:
        cell += f" &middot; before gate {sig(q.value_generated)}"
    return cell + "</span>"


def quality_table(rows: list[QualityRow]) -> str:
    """One row per measure, one column per scope ('all' first), the meaning last; notes below."""
    scopes = list(dict.fromkeys(["all"] * any(q.scope == "all" for q in rows) + [q.scope for q in rows]))
    by_key = {(q.metric, q.scope): q for q in rows}
    metrics = list(dict.fromkeys(q.metric for q in rows))
    body = [[esc(metric_name(m))] + [_quality_cell(by_key.get((m, s))) for s in scopes]
            + [f'<span class="meaning">{esc(meaning(m))}</span>'] for m in metrics]
    head = ["measure"] + ["all classes" if s == "all" else esc(nice(s)) for s in scopes] + ["what it means"]
    notes = dict.fromkeys(f"{nice(q.scope)}: {q.note}" for q in rows if q.note)
    return table(head, body, range(1, len(scopes) + 1)) + "".join(
        f'<p class="caption">{esc(n)}</p>' for n in notes)


def measure_name(metric: str) -> str:
    return MEASURE_NAMES.get(metric, nice(metric))


def all_gains_table(ev: Evaluation) -> str:
    """Every measure's gain against real-only, one row per arm (empty when the file has only one measure)."""
    measures = list(dict.fromkeys(m for a in ev.arms for m in a.gains))
    if len(measures) < 2:
        return ""
    rows = []
    for a in ev.arms:
        if a.name == ev.baseline:
            continue
        cells = []
        for m in measures:
            gain, ci, label = a.gains.get(m, (None, None, None))
            word = label or _verdict_word(gain, ci)
            cells.append(f"{fmt(gain, signed=True)}<br><span class=\"ref\">{fmt_ci(ci, signed=True)}"
                         f"{' &middot; ' + esc(word) if word else ''}</span>")
        rows.append([esc(a.name) + _arm_mark(a)] + cells)
    return ('<p class="caption">Gain against real-only on every measure (95% interval and verdict below each). '
            "Minority-class sensitivity: the share of the rarest class found.</p>"
            + table(["arm"] + [esc(measure_name(m)) for m in measures], rows,
                    range(1, len(measures) + 1)))


def per_class_rates(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest sensitivity and specificity per class of a confusion matrix (actual x predicted)."""
    m = np.asarray(m, dtype=float)
    tp = np.diag(m)
    actual, predicted, total = m.sum(axis=1), m.sum(axis=0), m.sum()
    fn, fp = actual - tp, predicted - tp
    tn = total - tp - fn - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(actual > 0, tp / actual, np.nan), np.where(tn + fp > 0, tn / (tn + fp), np.nan)


def _delta(before: float, after: float) -> str:
    if np.isnan(before) or np.isnan(after):
        return "–"
    d = after - before
    cls = "up" if d > 1e-12 else "down" if d < -1e-12 else ""
    return f'<span class="{cls}">{d:+.3f}</span>'


def classifier_section(inputs: ReportInputs) -> str:
    out = ['<h2 id="classifier">Does adding synthetic images help the classifier?</h2>']
    ev = inputs.evaluation
    if isinstance(ev, Unavailable):
        return out[0] + unavailable(ev)
    name = measure_name(ev.metric)
    out.append(f'<p class="caption">{esc(name[:1].upper() + name[1:])} on the real test split (mean over seeds, '
               "95% confidence interval). Gain = arm minus real-only; a gain whose interval includes zero may be "
               "chance. Arms marked &#9679; add synthetic images; arms marked &#9675; add none but start from a "
               "trained GAN's discriminator (semi-supervised: its class head fine-tuned on the real training "
               "images); the others are the usual alternatives (class weights, oversampling, classical "
               "augmentation). Both kinds of GAN arm are also compared with the best arm without them.</p>")
    rows = []
    with_p = any(a.p_value is not None for a in ev.arms)
    with_non_gan = any(a.gain_vs_non_gan is not None for a in ev.arms)
    for a in ev.arms:
        is_base = a.name == ev.baseline
        name = (esc(a.name) + _arm_mark(a) + (" (baseline)" if is_base else "")
                + (" <b>(best)</b>" if a.name == ev.best else ""))
        verdict = "" if is_base else a.label or _verdict_word(a.gain, a.gain_ci)
        row = [name, fmt(a.mean), fmt_ci(a.ci), "–" if is_base else fmt(a.gain, signed=True),
               "–" if is_base else fmt_ci(a.gain_ci, signed=True), esc(verdict)]
        row += ["–" if is_base else p_value(a.p_value)] if with_p else []
        if with_non_gan:
            gain, ci = (a.gain_vs_non_gan, a.gain_vs_non_gan_ci) if a.uses_gan else (None, None)
            row += [f"{fmt(gain, signed=True)} {fmt_ci(ci, signed=True)}" if gain is not None else "–"]
        rows.append(row)
    head = ["arm", esc(measure_name(ev.metric)), "95% CI", "gain", "gain 95% CI", "verdict"]
    head += ["p (paired, over seeds)"] if with_p else []
    if with_non_gan:
        head += [f"gain vs best non-GAN arm{' (' + esc(ev.best_non_gan) + ')' if ev.best_non_gan else ''}, 95% CI"]
    out.append(table(head, rows, (1, 2, 3, 4, 6, 7)))
    out.append(all_gains_table(ev))
    classes = inputs.classes
    base, best = ev.baseline, ev.best
    have = [a for a in (base, best) if a in ev.confusion]
    if len(have) < 2 or not classes:
        missing = ", ".join(a or "?" for a in (base, best) if a not in ev.confusion)
        out.append(unavailable(f"not available: run stage evaluate (confusion matrices of {missing or 'the arms'} "
                               f"not found in {inputs.paths.rel(inputs.paths.results_dir)})"))
        return "".join(out)
    mb, ma = ev.confusion[base], ev.confusion[best]
    uri = data_uri(confusion_pair([(f"real only ({base})", mb), (f"best augmented ({best})", ma)], classes))
    out.append(f'<p class="caption">Confusion matrices {esc(ev.confusion_note)}: rows are the true class, columns the '
               "predicted class; in brackets the share of the true class.</p>")
    out.append(f'<img class="plot" src="{uri}" alt="confusion matrices, real only and best augmented arm">')
    sb, pb = per_class_rates(mb)
    sa, pa = per_class_rates(ma)
    rows = [[esc(nice(c)), fmt(None if np.isnan(sb[i]) else sb[i]), fmt(None if np.isnan(sa[i]) else sa[i]),
             _delta(sb[i], sa[i]), fmt(None if np.isnan(pb[i]) else pb[i]), fmt(None if np.isnan(pa[i]) else pa[i]),
             _delta(pb[i], pa[i])] for i, c in enumerate(classes)]
    out.append('<p class="caption">Sensitivity: share of images of the class found. Specificity: share of images '
               "of other classes not called this class.</p>")
    out.append(table(["class", "sensitivity real only", "sensitivity best", "change", "specificity real only",
                      "specificity best", "change"], rows, range(1, 7)))
    return "".join(out)


def review_section(inputs: ReportInputs) -> str:
    scores = inputs.review_scores
    if not scores or not scores.get("readers"):
        return ""
    out = ['<h2 id="review">Blinded review: could readers tell synthetic from real?</h2>',
           f'<p class="caption">{scores.get("n_items", "?")} images, about half synthetic. Positive = synthetic: '
           "sensitivity = synthetic images spotted, specificity = real images called real. Accuracy near 0.5 "
           "means readers could not tell them apart.</p>"]
    rows = []
    for name, r in list(scores["readers"].items()) + [("all readers pooled", scores.get("pooled") or {})]:
        ci = r.get("accuracy_ci95")
        rows.append([esc(name), str(r.get("n", "")), fmt(r.get("accuracy"), 2),
                     fmt_ci(tuple(ci) if ci else None, 2), p_value(r.get("p_value_vs_chance")),
                     fmt(r.get("sensitivity"), 2), fmt(r.get("specificity"), 2), fmt(r.get("mean_confidence"), 1)])
    out.append(table(["reader", "answers", "accuracy", "95% CI", "p vs guessing", "sensitivity", "specificity",
                      "mean confidence"], rows, range(1, 8)))
    class_rows = []
    for name, r in scores["readers"].items():
        for cls, c in (r.get("per_class") or {}).items():
            class_rows.append([esc(name), esc(nice(cls)), str(c.get("n", "")), fmt(c.get("accuracy"), 2),
                               fmt(c.get("sensitivity"), 2), fmt(c.get("specificity"), 2)])
    if class_rows:
        out.append("<h3>Per class</h3>" + table(["reader", "class", "answers", "accuracy", "sensitivity",
                                                 "specificity"], class_rows, range(2, 6)))
    ag = scores.get("agreement") or {}
    if ag.get("method"):
        method = "Cohen's kappa" if ag["method"] == "cohen" else "Fleiss' kappa"
        out.append(f"<p>Agreement between the {ag.get('n_readers')} readers on {ag.get('n_items_common')} images "
                   f"answered by all: {method} <b>{fmt(ag.get('kappa'), 2)}</b> (1 = always agree, 0 = no more "
                   "than chance, below 0 = less than chance).</p>")
    comments = scores.get("comments") or []
    if comments:
        rows = [[esc(c["reader"]), esc(c["item"]), esc(c["comment"])] for c in comments]
        out.append(f"<details><summary>Readers' comments ({len(comments)})</summary>"
                   + table(["reader", "item", "comment"], rows) + "</details>")
    return "".join(out)


def provenance_section(inputs: ReportInputs, prov: Provenance, dataset: str) -> str:
    out = ['<h2 id="provenance">Provenance</h2>']
    meta = inputs.meta
    if isinstance(meta, dict):
        keys = ("dataset", "modality", "reader", "task", "channels", "resolution_px", "n_groups", "patient_level_split")
        rows = [[esc(nice(k)), esc(meta[k])] for k in keys if k in meta]
        for split, counts in (meta.get("counts") or {}).items():
            rows.append([f"{esc(split)} images", _counts_text(counts, inputs.classes)])
        out.append("<h3>Data set</h3>" + table(["", "value"], rows))
    else:
        out.append(unavailable(meta))
    dirty = " (with uncommitted changes)" if prov.git_dirty else ""
    runs = []
    for g in inputs.gans:
        for stage, src in (("train_gan", g.train_summary), ("generate", g.generate_metrics)):
            run_id = src.get("mlflow_run_id") if isinstance(src, dict) else None
            if run_id:
                runs.append([f"{stage} {esc(g.name)}", f"<code>{esc(run_id)}</code>"])
    if isinstance(inputs.evaluation, Evaluation) and inputs.evaluation.parent_run_id:
        runs.append(["evaluate (parent run of the data set)", f"<code>{esc(inputs.evaluation.parent_run_id)}</code>"])
    out.append("<h3>Code and runs</h3>" + table(["", "value"], [
        ["git commit", f"<code>{esc(prov.git_commit)}</code>{dirty}"],
        ["report built", esc(prov.built_at)],
        ["MLflow tracking", f"<code>{esc(prov.tracking_uri or 'off')}</code>"], *runs]))
    if prov.input_files:
        out.append("<h3>Input files</h3>" + table(["file", "size, sha256"], [[f"<code>{esc(p)}</code>", esc(h)]
                                                                             for p, h in prov.input_files]))
    if prov.params:
        out.append("<details><summary>Parameters (params.yaml sections used)</summary><pre>"
                   + esc(yaml.safe_dump(prov.params, sort_keys=False, default_flow_style=None)) + "</pre></details>")
    return "".join(out)


def render_report(inputs: ReportInputs, cfg: ReportConfig, prov: Provenance, dataset: str) -> str:
    thumbs = Thumbs(inputs, cfg)
    body = "".join([
        f"<h1>Synthetic image report: {esc(dataset)}</h1>",
        '<nav class="toc">' + "".join(f'<a href="#{a}">{t}</a>' for a, t in TOC
                                      if a != "review" or (inputs.review_scores or {}).get("readers")) + "</nav>",
        '<p class="caption">For clinicians: what the GANs made, whether the images look plausible, whether they '
        "copy patients' images, and whether they helped the classifier.</p>",
        summary(inputs, dataset),
        samples_section(inputs, cfg, thumbs),
        excluded_section(inputs, cfg, thumbs),
        training_section(inputs),
        quality_section(inputs),
        classifier_section(inputs),
        review_section(inputs),
        provenance_section(inputs, prov, dataset),
    ])
    return page(f"Synthetic image report: {dataset}", body)


def params_for_report(params: object, dataset: str) -> dict:
    """The params.yaml sections that shaped this data set's results, as plain dicts."""
    out: dict = {}
    datasets = getattr(params, "datasets", {})
    if dataset in datasets:
        out[f"datasets.{dataset}"] = dataclasses.asdict(datasets[dataset])
    for name, section in (getattr(params, "extra", {}) or {}).items():
        out[name] = dataclasses.asdict(section) if dataclasses.is_dataclass(section) else section
    return out
