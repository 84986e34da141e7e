"""Intervals, gains and paired tests for arms compared over the same seeds and the same test images.

The method (one, used for every interval in the outputs): a **two-way percentile bootstrap** over seeds
and test images ("pigeonhole" bootstrap for crossed designs, Owen 2007, Ann. Appl. Stat. 1(2)).

What varies when the study is repeated is (a) the training randomness (the seed: initial weights and batch
order) and (b) which patients end up in the test split. With 3 to 5 seeds, resampling seeds alone cannot
be honest: a percentile bootstrap of 3 values never leaves their [min, max] range, which covers the mean
only about 75 % of the time (1 - 2 * 0.5**3), and it ignores (b) entirely, although with 50 to 100 test
images and a handful of minority cases (b) is usually the larger source. So each replicate

1. resamples the test images with replacement *within each actual class* (class counts stay fixed, so
   every replicate has minority cases and sensitivity, specificity and AUC stay defined), the same
   image indices for every seed and every arm;
2. recomputes the metric of every seed on those images (``(S, B)`` values per arm);
3. resamples the S seeds with replacement (the same seed draws for every arm) and averages.

A gain is the paired difference arm - reference computed inside each replicate (same seeds, same
images), so what the two arms share cancels. The interval is the 2.5 and 97.5 percentiles of the
replicates. In a crossed design this counts the seed x image interaction twice, so it is conservative
(wider than nominal, about 97 to 99 % coverage in the simulations in tests/classify/test_stats.py), never
artificially narrow; with few seeds it is wide, as it should be. A gain is labelled ``gain`` only when
the whole interval is above 0, ``loss`` when it is entirely below 0, else ``no gain``.

The paired tests are reported beside the interval, not instead of it: the Wilcoxon signed-rank test over
the per-seed differences (with S seeds its smallest attainable two-sided p is 2 / 2**S: 0.25 for 3 seeds,
0.0625 for 5, so it cannot reject with fewer than 6 seeds) and an exact McNemar test on the predictions
of the same test images pooled over seeds (it treats the seeds' predictions of one image as independent,
so its p is optimistic; a supporting number only).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binomtest, wilcoxon

from pipeline.classify.metrics import HEADLINE, headline_batch


@dataclass
class Interval:
    estimate: float  # mean over seeds on the full test split
    low: float
    high: float
    level: float

    def as_dict(self, digits: int = 4) -> dict:
        return {k: (round(v, digits) if isinstance(v, float) and np.isfinite(v) else v) for k, v in asdict(self).items()}


def gain_label(low: float, high: float) -> str:
    """``gain`` when the interval is entirely above 0, ``loss`` when entirely below, else ``no gain``."""
    if low > 0:
        return "gain"
    if high < 0:
        return "loss"
    return "no gain"


def stratified_indices(y_true: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(B, N) resampled test-image indices: with replacement within each actual class."""
    idx = np.empty((n_boot, len(y_true)), dtype=np.int64)
    start = 0
    for k in np.unique(y_true):
        members = np.flatnonzero(y_true == k)
        idx[:, start:start + len(members)] = members[rng.integers(0, len(members), (n_boot, len(members)))]
        start += len(members)
    return idx


