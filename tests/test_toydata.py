"""tests/toydata.py: what it writes is what the ingest stage writes, and holds the classes and counts asked for."""
from __future__ import annotations

import ast
import csv

import numpy as np

from pipeline.data.cache import load_meta, load_split
from tests.conftest import REPO
from tests.toydata import INGEST_META_KEYS, toy_split, write_ingested, write_toy_dataset


def test_toy_dataset_loads_with_the_cache_readers(tmp_path):
    counts = {"train": (5, 3), "val": (2, 2), "test": (3, 1)}
    data = write_toy_dataset(tmp_path / "data" / "cells", ("normal", "abnormal"), counts, channels=3, size_px=20,
                             dataset="cells", modality="cytology")
    meta = load_meta(data)
    assert meta["classes"] == ["normal", "abnormal"]
    assert (meta["dataset"], meta["modality"], meta["channels"], meta["resolution_px"]) == ("cells", "cytology", 3, 20)
    assert meta["counts"] == {s: {"normal": n[0], "abnormal": n[1]} for s, n in counts.items()}
    assert meta["n_groups"] == sum(map(sum, counts.values()))
    for split, (n_normal, n_abnormal) in counts.items():
        arrays = load_split(data, split)
        assert arrays.images.shape == (n_normal + n_abnormal, 3, 20, 20) and arrays.images.dtype == np.uint8
        assert arrays.labels.tolist() == [0] * n_normal + [1] * n_abnormal
        assert len(set(arrays.image_ids)) == len(arrays) and all(i.startswith(f"{split}_") for i in arrays.image_ids)
    with (data / "splits.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["split"], r["label"]) for r in rows if r["split"] == "test"] == [("test", "normal")] * 3 + [
        ("test", "abnormal")]


def test_the_classes_can_be_told_apart():
    """The default drawing gives each class its own shape and brightness, rising with the class."""
    arrays = toy_split("train", (20, 20, 20), ("a", "b", "c"))
    means = [arrays.images[arrays.labels == k].mean() for k in range(3)]
    assert means[0] < means[1] < means[2]


def test_given_arrays_are_written_unchanged(tmp_path):
    train = toy_split("train", (2, 1), ("x", "y"), seed=5)
    data = write_ingested(tmp_path / "d", {"train": train}, ["x", "y"], patient_level_split=False, n_groups=2)
    back = load_split(data, "train")
    assert np.array_equal(back.images, train.images) and back.labels.tolist() == [0, 0, 1]
    assert back.image_ids.tolist() == train.image_ids.tolist()
    assert load_meta(data)["patient_level_split"] is False and load_meta(data)["n_groups"] == 2


def test_meta_keys_are_those_ingest_writes(tmp_path):
    """INGEST_META_KEYS follows the ``meta = {...}`` literal of pipeline/data/ingest.py."""
    tree = ast.parse((REPO / "pipeline" / "data" / "ingest.py").read_text())
    literals = [node.value for node in ast.walk(tree)
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                and any(isinstance(t, ast.Name) and t.id == "meta" for t in node.targets)]
    assert len(literals) == 1, "pipeline/data/ingest.py: expected one `meta = {...}` literal"
    assert [k.value for k in literals[0].keys] == list(INGEST_META_KEYS)
    assert list(load_meta(write_toy_dataset(tmp_path / "d"))) == sorted(INGEST_META_KEYS)
