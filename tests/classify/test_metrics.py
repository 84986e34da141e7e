"""Metrics agree with scikit-learn and with a 3x3 example worked by hand; the batched twins agree too."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score, roc_auc_score

from pipeline.classify.metrics import (auc_ovr_macro, auc_ovr_macro_batch, classification_report, confusion_batch,
                                       headline_batch, normalise_rows)

CLASSES = ["a", "b", "c"]


def one_hot_proba(pred: np.ndarray, k: int = 3) -> np.ndarray:
    p = np.full((len(pred), k), 0.1)
    p[np.arange(len(pred)), pred] = 0.8
    return p


def test_hand_worked_3x3() -> None:
    #            actual a a a a b b b c c c
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])
    # confusion (rows actual): a: [3 1 0]  b: [0 2 1]  c: [1 0 2]
    r = classification_report(y_true, one_hot_proba(y_pred), CLASSES, minority=2)
    # sensitivity = TP / (TP + FN): a 3/4, b 2/3, c 2/3
    assert r["sensitivity.a"] == pytest.approx(3 / 4)
    assert r["sensitivity.b"] == pytest.approx(2 / 3)
    assert r["sensitivity.c"] == pytest.approx(2 / 3)
    # specificity = TN / (TN + FP): a: negatives are the 6 b/c images, 1 predicted a (the last c) -> 5/6
    # b: 7 negatives, 1 predicted b (an a) -> 6/7;  c: 7 negatives, 1 predicted c (a b) -> 6/7
    assert r["specificity.a"] == pytest.approx(5 / 6)
    assert r["specificity.b"] == pytest.approx(6 / 7)
    assert r["specificity.c"] == pytest.approx(6 / 7)
    # F1 = 2TP / (2TP + FP + FN): a 6/8, b 4/6, c 4/6
    assert r["f1.a"] == pytest.approx(6 / 8)
    assert r["macro_f1"] == pytest.approx((6 / 8 + 4 / 6 + 4 / 6) / 3)
    assert r["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 3 + 2 / 3) / 3)
    assert r["minority_recall"] == pytest.approx(2 / 3)
    assert r["accuracy"] == pytest.approx(7 / 10)


@pytest.mark.parametrize("seed", range(5))
def test_report_and_batch_agree_with_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, 60)
    y_true[:3] = [0, 1, 2]
    proba = rng.dirichlet(np.ones(3), 60)
    proba[:, 1] = np.round(proba[:, 1], 1)  # ties, as a barely trained classifier makes them
    proba /= proba.sum(1, keepdims=True)
    y_pred = proba.argmax(1)
    r = classification_report(y_true, proba, CLASSES, minority=1)
    expected = {"macro_f1": f1_score(y_true, y_pred, average="macro", zero_division=0),
                "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
                "minority_recall": recall_score(y_true, y_pred, average=None)[1],
                "auc_macro": roc_auc_score(y_true, proba, multi_class="ovr", average="macro")}
    batch = headline_batch(y_true[None], proba[None], minority=1)
    for name, value in expected.items():
        assert r[name] == pytest.approx(value)
        assert batch[name][0] == pytest.approx(value)


def test_batch_on_resampled_sets_matches_sklearn_each() -> None:
    rng = np.random.default_rng(3)
    y_true = np.repeat([0, 1, 2], [10, 6, 4])
    proba = rng.dirichlet(np.ones(3), 20)
    idx = rng.integers(0, 20, (4, 20))
    idx[:, :3] = [0, 10, 16]  # every class in every resample
    batch = headline_batch(y_true[idx], proba[idx], minority=2)
    for b in range(4):
        yt, pb = y_true[idx[b]], proba[idx[b]]
        assert batch["macro_f1"][b] == pytest.approx(f1_score(yt, pb.argmax(1), average="macro", zero_division=0))
        assert batch["auc_macro"][b] == pytest.approx(roc_auc_score(yt, pb, multi_class="ovr"))


def test_missing_predicted_class_gives_zero_f1_not_nan() -> None:
    y_true = np.array([0, 0, 1, 2])
    y_pred = np.array([0, 0, 0, 0])  # never predicts b or c
    r = classification_report(y_true, one_hot_proba(y_pred), CLASSES, minority=2)
    assert r["f1.b"] == 0 and r["minority_recall"] == 0
    assert r["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    cm = confusion_batch(y_true[None], y_pred[None], 3)[0]
    assert cm.tolist() == [[2, 0, 0], [1, 0, 0], [1, 0, 0]]
    assert normalise_rows(cm)[0].tolist() == [1.0, 0.0, 0.0]


def test_auc_skips_a_class_without_positives() -> None:
    y_true = np.array([0, 0, 1, 1])
    proba = np.array([[.8, .1, .1], [.6, .3, .1], [.2, .7, .1], [.3, .6, .1]])
    assert auc_ovr_macro(y_true, proba) == pytest.approx(1.0)  # class c has no positive: left out
    assert auc_ovr_macro_batch(y_true[None], proba[None])[0] == pytest.approx(1.0)