def bootstrap_interval(per_seed: np.ndarray, per_seed_resampled: np.ndarray | None = None, *,
                       level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the mean over seeds.

    Args:
        per_seed: (S,) the statistic of each seed on the full test split; the estimate is their mean.
        per_seed_resampled: (S, B) the statistic of each seed on B resampled test sets (column b uses the
            same images for every seed). Given, each replicate b averages S seeds drawn with replacement
            from column b (the two-way bootstrap of the module docstring); None resamples seeds only.
        level: coverage, e.g. 0.95.
        n_boot: replicates when ``per_seed_resampled`` is None.
        seed: of the seed draws; the same value gives the same draws for every arm (pairing).
    """
    per_seed = np.asarray(per_seed, dtype=float)
    values = per_seed[:, None] if per_seed_resampled is None else np.asarray(per_seed_resampled, dtype=float)
    n_seeds, n_rep = len(per_seed), (n_boot if per_seed_resampled is None else values.shape[1])
    seed_idx = np.random.default_rng([seed, 1]).integers(0, n_seeds, (n_rep, n_seeds))  # stream 1: seed draws
    column = np.zeros(n_rep, dtype=np.int64) if per_seed_resampled is None else np.arange(n_rep)
    replicates = values[seed_idx, column[:, None]].mean(axis=1)
    replicates = replicates[np.isfinite(replicates)]
    alpha = (1 - level) / 2
    if len(replicates) == 0:
        return Interval(float(np.mean(per_seed)), float("nan"), float("nan"), level)
    low, high = np.quantile(replicates, [alpha, 1 - alpha])
    return Interval(float(np.mean(per_seed)), float(low), float(high), level)


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p over per-seed differences (1.0 when they are all 0)."""
    d = np.asarray(differences, dtype=float)
    if np.allclose(d, 0):
        return 1.0
    return float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def mcnemar(correct_arm: np.ndarray, correct_ref: np.ndarray) -> dict:
    """Exact McNemar test on paired correctness (any shape, e.g. (S, N) pooled over seeds)."""
    b = int(np.sum(correct_arm & ~correct_ref))  # arm right, reference wrong
    c = int(np.sum(~correct_arm & correct_ref))
    p = float(binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0
    return {"arm_only_correct": b, "reference_only_correct": c, "p": p}


# -------------------------------------------------------------------------------- arms and gains
@dataclass
class ArmScores:
    """Headline metrics of one arm: per seed on the full test set and on the bootstrap test sets."""

    per_seed: dict[str, np.ndarray]  # metric -> (S,)
    resampled: dict[str, np.ndarray]  # metric -> (S, B)
    correct: np.ndarray  # bool (S, N)


def score_arm(y_true: np.ndarray, proba: np.ndarray, minority: int, image_idx: np.ndarray) -> ArmScores:
    """Score one arm's predictions ``proba`` (S, N, K) on the test set and on each resampled test set."""
    per_seed = {m: [] for m in HEADLINE}
    resampled = {m: [] for m in HEADLINE}
    for p in proba:
        full = headline_batch(y_true[None], p[None], minority)
        boot = headline_batch(y_true[image_idx], p[image_idx], minority)
        for m in HEADLINE:
            per_seed[m].append(full[m][0])
            resampled[m].append(boot[m])
    return ArmScores({m: np.array(v) for m, v in per_seed.items()}, {m: np.stack(v) for m, v in resampled.items()},
                     proba.argmax(axis=2) == y_true[None])


def compare_arms(y_true: np.ndarray, proba: dict[str, np.ndarray], minority: int, reference_arms: dict[str, str],
                 *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Intervals of every arm and paired gains against each reference.

    Args:
        y_true: int (N,) actual classes of the real test split.
        proba: arm -> (S, N, K) probabilities, seeds in the same order for every arm.
        minority: index of the minority class.
        reference_arms: reference name (e.g. ``real_only``, ``best_non_gan``) -> arm name.

    Returns:
        ``{"arms": {arm: {metric: interval}}, "gains": {reference: {arm: {metric: gain}, ...}}}`` where a
        gain is the interval of the difference plus ``label`` and ``wilcoxon_p``, and every arm's gains hold
        ``mcnemar`` (pooled correctness).
    """
    image_idx = stratified_indices(y_true, n_boot, np.random.default_rng([seed, 0]))  # stream 0: image draws
    scores = {arm: score_arm(y_true, p, minority, image_idx) for arm, p in proba.items()}
    out: dict = {"arms": {}, "gains": {}}
    for arm, s in scores.items():
        out["arms"][arm] = {m: bootstrap_interval(s.per_seed[m], s.resampled[m], level=level, seed=seed).as_dict()
                            for m in HEADLINE}
        out["arms"][arm]["per_seed"] = {m: [round(float(v), 4) for v in s.per_seed[m]] for m in HEADLINE}
    for ref_name, ref in reference_arms.items():
        r = scores[ref]
        gains = {}
        for arm, s in scores.items():
            if arm == ref:
                continue
            gains[arm] = {}
            for m in HEADLINE:
                diff = s.per_seed[m] - r.per_seed[m]
                interval = bootstrap_interval(diff, s.resampled[m] - r.resampled[m], level=level, seed=seed)
                gains[arm][m] = {**interval.as_dict(), "label": gain_label(interval.low, interval.high),
                                 "wilcoxon_p": round(wilcoxon_p(diff), 4)}
            gains[arm]["mcnemar"] = mcnemar(s.correct, r.correct)
        out["gains"][ref_name] = {"reference": ref, "arms": gains}
    return out
