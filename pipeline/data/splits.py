"""Patient-level, stratified, seeded train/val/test splits.

Groups (patients) are assigned whole to one split, so the two films of a mini-MIAS pair, or the views of
a CBIS-DDSM patient, never sit on both sides. The assignment is computed from the raw patient keys in
sorted order, so it does not depend on the salt of the hashes written out.
"""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from pipeline.errors import DataError


def _one_fold(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a group-disjoint, label-stratified subset of about ``fraction`` of the rows."""
    n_splits = max(2, int(round(1.0 / fraction)))
    n_groups = len(np.unique(groups))
    n_splits = min(n_splits, n_groups)
    if n_splits < 2:
        raise DataError(f"only {n_groups} patient group(s): cannot split by patient; add data")
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    try:
        folds = [held for _, held in sgkf.split(np.zeros(len(labels)), labels, groups)]
    except ValueError as exc:
        raise DataError(f"cannot split {len(labels)} images of {n_groups} patients into {n_splits} stratified "
                        f"folds ({exc}); add images or lower split.test_fraction / split.val_fraction") from None
    # a rare class spread over fewer patients than folds is missing from some folds: take the first fold
    # that holds the most classes, so validation and test see every class whenever the patients allow it
    held = max(folds, key=lambda f: len(np.unique(labels[f])))
    mask = np.zeros(len(labels), dtype=bool)
    mask[held] = True
    return mask


def assign_splits(labels: list[str], patients: list[str], val_fraction: float, test_fraction: float,
                  seed: int, fixed_test: np.ndarray | None = None) -> np.ndarray:
    """Return an array of 'train' / 'val' / 'test' per row.

    ``fixed_test`` marks rows of an external (official) test set: they become the test split as they are
    and only the rest is divided into train and val.
    """
    labels_a = np.asarray(labels)
    # integer group codes from sorted raw keys: stable and salt-independent
    _, groups = np.unique(np.asarray(patients), return_inverse=True)
    split = np.full(len(labels_a), "train", dtype=object)
    if fixed_test is not None and fixed_test.any():
        split[fixed_test] = "test"
        rest = ~fixed_test
    else:
        test = _one_fold(labels_a, groups, test_fraction, seed)
        split[test] = "test"
        rest = ~test
    if val_fraction > 0:
        idx = np.flatnonzero(rest)
        val_frac_of_rest = val_fraction / max(1e-9, 1.0 - (0.0 if fixed_test is not None else test_fraction))
        val = _one_fold(labels_a[idx], groups[idx], min(0.5, val_frac_of_rest), seed + 1)
        split[idx[val]] = "val"
    return split.astype(str)


def check_splits(labels: list[str], split: np.ndarray, classes: list[str], where: str) -> dict:
    """Counts per class and split; a class without a test (or train) image stops with a clear error."""
    counts = {s: {c: 0 for c in classes} for s in ("train", "val", "test")}
    for lab, s in zip(labels, split):
        counts[s][lab] += 1
    for c in classes:
        if counts["test"][c] == 0:
            raise DataError(f"{where}: class {c!r} has no test image ({sum(counts[s][c] for s in counts)} in all); "
                            "add images of it, merge it with class_map, or raise split.test_fraction")
        if counts["train"][c] == 0:
            raise DataError(f"{where}: class {c!r} has no training image; add images of it or merge it with class_map")
    return counts
