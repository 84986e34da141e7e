"""Builds a data set's report, review page and answer key from the other stages' outputs.

Used by ``stages/report.py`` (everything) and ``stages/score_review.py`` (the report again, now with
the review section). All paths are relative to ``root``, the repository root by default.
"""
from __future__ import annotations

import hashlib
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import Params
from pipeline.errors import DataError
from pipeline.report.config import ReportConfig
from pipeline.report.html import render
from pipeline.report.inputs import Evaluation, Paths, ReportInputs, collect
from pipeline.report.publish import write_json, write_texts
from pipeline.report.report_page import Provenance, params_for_report, render_report
from pipeline.report.review_page import build_review
from pipeline.tracking import git_commit, tracking_enabled, tracking_uri


@dataclass
class Built:
    index: Path
    review: Path
    key: Path
    inputs: ReportInputs
    seconds: dict[str, float] = field(default_factory=dict)  # report, review
    review_items: int = 0
    page_id: str | None = None  # of the review page; None when there was nothing to review

    @property
    def parent_run_id(self) -> str | None:
        ev = self.inputs.evaluation
        return ev.parent_run_id if isinstance(ev, Evaluation) else None


def _git_dirty(root: Path) -> bool | None:
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def _describe(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    size = path.stat().st_size
    return f"{size / 1024:.1f} KiB, {h.hexdigest()[:12]}" if size >= 1024 else f"{size} B, {h.hexdigest()[:12]}"


def input_files(paths: Paths, inputs: ReportInputs) -> list[tuple[str, str]]:
    candidates = [paths.data_dir / "meta.json", paths.data_dir / "cache" / "train.npz",
                  paths.data_dir / "cache" / "test.npz"]
    for g in inputs.gans:
        candidates += [paths.synthetic_dir / g.name / "manifest.csv", paths.train_metrics(g.name),
                       paths.loss_csv(g.name), paths.generate_metrics(g.name)]
    candidates += [paths.evaluate_metrics, paths.results_dir / "summary.json", paths.review_scores]
    return [(paths.rel(p), _describe(p)) for p in candidates if p.is_file()]


def provenance(root: Path, params: Params, dataset: str, inputs: ReportInputs, cfg: ReportConfig) -> Provenance:
    return Provenance(params=params_for_report(params, dataset), git_commit=git_commit(root),
                      git_dirty=_git_dirty(root),
                      tracking_uri=tracking_uri() if tracking_enabled(cfg.tracking) else "",
                      input_files=input_files(inputs.paths, inputs))


def report_html(root: Path, dataset: str, params: Params, cfg: ReportConfig) -> tuple[str, ReportInputs]:
    inputs = collect(root, dataset, params.evaluate.synthetic_classical_gan,
                     cfg.metric)
    return render_report(inputs, cfg, provenance(root, params, dataset, inputs, cfg), dataset), inputs


def unavailable_review(dataset: str, reason: str) -> str:
    return render("review.html.j2", dataset=dataset, unavailable=reason)


def build(root: str | Path, dataset: str, params: Params) -> Built:
    """Write index.html, review.html and review_key.json for ``dataset`` into ``<root>/reports/<dataset>``."""
    root = Path(root)
    cfg: ReportConfig = params.report
    out = Paths(root, dataset).reports_dir
    t0 = time.perf_counter()
    index_text, inputs = report_html(root, dataset, params, cfg)
    t1 = time.perf_counter()
    try:
        review_text, key = build_review(inputs, cfg, dataset)
    except DataError as exc:  # nothing to review yet: say so in the page, keep the outputs DVC expects
        review_text = unavailable_review(dataset, str(exc))
        key = {"page_id": None, "dataset": dataset, "items": {}, "unavailable": str(exc)}
    t2 = time.perf_counter()
    built = Built(out / "index.html", out / "review.html", out / "review_key.json", inputs,
                  {"report": t1 - t0, "review": t2 - t1}, len(key["items"]), key["page_id"])
    write_texts({built.index: index_text, built.review: review_text})
    write_json(built.key, key)
    return built


def rebuild_index(root: str | Path, dataset: str, params: Params) -> Path:
    """Only the report page again (after scoring): the review page and its key stay as they are."""
    root = Path(root)
    out = Paths(root, dataset).reports_dir
    text, _ = report_html(root, dataset, params, params.report)
    write_texts({out / "index.html": text})
    return out / "index.html"
