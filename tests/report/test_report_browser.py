"""The report and the review page in a real headless browser (Debian's Chromium through Playwright).

Screenshots go to /tmp/report_screenshot.png and /tmp/review_screenshot.png for a person to look at.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest import mock

import pytest

from tests.report.browser import browser  # noqa: F401  (the fixture)
from tests.report.fakes import make_project, write_params

SCREENSHOTS = Path("/tmp")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_project(tmp_path_factory.mktemp("browser"))
    write_params(root, "mammo", "mammography", 1, review_items=12)
    with mock.patch.dict("os.environ", {"PIPELINE_TRACKING": "0"}), \
            mock.patch.object(sys, "argv", ["report", "--params", str(root / "params.yaml"), "--root", str(root),
                                            "--dataset", "mammo"]):
        from stages.report import main

        main()
    return root


@pytest.fixture()
def page(browser):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    external: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("request", lambda r: external.append(r.url) if not r.url.startswith(("data:", "file:", "blob:")) else None)
    yield pg
    context.close()
    assert errors == [], errors
    assert external == [], f"the page fetched {external}"


def test_report_images_load_and_summary_shows(project: Path, page) -> None:
    page.goto((project / "reports" / "mammo" / "index.html").as_uri())
    broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                           ".map(i => i.alt)")
    assert page.evaluate("document.images.length") > 20 and broken == []
    summary = page.inner_text("#summary")
    assert "15 kept" in summary and "acgan" in summary and "a gain" in summary
    synthetic = page.locator('img[alt^="SYNTHETIC"]')
    assert synthetic.count() > 10
    page.screenshot(path=str(SCREENSHOTS / "report_screenshot.png"), full_page=True)
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    assert page.locator(".banner").bounding_box()["y"] == 0  # the not-for-diagnosis banner stays in view
    assert "NOT FOR DIAGNOSIS" in page.inner_text(".banner")


def answer_all(page, key: dict, choose, keyboard: bool = False) -> None:
    items = page.evaluate("JSON.parse(document.getElementById('config').textContent).items")
    n = len(items)
    for i, item in enumerate(items):
        assert page.inner_text("#progress") == f"{i + 1} / {n}"
        shown = page.eval_on_selector("#image", "e => [e.src, e.naturalWidth, e.getBoundingClientRect().width]")
        assert shown[0] == item["src"] and shown[1] > 0 and shown[2] == 384
        answer, confidence = choose(key["items"][item["id"]]), 1 + i % 5
        if keyboard:
            page.keyboard.press("s" if answer == "synthetic" else "r")
            page.keyboard.press(str(confidence))
            page.keyboard.press("Enter")
        else:
            page.click(f"#answer-{answer}")
            page.check(f"input[name=confidence][value='{confidence}']")
            if i % 3 == 0:
                page.fill("#comment", f'edges look "soft", item {i + 1}\nsecond line')
            page.click("#next")
    assert page.is_visible("#done") and not page.is_visible("#card")


def export(page, path: Path) -> Path:
    with page.expect_download() as download:
        page.click("#export")
    download.value.save_as(path)
    return path


def score(project: Path, *answers: Path) -> dict:
    with mock.patch.dict("os.environ", {"PIPELINE_TRACKING": "0"}), \
            mock.patch.object(sys, "argv", ["score_review", "--params", str(project / "params.yaml"), "--root",
                                            str(project), "--dataset", "mammo", "--answers", *map(str, answers)]):
        from stages.score_review import main

        main()
    return json.loads((project / "reports" / "mammo" / "review_scores.json").read_text())


def test_review_round_trip(project: Path, browser, tmp_path: Path) -> None:  # noqa: F811
    out = project / "reports" / "mammo"
    key = json.loads((out / "review_key.json").read_text())
    url = (out / "review.html").as_uri()
    readers = []
    for name, choose, keyboard in (("Dr A", lambda e: e["truth"], False), ("Dr B", lambda e: "synthetic", True)):
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        pg.goto(url)
        pg.click("#next")  # no answer yet: it must not move on
        assert pg.inner_text("#progress").startswith("1 /") and "first" in pg.inner_text("#status")
        pg.fill("#reader", name)
        pg.click("h1")  # leave the name field, so the keys go to the page
        if name == "Dr A":  # answers survive a reload (localStorage, keyed by the page id)
            pg.click("#answer-synthetic")
            pg.check("input[name=confidence][value='2']")
            pg.fill("#comment", "grainy")
            pg.screenshot(path=str(SCREENSHOTS / "review_screenshot.png"))
            pg.reload()
            assert pg.input_value("#reader") == "Dr A" and pg.input_value("#comment") == "grainy"
            assert "selected" in pg.get_attribute("#answer-synthetic", "class")
            assert pg.is_checked("input[name=confidence][value='2']")
        answer_all(pg, key, choose, keyboard)
        readers.append(export(pg, tmp_path / f"{name}.csv"))
        context.close()
        assert errors == []
    header = readers[0].read_text().splitlines()[0]
    assert header == "reader,item,answer,confidence,comment,timestamp,page_id"
    scores = score(project, *readers)
    a, b = scores["readers"]["Dr A"], scores["readers"]["Dr B"]
    assert a["n"] == len(key["items"]) and a["accuracy"] == 1.0 and a["sensitivity"] == a["specificity"] == 1.0
    assert b["sensitivity"] == 1.0 and b["specificity"] == 0.0 and b["accuracy"] == 0.5
    assert scores["agreement"]["method"] == "cohen" and scores["agreement"]["kappa"] == pytest.approx(0.0)
    assert any(c["comment"] == 'edges look "soft", item 1\nsecond line' for c in scores["comments"])
    assert "Blinded review: could readers tell" in (out / "index.html").read_text()


def test_review_page_source_holds_no_answer(project: Path, page) -> None:
    out = project / "reports" / "mammo"
    key = json.loads((out / "review_key.json").read_text())
    page.goto((out / "review.html").as_uri())
    source = page.content() + (out / "review.html").read_text()
    assert "syn_" not in source and "review_key" not in source and "memoris" not in source
    for item, entry in key["items"].items():
        assert entry["source_id"] not in source
        assert f'"{item}","truth"' not in source and f"{item}\u0022:\u0022{entry['truth']}" not in source
    # the DOM carries nothing per item beyond its id and image
    assert page.evaluate("Object.keys(JSON.parse(document.getElementById('config').textContent).items[0])"
                         ".sort()") == ["id", "src"]
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    page.click("#export")  # no reader name yet: asks for it instead of exporting
    assert dialogs and "name" in dialogs[0]
