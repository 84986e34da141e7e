"""Classification metrics on the real test split: scikit-learn for one run, numpy twins for the bootstrap.

:func:`classification_report` is what every child run logs (scikit-learn throughout). The bootstrap in
``stats.py`` needs the same numbers for thousands of resampled test sets at once; the ``*_batch``
functions compute them from batched confusion matrices and ranks, and the tests check that they agree
with scikit-learn.

Conventions: rows of a confusion matrix are the actual class, columns the predicted class; an F1 or
precision with a zero denominator is 0 (scikit-learn ``zero_division=0``); AUC is one-vs-rest per class,
macro-averaged.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import (balanced_accuracy_score, confusion_matrix, f1_score, multilabel_confusion_matrix,
                             recall_score, roc_auc_score)

from pipeline.classify.records import HEADLINE  # noqa: F401  (metrics with an interval, a gain and a paired test)


def classification_report(y_true: np.ndarray, proba: np.ndarray, classes: list[str], minority: int) -> dict:
    """All metrics of one run: scalars for MLflow and nested lists for the JSON artifact.

    Args:
        y_true: int (N,) actual classes.
        proba: float (N, K) class probabilities; the prediction is their argmax.
        classes: the K class names, in label order.
        minority: index of the minority class.
    """
    labels = list(range(len(classes)))
    y_pred = proba.argmax(axis=1)
    counts = confusion_matrix(y_true, y_pred, labels=labels)
    mcm = multilabel_confusion_matrix(y_true, y_pred, labels=labels)  # per class [[tn, fp], [fn, tp]]
    tn, fp = mcm[:, 0, 0], mcm[:, 0, 1]
    sensitivity = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    specificity = np.divide(tn, tn + fp, out=np.zeros(len(labels)), where=(tn + fp) > 0)
    f1 = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    out = {
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "minority_recall": float(sensitivity[minority]),
        "auc_macro": auc_ovr_macro(y_true, proba),
        "accuracy": float((y_true == y_pred).mean()),
    }
    for k, name in enumerate(classes):
        out[f"sensitivity.{name}"] = float(sensitivity[k])
        out[f"specificity.{name}"] = float(specificity[k])
        out[f"f1.{name}"] = float(f1[k])
    return out


def normalise_rows(counts: np.ndarray) -> np.ndarray:
    """Confusion counts -> fraction of each actual class (a row of an absent class stays 0)."""
    rows = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)


def auc_ovr_macro(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC over the classes that have positives and negatives in ``y_true``.

    Equal to ``roc_auc_score(y_true, proba, multi_class="ovr")`` when every class is present, which the
    evaluation checks for the test split; NaN when no class qualifies.
    """
    aucs = [roc_auc_score(y_true == k, proba[:, k]) for k in range(proba.shape[1])
            if 0 < (y_true == k).sum() < len(y_true)]
    return float(np.mean(aucs)) if aucs else float("nan")


# ------------------------------------------------------------------------------- batched (bootstrap)
def confusion_batch(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(B, N) actual and predicted labels -> (B, K, K) confusion counts."""
    b = np.arange(y_true.shape[0])[:, None]
    flat = (b * n_classes + y_true) * n_classes + y_pred
    return np.bincount(flat.ravel(), minlength=y_true.shape[0] * n_classes * n_classes).reshape(
        y_true.shape[0], n_classes, n_classes)


def macro_f1_batch(cm: np.ndarray) -> np.ndarray:
    tp = np.diagonal(cm, axis1=1, axis2=2)
    denom = cm.sum(axis=2) + cm.sum(axis=1)  # actual + predicted = 2tp + fn + fp
    f1 = np.divide(2 * tp, denom, out=np.zeros(tp.shape), where=denom > 0)
    return f1.mean(axis=1)


def recall_batch(cm: np.ndarray) -> np.ndarray:
    """(B, K, K) -> (B, K) recall per class; NaN for a class absent from y_true."""
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(float)
    actual = cm.sum(axis=2)
    return np.divide(tp, actual, out=np.full(tp.shape, np.nan), where=actual > 0)


def balanced_accuracy_batch(cm: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present in y_true (scikit-learn's definition)."""
    return np.nanmean(recall_batch(cm), axis=1)


def auc_ovr_macro_batch(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """(B, N) labels and (B, N, K) probabilities -> (B,) macro one-vs-rest AUC (Mann-Whitney with mid-ranks)."""
    n = y_true.shape[1]
    aucs = []
    for k in range(proba.shape[2]):
        pos = y_true == k
        n_pos = pos.sum(axis=1)
        n_neg = n - n_pos
        ranks = rankdata(proba[:, :, k], axis=1)  # ties get the mean rank, as in roc_auc_score
        u = (ranks * pos).sum(axis=1) - n_pos * (n_pos + 1) / 2
        with np.errstate(invalid="ignore", divide="ignore"):
            aucs.append(np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan))
    return np.nanmean(np.stack(aucs, axis=1), axis=1)


def headline_batch(y_true: np.ndarray, proba: np.ndarray, minority: int) -> dict[str, np.ndarray]:
    """The :data:`HEADLINE` metrics for B resampled test sets: (B, N) labels, (B, N, K) probabilities."""
    n_classes = proba.shape[2]
    cm = confusion_batch(y_true, proba.argmax(axis=2), n_classes)
    return {"macro_f1": macro_f1_batch(cm), "balanced_accuracy": balanced_accuracy_batch(cm),
            "minority_recall": recall_batch(cm)[:, minority], "auc_macro": auc_ovr_macro_batch(y_true, proba)}
