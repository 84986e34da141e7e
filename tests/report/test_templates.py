"""The pages' Jinja2 templates: a missing value fails loudly, and markup in data is shown as text on both pages."""
from __future__ import annotations

import json
import re
from pathlib import Path

import jinja2
import pytest
import yaml

import tests.report.fakes as fakes
from pipeline.report.build import unavailable_review
from pipeline.report.config import ReportConfig
from pipeline.report.html import render
from pipeline.report.inputs import collect
from pipeline.report.report_page import Provenance, render_report
from pipeline.report.review_page import build_review
from tests.conftest import REPO
from tests.report.fakes import make_project


def test_a_missing_template_value_fails_loudly() -> None:
    with pytest.raises(jinja2.UndefinedError, match="'config' is undefined"):
        render("review.html.j2", unavailable=None, dataset="d", display_px=384, pixelated=True, percentiles=None)
    with pytest.raises(jinja2.UndefinedError):
        render("report.html.j2", dataset="d", toc=[])
    assert "not available: no images" in render("review.html.j2", unavailable="no images", dataset="d")


def test_markup_in_class_and_data_set_names_is_escaped_on_both_pages(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fakes, "CLASSES", ["normal", "<script>alert(1)", 'a&b "q"'])
    make_project(tmp_path, gans=("acgan",))
    inputs = collect(tmp_path, "mammo")
    index = render_report(inputs, ReportConfig(), Provenance(), "<b>mammo")
    assert "<script>alert" not in index and "<b>mammo" not in index
    assert "&lt;script&gt;alert(1) 5" in index  # the summary's kept counts
    assert 'alt="SYNTHETIC image, class &lt;script&gt;alert(1)"' in index and "class a&amp;b &#34;q&#34;" in index
    assert "<title>Synthetic image report: &lt;b&gt;mammo</title>" in index

    review, key = build_review(inputs, ReportConfig(review_items=6), "<script>alert(2)")
    assert {e["class"] for e in key["items"].values()} >= {"<script>alert(1)"}
    assert review.count("<script") == 2 and "<script>alert" not in review  # the config JSON and the page's script
    assert "<h1>Blinded review: &lt;script&gt;alert(2)</h1>" in review
    config = re.search(r'<script type="application/json" id="config">(.*?)</script>', review, re.S).group(1)
    assert "<" not in config and json.loads(config)["dataset"] == "<script>alert(2)"

    missing = unavailable_review("<i>mammo", "no <kept> images")
    assert "<i>mammo" not in missing and "not available: no &lt;kept&gt; images" in missing


def test_templates_ship_and_rerun_the_report_stage() -> None:
    """The templates folder is package data, and a change there makes DVC re-run the report stage."""
    files = [p.relative_to(REPO).as_posix() for p in (REPO / "pipeline" / "report" / "templates").iterdir()]
    assert {"report.html.j2", "review.html.j2", "review.js", "review.css"} <= {Path(f).name for f in files}
    assert '"pipeline.report" = ["templates/*"]' in (REPO / "pyproject.toml").read_text()
    deps = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["report"]["do"]["deps"]
    assert all(any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps) for f in files)
