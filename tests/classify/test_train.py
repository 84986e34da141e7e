"""One classifier training: it learns, it is deterministic for a seed, early stopping restores the best epoch."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.classify.arms import ARMS, ArmContext
from pipeline.classify.config import BudgetConfig, ClassicalConfig, ClassifierConfig
from pipeline.classify.train import _logits, predict_proba, to_input, train_classifier, validation_scores
from tests.classify.fakes import make_split

MODEL = ClassifierConfig(channels=[8, 16], dropout=0.0)


def train_arm(arm: str, seed: int, budget: BudgetConfig):
    train, val = make_split("train"), make_split("val")
    ctx = ArmContext(n_classes=3, channels=1, seed=seed, classical=ClassicalConfig(), synthetic={})
    return train_classifier(ARMS[arm](train, ctx), val, 3, MODEL, budget, seed)


def test_learns_the_toy_shapes() -> None:
    result = train_arm("real_only", 0, BudgetConfig(max_epochs=20, min_epochs=20, batch_size=16, lr=3e-3))
    test = make_split("test")
    accuracy = (predict_proba(result.model, test.images).argmax(1) == test.labels).mean()
    assert accuracy >= 0.7  # always guessing the majority class gets 0.44


@pytest.mark.parametrize("arm", ["real_only", "oversample", "classical"])
def test_same_seed_same_result(arm: str) -> None:
    budget = BudgetConfig(max_epochs=3, min_epochs=3, batch_size=16)
    a, b = train_arm(arm, 1, budget), train_arm(arm, 1, budget)
    test = make_split("test").images
    assert np.array_equal(predict_proba(a.model, test), predict_proba(b.model, test))
    assert a.history == b.history
    c = train_arm(arm, 2, budget)
    assert not np.array_equal(predict_proba(a.model, test), predict_proba(c.model, test))


@pytest.mark.parametrize("monitor", ["val_balanced_loss", "val_loss", "val_macro_f1"])
def test_early_stopping_restores_the_best_epoch(monitor: str) -> None:
    budget = BudgetConfig(max_epochs=12, min_epochs=1, patience=2, batch_size=16, lr=2e-2, monitor=monitor)
    result = train_arm("real_only", 0, budget)
    history = result.history
    assert result.epochs_run == len(history) <= 12
    values = [h[monitor] for h in history]
    best = (max if monitor == "val_macro_f1" else min)(values)
    assert history[result.best_epoch - 1][monitor] == best
    if result.epochs_run < 12:  # stopped early: patience epochs after the best
        assert result.epochs_run - result.best_epoch == 2
    val = make_split("val")
    restored = validation_scores(_logits(result.model, to_input(val.images)), torch.from_numpy(val.labels), 3)
    assert restored[monitor] == pytest.approx(history[result.best_epoch - 1][monitor], abs=1e-5)


def test_min_epochs_delays_early_stopping() -> None:
    budget = BudgetConfig(max_epochs=8, min_epochs=8, patience=1, batch_size=16)
    assert train_arm("real_only", 0, budget).epochs_run == 8


def test_class_weights_change_training() -> None:
    budget = BudgetConfig(max_epochs=2, min_epochs=2, batch_size=16)
    plain, weighted = train_arm("real_only", 0, budget), train_arm("class_weighted", 0, budget)
    assert plain.history[0]["train_loss"] != weighted.history[0]["train_loss"]
    assert dataclasses.asdict(budget)  # the same budget object serves every arm
