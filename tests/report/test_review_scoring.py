"""Scoring maths of the blinded review, without a browser: kappas against textbook examples, rates, files."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.report.scoring import (agreement, binary_scores, cohen_kappa, fleiss_kappa, read_answers, read_key,
                                     score, wilson_interval)

# Fleiss (1971) as reproduced on Wikipedia ("Fleiss' kappa", worked example): 10 subjects, 14 raters,
# 5 categories; P-bar = 0.378, P-bar-e = 0.213, kappa = 0.210.
FLEISS_TABLE = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]


def test_fleiss_kappa_textbook_example() -> None:
    assert fleiss_kappa(np.array(FLEISS_TABLE)) == pytest.approx(0.2099, abs=5e-4)


def test_fleiss_kappa_perfect_chance_and_undefined() -> None:
    assert fleiss_kappa(np.array([[3, 0], [0, 3], [3, 0]])) == pytest.approx(1.0)
    assert fleiss_kappa(np.array([[3, 0], [3, 0]])) is None  # all in one category: chance agreement is 1
    with pytest.raises(ValueError, match="same number of raters"):
        fleiss_kappa(np.array([[2, 0], [1, 2]]))


def test_fleiss_equals_cohen_like_for_two_raters_with_equal_marginals() -> None:
    # With two raters and identical marginals, Fleiss' kappa equals Scott's pi, which equals Cohen's kappa.
    a = ["real", "real", "synthetic", "synthetic", "real", "synthetic"]
    b = ["real", "synthetic", "synthetic", "real", "real", "synthetic"]
    table = np.array([[(x == lab) + (y == lab) for lab in ("real", "synthetic")] for x, y in zip(a, b)])
    assert fleiss_kappa(table) == pytest.approx(cohen_kappa(a, b))


def test_cohen_kappa_textbook_example() -> None:
    # Wikipedia ("Cohen's kappa", simple example): 50 items, yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> 0.4
    a = ["synthetic"] * 25 + ["real"] * 25
    b = ["synthetic"] * 20 + ["real"] * 5 + ["synthetic"] * 10 + ["real"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["real"] * 4, ["real"] * 4) is None


def test_binary_scores_positive_is_synthetic() -> None:
    truth = ["synthetic", "synthetic", "real", "real", "real"]
    s = binary_scores(truth, ["synthetic", "real", "real", "synthetic", "real"])
    assert (s["tp"], s["fn"], s["tn"], s["fp"]) == (1, 1, 2, 1)
    assert s["accuracy"] == pytest.approx(3 / 5)
    assert s["sensitivity"] == pytest.approx(0.5) and s["specificity"] == pytest.approx(2 / 3)
    everything_synthetic = binary_scores(truth, ["synthetic"] * 5)
    assert everything_synthetic["sensitivity"] == 1.0 and everything_synthetic["specificity"] == 0.0
    assert binary_scores(["real"], ["real"])["sensitivity"] is None  # no synthetic item: undefined


def test_wilson_interval_known_value() -> None:
    lo, hi = wilson_interval(8, 10)  # textbook value: 0.490 to 0.943
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson_interval(0, 0) is None


def key_file(tmp_path: Path, truths: list[str], page_id: str = "ds-abc") -> Path:
    import json

    items = {f"item_{i + 1:03d}": {"truth": t, "class": "a" if i % 2 else "b", "source_id": f"s{i}", "gan": None}
             for i, t in enumerate(truths)}
    path = tmp_path / "key.json"
    path.write_text(json.dumps({"page_id": page_id, "dataset": "ds", "items": items}))
    return path


def answers_file(tmp_path: Path, name: str, reader: str, answers: list[str], page_id: str = "ds-abc") -> Path:
    path = tmp_path / name
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["reader", "item", "answer", "confidence", "comment", "timestamp", "page_id"])
        for i, a in enumerate(answers):
            w.writerow([reader, f"item_{i + 1:03d}", a, 3, "" if i else "looks, odd", "2026-01-01T00:00:00Z", page_id])
    return path


def test_score_two_and_three_readers(tmp_path: Path) -> None:
    truths = ["real", "synthetic", "synthetic", "real", "synthetic", "real"]
    key = read_key(key_file(tmp_path, truths))
    files = [answers_file(tmp_path, "a.csv", "A", truths),
             answers_file(tmp_path, "b.csv", "B", ["synthetic"] * 6)]
    result = score(read_answers(files, key), key)
    assert result["readers"]["A"]["accuracy"] == 1.0
    assert result["readers"]["B"]["sensitivity"] == 1.0 and result["readers"]["B"]["specificity"] == 0.0
    assert result["readers"]["A"]["per_class"]["a"]["n"] == 3
    assert result["agreement"]["method"] == "cohen" and result["agreement"]["kappa"] == pytest.approx(0.0)
    assert result["comments"] == [{"reader": "A", "item": "item_001", "comment": "looks, odd"},
                                  {"reader": "B", "item": "item_001", "comment": "looks, odd"}]
    files.append(answers_file(tmp_path, "c.csv", "C", truths))
    result = score(read_answers(files, key), key)
    assert result["agreement"]["method"] == "fleiss" and result["agreement"]["n_items_common"] == 6
    assert len(result["agreement"]["pairwise"]) == 3


def test_read_answers_rejects_answers_of_another_page(tmp_path: Path) -> None:
    key = read_key(key_file(tmp_path, ["real", "synthetic"]))
    with pytest.raises(DataError, match="from review page other-page"):
        read_answers([answers_file(tmp_path, "a.csv", "A", ["real", "real"], page_id="other-page")], key)
    bad = answers_file(tmp_path, "b.csv", "A", ["real", "maybe"])
    with pytest.raises(DataError, match=r"b.csv line 3: answer 'maybe'"):
        read_answers([bad], key)


def test_latest_answer_wins_and_skipped_items_are_missing(tmp_path: Path) -> None:
    key = read_key(key_file(tmp_path, ["real", "synthetic", "real"]))
    path = tmp_path / "a.csv"
    path.write_text("reader,item,answer,confidence,comment,timestamp\n"
                    "A,item_001,synthetic,2,,2026-01-01T10:00:00Z\n"
                    "A,item_001,real,4,,2026-01-01T11:00:00Z\n"
                    "A,item_002,,,,\n")
    answers = read_answers([path], key)
    assert [(a.item, a.answer) for a in answers] == [("item_001", "real")]
    assert score(answers, key)["readers"]["A"]["n_missing"] == 2
    assert agreement(answers)["method"] is None
