"""The blinded review page without a browser: balance, determinism, and nothing that gives the answer away."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from pipeline.errors import DataError
from pipeline.report.config import ReportConfig
from pipeline.report.inputs import collect
from pipeline.report.review_page import _allocate, build_review
from tests.report.fakes import CLASSES, make_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("review"))


def page_items(html: str) -> list[dict]:
    config = re.search(r'<script type="application/json" id="config">(.*?)</script>', html, re.S)
    return json.loads(config.group(1))["items"]


def test_balanced_seeded_and_blind(project: Path) -> None:
    inputs = collect(project, "mammo")
    html, key = build_review(inputs, ReportConfig(review_items=12, review_seed=3), "mammo")
    items = key["items"]
    assert len(items) == 12 and Counter(e["truth"] for e in items.values()) == {"real": 6, "synthetic": 6}
    for cls in CLASSES:  # per class as many real as synthetic: the class is no tell
        per = Counter(e["truth"] for e in items.values() if e["class"] == cls)
        assert per["real"] == per["synthetic"] == 2
    assert key["gans"] == ["acgan"]  # review_gan 'best': the best arm's GAN
    shown = page_items(html)
    assert [i["id"] for i in shown] == sorted(items) and all(set(i) == {"id", "src"} for i in shown)
    # identical encoding: every data URI of the same image size has the same length
    assert len({len(i["src"]) for i in shown}) == 1
    truths = [items[i["id"]]["truth"] for i in shown]
    assert truths != sorted(truths) and truths != sorted(truths, reverse=True)
    # nothing in the source names an image's origin
    assert "syn_" not in html and "review_key" not in html
    for entry in items.values():
        assert entry["source_id"] not in html
    for word in CLASSES + ["acgan", "cdcgan", "memoris"]:
        assert word not in html.lower()
    assert not re.search(r'item_\d+[^"]{0,40}(real|synthetic)', html)
    # same seed, same page; another seed, another draw
    again, _ = build_review(inputs, ReportConfig(review_items=12, review_seed=3), "mammo")
    other, other_key = build_review(inputs, ReportConfig(review_items=12, review_seed=4), "mammo")
    assert again == html and other != html and other_key["page_id"] != key["page_id"]


def test_review_gan_choice_and_shortage(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    inputs = collect(project, "mammo")
    _, key = build_review(inputs, ReportConfig(review_items=12, review_gan="all"), "mammo")
    assert {e["gan"] for e in key["items"].values() if e["gan"]} <= {"acgan", "cdcgan"}
    with pytest.raises(DataError, match="review_gan: 'stylegan' has no kept synthetic images"):
        build_review(inputs, ReportConfig(review_gan="stylegan"), "mammo")
    _, key = build_review(inputs, ReportConfig(review_items=40, review_gan="cdcgan"), "mammo")
    # test split has 6/5/3 real images, 5 kept synthetic per class: capacity 5 + 5 + 3 pairs
    assert len(key["items"]) == 26 and "26 items instead of 40" in caplog.text
    assert _allocate([5, 5, 3], 20) == [5, 5, 3] and _allocate([9, 9, 1], 6) == [3, 2, 1]


def test_rgb_cytology_page(tmp_path: Path) -> None:
    make_project(tmp_path, dataset="cells", modality="cytology", channels=3, gans=("cdcgan",))
    html, key = build_review(collect(tmp_path, "cells"), ReportConfig(review_items=6), "cells")
    assert len(key["items"]) == 6 and "contrast stretch" not in html
    assert len({len(i["src"]) for i in page_items(html)}) == 1
