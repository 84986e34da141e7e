"""Scoring of the blinded review: can readers tell synthetic images from real ones?

Positive = synthetic. Per reader: accuracy (with a Wilson 95% interval and a two-sided binomial test
against guessing, 0.5), sensitivity (synthetic images called synthetic), specificity (real images
called real), per class and per GAN. Agreement between readers on the items they all answered:
Cohen's kappa for two readers (scikit-learn), Fleiss' kappa for three or more (below), plus every
pairwise Cohen's kappa.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import warnings
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.errors import DataError

log = logging.getLogger(__name__)

ANSWER_COLUMNS = ("reader", "item", "answer", "confidence", "comment", "timestamp")  # + page_id (optional)
LABELS = ("real", "synthetic")
POSITIVE = "synthetic"


@dataclass
class Answer:
    reader: str
    item: str
    answer: str  # "real" or "synthetic"
    confidence: int | None  # 1 (guessing) .. 5 (certain)
    comment: str
    timestamp: str
    where: str  # file:line, for messages


# ----------------------------------------------------------------------------------------- reading
def read_key(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: answer key not found; run the report stage (it writes review_key.json beside "
                        "review.html) or pass --key")
    try:
        key = json.loads(path.read_text())
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); restore the key written with the review page") from None
    items = key.get("items") if isinstance(key, dict) else None
    if not isinstance(items, dict) or not items:
        raise DataError(f"{path}: no 'items' in the key; restore the key written with the review page")
    for item, entry in items.items():
        if not isinstance(entry, dict) or entry.get("truth") not in LABELS:
            raise DataError(f"{path}: item {item}: truth must be 'real' or 'synthetic'; restore the key")
    return key


def read_answers(paths: Sequence[str | Path], key: dict) -> list[Answer]:
    """Rows of exported answer files, checked against the key; the latest answer per reader and item wins."""
    page_id = key.get("page_id")
    latest: dict[tuple[str, str], Answer] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError(f"{path}: answers file not found; give the CSV exported from the review page")
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            missing = [c for c in ("reader", "item", "answer") if c not in header]
            if missing:
                raise DataError(f"{path}: column(s) {', '.join(missing)} missing; expected "
                                f"{','.join(ANSWER_COLUMNS)} as exported by the review page")
            for lineno, raw in enumerate(reader, start=2):
                row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
                answer = _parse_row(row, path, lineno, key, page_id)
                if answer is None:
                    continue
                k = (answer.reader, answer.item)
                if k not in latest or answer.timestamp >= latest[k].timestamp:
                    latest[k] = answer
    if not latest:
        raise DataError(f"{', '.join(map(str, paths))}: no answers found; export them from the review page first")
    return sorted(latest.values(), key=lambda a: (a.reader, a.item))


def _parse_row(row: dict, path: Path, lineno: int, key: dict, page_id: str | None) -> Answer | None:
    where = f"{path} line {lineno}"
    if page_id and row.get("page_id") and row["page_id"] != page_id:
        raise DataError(f"{where}: answers are from review page {row['page_id']}, the key is for page {page_id}; "
                        "score with the review_key.json written together with that review.html")
    item = row.get("item", "")
    if item not in key["items"]:
        raise DataError(f"{where}: item {item!r} is not in the key; these answers belong to another review page")
    answer = row.get("answer", "").lower()
    if answer == "":
        return None  # an item the reader skipped
    if answer not in LABELS:
        raise DataError(f"{where}: answer {row.get('answer')!r} is not 'real' or 'synthetic'; fix the file")
    confidence = None
    if row.get("confidence"):
        try:
            confidence = int(float(row["confidence"]))
        except ValueError:
            confidence = 0
        if not 1 <= confidence <= 5:
            raise DataError(f"{where}: confidence {row['confidence']!r} is not 1 to 5; fix the file")
    reader = row.get("reader") or path.stem
    return Answer(reader, item, answer, confidence, row.get("comment", ""), row.get("timestamp", ""), where)


# ----------------------------------------------------------------------------------------- maths
def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (95% by default); None for n = 0."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def binary_scores(truth: Sequence[str], answers: Sequence[str]) -> dict:
    """Confusion counts and rates with positive = synthetic; rates are None where undefined."""
    if len(truth) != len(answers):
        raise ValueError("truth and answers differ in length")
    t = np.asarray(truth) == POSITIVE
    a = np.asarray(answers) == POSITIVE
    tp, fn = int(np.sum(t & a)), int(np.sum(t & ~a))
    tn, fp = int(np.sum(~t & ~a)), int(np.sum(~t & a))
    n = tp + fn + tn + fp
    p_value = None
    if n:
        from scipy.stats import binomtest

        p_value = float(binomtest(tp + tn, n, 0.5).pvalue)
    ci = wilson_interval(tp + tn, n)
    return {"n": n, "tp": tp, "fn": fn, "tn": tn, "fp": fp, "accuracy": _ratio(tp + tn, n),
            "accuracy_ci95": list(ci) if ci else None, "p_value_vs_chance": p_value,
            "sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp)}


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa of a table ``counts[subject, category]`` = raters who put the subject in the category.

    Every subject needs the same number of raters (>= 2). None when agreement by chance is 1 (all
    ratings in one category), where kappa is undefined.
    """
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] == 0:
        raise ValueError("counts must be a (subjects, categories) table")
    raters = counts.sum(axis=1)
    if np.any(raters != raters[0]) or raters[0] < 2:
        raise ValueError("every subject needs the same number of raters, at least 2")
    n = raters[0]
    p_j = counts.sum(axis=0) / counts.sum()
    p_i = (np.sum(counts * counts, axis=1) - n) / (n * (n - 1))
    p_bar, p_e = float(p_i.mean()), float(np.sum(p_j * p_j))
    if math.isclose(p_e, 1.0):
        return None
    return (p_bar - p_e) / (1 - p_e)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two readers (scikit-learn); None where undefined (both always gave one answer)."""
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined kappa: sklearn warns and returns nan
        value = float(cohen_kappa_score(list(a), list(b), labels=list(LABELS)))
    return value if math.isfinite(value) else None


def agreement(answers: list[Answer]) -> dict:
    """Agreement between readers on the items all of them answered."""
    by_reader: dict[str, dict[str, str]] = {}
    for ans in answers:
        by_reader.setdefault(ans.reader, {})[ans.item] = ans.answer
    readers = sorted(by_reader)
    if len(readers) < 2:
        return {"n_readers": len(readers), "method": None, "kappa": None, "n_items_common": None, "pairwise": []}
    common = sorted(set.intersection(*(set(v) for v in by_reader.values())))
    pairwise = []
    for r1, r2 in combinations(readers, 2):
        shared = sorted(set(by_reader[r1]) & set(by_reader[r2]))
        kappa = cohen_kappa([by_reader[r1][i] for i in shared], [by_reader[r2][i] for i in shared]) if shared else None
        pairwise.append({"readers": [r1, r2], "n_items": len(shared), "cohen_kappa": kappa})
    if len(readers) == 2:
        method, kappa = "cohen", pairwise[0]["cohen_kappa"] if common else None
    else:
        method = "fleiss"
        table = np.array([[sum(by_reader[r][i] == lab for r in readers) for lab in LABELS] for i in common])
        kappa = fleiss_kappa(table) if common else None
    return {"n_readers": len(readers), "method": method, "kappa": kappa, "n_items_common": len(common),
            "pairwise": pairwise}


def _grouped(answers: list[Answer], items: dict, field: str) -> dict:
    groups: dict[str, list[Answer]] = {}
    for ans in answers:
        groups.setdefault(str(items[ans.item].get(field) or ""), []).append(ans)
    return {g: binary_scores([items[a.item]["truth"] for a in group], [a.answer for a in group])
            for g, group in sorted(groups.items()) if g}


def score(answers: list[Answer], key: dict) -> dict:
    """Per-reader results, all readers pooled, and agreement; a JSON-ready dict."""
    items = key["items"]
    by_reader: dict[str, list[Answer]] = {}
    for ans in answers:
        by_reader.setdefault(ans.reader, []).append(ans)
    several_gans = len({str(e.get("gan")) for e in items.values() if e["truth"] == POSITIVE}) > 1
    readers = {}
    for reader, own in sorted(by_reader.items()):
        result = binary_scores([items[a.item]["truth"] for a in own], [a.answer for a in own])
        confidences = [a.confidence for a in own if a.confidence is not None]
        correct_conf = [a.confidence for a in own if a.confidence is not None and a.answer == items[a.item]["truth"]]
        result.update(n_missing=len(items) - len(own),
                      mean_confidence=float(np.mean(confidences)) if confidences else None,
                      mean_confidence_when_right=float(np.mean(correct_conf)) if correct_conf else None,
                      n_comments=sum(1 for a in own if a.comment),
                      per_class=_grouped(own, items, "class"))
        if several_gans:
            result["per_gan"] = _grouped(own, items, "gan")  # real items have no GAN: sensitivity per GAN
        readers[reader] = result
    pooled = binary_scores([items[a.item]["truth"] for a in answers], [a.answer for a in answers])
    return {"dataset": key.get("dataset"), "page_id": key.get("page_id"), "positive": POSITIVE,
            "n_items": len(items), "readers": readers, "pooled": pooled, "agreement": agreement(answers),
            "comments": [{"reader": a.reader, "item": a.item, "comment": a.comment} for a in answers if a.comment]}
