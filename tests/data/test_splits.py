from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.splits import assign_splits, check_splits
from pipeline.errors import DataError


def toy(n_patients: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels, patients = [], []
    for p in range(n_patients):
        cls = rng.choice(["normal", "benign", "malignant"], p=[0.7, 0.2, 0.1])
        for _ in range(2):  # two films per patient
            labels.append(str(cls))
            patients.append(f"P{p:03d}")
    return labels, patients


def test_patient_level_disjoint_and_stratified() -> None:
    labels, patients = toy(200)
    split = assign_splits(labels, patients, 0.15, 0.2, seed=3)
    for part_a, part_b in [("train", "test"), ("train", "val"), ("val", "test")]:
        a = {p for p, s in zip(patients, split) if s == part_a}
        b = {p for p, s in zip(patients, split) if s == part_b}
        assert not a & b
    frac_test = np.mean(split == "test")
    assert 0.15 < frac_test < 0.25 and 0.08 < np.mean(split == "val") < 0.22
    for cls in ("normal", "benign", "malignant"):
        in_cls = np.array(labels) == cls
        assert abs(np.mean(split[in_cls] == "test") - frac_test) < 0.1


def test_deterministic_and_seed_dependent() -> None:
    labels, patients = toy()
    a = assign_splits(labels, patients, 0.15, 0.2, seed=1)
    assert (a == assign_splits(labels, patients, 0.15, 0.2, seed=1)).all()
    assert (a != assign_splits(labels, patients, 0.15, 0.2, seed=2)).any()


def test_external_test_is_kept_as_is() -> None:
    labels, patients = toy()
    fixed = np.zeros(len(labels), bool)
    fixed[:10] = True
    split = assign_splits(labels, patients, 0.15, 0.2, seed=0, fixed_test=fixed)
    assert (split[:10] == "test").all() and not (split[10:] == "test").any()


def test_class_without_test_image_stops() -> None:
    labels = ["a"] * 10 + ["b"]
    split = np.array(["train"] * 5 + ["test"] * 5 + ["train"])
    with pytest.raises(DataError, match="class 'b' has no test image"):
        check_splits(labels, split, ["a", "b"], "datasets.x")


def test_rare_class_on_few_patients_reaches_val_and_test() -> None:
    """5 slides of a rare class among 50: a plain first fold can miss it; the chosen folds must not."""
    labels, patients = [], []
    for slide in range(50):
        cls = "rare" if slide >= 45 else ("a" if slide < 30 else "b")
        labels += [cls] * 10
        patients += [f"s{slide}"] * 10
    for seed in range(5):
        split = assign_splits(labels, patients, 0.15, 0.2, seed)
        for part in ("val", "test"):
            assert ((np.array(labels) == "rare") & (split == part)).any(), (seed, part)
