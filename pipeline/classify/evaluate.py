"""Evaluate every arm x seed on one data set, compare them, and write results, metrics and MLflow runs.

:func:`evaluate_dataset` is the whole stage: load the real splits and the synthetic manifests the arms
need, refuse any synthetic image outside the training split, train one classifier per (arm, seed) in
worker processes, score them on the real test split, compute intervals and gains (``stats.py``), and write

    <out_dir>/predictions/<arm>.csv   image_id, actual, predicted, arm, seed, p_<class>... (every seed)
    <out_dir>/confusion/<arm>.png     confusion matrix pooled over seeds (counts + normalised)
    <out_dir>/curves/<arm>-seed<s>.csv  learning curve: per epoch lr, train loss, validation loss and scores
                                      (only CSVs here: dvc.yaml declares this folder as data plots)
    <out_dir>/curve_images/<arm>.png  those curves for every seed, the selected epochs marked
    <out_dir>/summary.json            everything below, per run metrics and timings included (records.EvaluateSummary)
    <out_dir>/summary.md, summary.csv the arms table (means, intervals, gains)
    <out_dir>/arms.png                the arms side by side: headline metrics with their intervals
    <out_dir>/details.json            every arm's means, intervals and gains with labels, MLflow id, timing
                                      (records.EvaluateDetails; the report reads it and summary.json)
    <metrics_path>                    the headline for ``dvc metrics show`` (:func:`headline_metrics`)

MLflow: one parent run per data set and call (``evaluate-<dataset>``) with the headline metrics (the same names
as the metrics file) and the arms chart and table, one child per arm and seed (``<arm>-seed<seed>``) with the same
metric names in every child, so the UI's compare view lines them up.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Iterator

import numpy as np

from pipeline import tracking
from pipeline.classify.arms import ARMS, ArmContext, TrainSet, arm_gan
from pipeline.classify.config import EvaluateConfig
from pipeline.classify.metrics import HEADLINE, classification_report, normalise_rows
from pipeline.classify.plots import save_arms_png, save_confusion_png, save_learning_curves_png
from pipeline.classify.records import EvaluateDetails, EvaluateSummary, predictions_path
from pipeline.classify.stats import compare_arms
from pipeline.data.cache import SplitArrays, load_meta, load_split
from pipeline.data.synthetic import assert_real_only, is_synthetic_id, load_synthetic
from pipeline.errors import ConfigError, DataError
from pipeline.io import atomic_dir, json_safe, write_csv_atomic, write_json_atomic
from pipeline.names import DISCRIMINATOR_ARMS
from pipeline.progress import progress
from pipeline.runtime import available_cores

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------- guards
def check_real_only(data_dir: Path, splits: dict[str, SplitArrays], synthetic: dict[str, SplitArrays],
                    synthetic_dir: Path) -> None:
    """Refuse a synthetic image anywhere but in an arm's training set.

    The real cache must hold no ``syn_`` image (validation and test above all), no manifest image id may
    appear in a real split, and no kept synthetic image may be a pixel-exact copy of a validation or test
    image (which would catch ids renamed on the way).
    """
    for split, arrays in splits.items():
        assert_real_only(arrays, str(data_dir / "cache" / f"{split}.npz"))
    real_ids = {split: set(arrays.image_ids.astype(str)) for split, arrays in splits.items()}
    eval_hashes = {_pixel_hash(img): (split, i) for split in ("val", "test")
                   for i, img in zip(splits[split].image_ids, splits[split].images)}
    for gan, syn in synthetic.items():
        manifest = synthetic_dir / gan / "manifest.csv"
        for split, ids in real_ids.items():
            shared = sorted(ids & set(syn.image_ids.astype(str)))
            if shared:
                raise DataError(f"{manifest}: synthetic image {shared[0]} is also in the real {split} split "
                                f"({len(shared)} in all); synthetic images may only be added to training: "
                                "re-run ingest and generate")
        for syn_id, img in zip(syn.image_ids, syn.images):
            hit = eval_hashes.get(_pixel_hash(img))
            if hit:
                raise DataError(f"{manifest}: synthetic image {syn_id} is a pixel copy of real {hit[0]} image {hit[1]}; "
                                "validation and test must stay unseen: regenerate, or re-run ingest")


def _pixel_hash(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def check_train_set(train: TrainSet, eval_ids: set[str], arm: str) -> None:
    """An arm's training set holds no validation or test image, and its synthetic rows are marked synthetic."""
    leaked = sorted(set(train.image_ids.astype(str)) & eval_ids)
    if leaked:
        raise DataError(f"arm {arm}: training set holds {len(leaked)} validation/test image(s) (e.g. {leaked[0]}); "
                        "an arm may only use the training split")
    tail = train.image_ids[len(train.image_ids) - train.n_synthetic:] if train.n_synthetic else []
    if not all(is_synthetic_id(i) for i in tail):
        raise DataError(f"arm {arm}: added images that are not marked synthetic (syn_ file name); regenerate")


def ids_hash(*id_lists: np.ndarray) -> str:
    """Short hash of id lists (order-free within a list); equal hashes = the same splits."""
    h = hashlib.sha256()
    for ids in id_lists:
        h.update("\n".join(sorted(map(str, ids))).encode() + b"\0")
    return h.hexdigest()[:12]


def params_hash(cfg: EvaluateConfig) -> str:
    text = json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def resolve_minority(cfg: EvaluateConfig, dataset: str, classes: list[str], train_labels: np.ndarray) -> int:
    """The class named in ``evaluate.minority_class.<dataset>``, else the rarest class of the training split."""
    name = cfg.minority_class.get(dataset)
    if name:
        if name not in classes:
            raise ConfigError(f"params.yaml: evaluate.minority_class.{dataset}: {name!r} is not one of {classes}")
        return classes.index(name)
    counts = np.bincount(train_labels, minlength=len(classes))
    return int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))


def load_synthetic_sets(cfg: EvaluateConfig, synthetic_dir: Path, meta: dict) -> dict[str, SplitArrays]:
    """Kept synthetic images of every GAN some arm needs; a missing manifest stops with the fix."""
    out = {}
    for arm in cfg.arms:
        gan = arm_gan(arm, cfg)
        if gan is None or gan in out:
            continue
        manifest = synthetic_dir / gan / "manifest.csv"
        if not manifest.is_file():
            raise DataError(f"{manifest}: not found, arm {arm!r} needs it; run the generate stage "
                            f"(dvc repro generate) or remove {arm!r} from evaluate.arms in params.yaml")
        out[gan] = load_synthetic(manifest, meta["classes"], meta["channels"], meta["resolution_px"])
        if len(out[gan]) == 0:
            log.warning("%s: no kept synthetic image; arm %s trains on the real images only", manifest, arm)
    return out


# ------------------------------------------------------------------------------------ the jobs
@dataclass
class RunOutput:
    """One (arm, seed): test probabilities and how the training went."""

    arm: str
    seed: int
    proba: np.ndarray  # (N_test, K)
    best_epoch: int
    epochs_run: int
    train_time_s: float  # wall clock
    train_cpu_s: float  # CPU time of the training process (what a busy machine does not inflate)
    n_train: int
    n_synthetic: int
    train_ids_hash: str
    num_threads: int
    history: list[dict]


_WORKER: dict = {}  # the shared inputs of the jobs, set once per process by _init_worker


def _init_worker(state: dict, num_threads: int) -> None:
    import torch

    torch.set_num_threads(num_threads)
    _WORKER.clear()
    _WORKER.update(state, num_threads=num_threads)


def _run_job(arm: str, seed: int) -> RunOutput:
    from pipeline.classify.train import predict_proba, train_classifier

    s = _WORKER
    cfg: EvaluateConfig = s["cfg"]
    ctx = ArmContext(n_classes=s["n_classes"], channels=s["train"].images.shape[1], seed=seed,
                     classical=cfg.classical, synthetic=s["synthetic"],
                     synthetic_classical_gan=cfg.synthetic_classical_gan, classes=s.get("classes"),
                     acgan_checkpoint=s.get("acgan_checkpoint"))
    train_set = ARMS[arm](s["train"], ctx)
    check_train_set(train_set, s["eval_ids"], arm)
    cpu_start = time.process_time()
    result = train_classifier(train_set, s["val"], s["n_classes"], cfg.classifier, cfg.budget, seed)
    return RunOutput(arm=arm, seed=seed, proba=predict_proba(result.model, s["test"].images),
                     best_epoch=result.best_epoch, epochs_run=result.epochs_run,
                     train_time_s=round(result.train_time_s, 3),
                     train_cpu_s=round(time.process_time() - cpu_start, 3), n_train=len(train_set.labels),
                     n_synthetic=train_set.n_synthetic, train_ids_hash=ids_hash(train_set.image_ids),
                     num_threads=s["num_threads"], history=result.history)


def worker_plan(cfg: EvaluateConfig, n_jobs: int) -> tuple[int, int]:
    """(processes, torch threads each): one single-threaded process per core by default; small CNNs use one
    core far better than two threads do, and the jobs are independent."""
    cores = available_cores()
    workers = max(1, min(cfg.workers or cores, n_jobs))
    return workers, cfg.num_threads or max(1, cores // workers)


def run_jobs(jobs: list[tuple[str, int]], state: dict, workers: int, num_threads: int) -> Iterator[RunOutput]:
    """Yield each job's output as it finishes; in this process when ``workers`` is 1, else in spawned ones."""
    if workers <= 1:
        _init_worker(state, num_threads)
        for arm, seed in jobs:
            yield _run_job(arm, seed)
        return
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                               initargs=(state, num_threads))
    try:
        futures = [pool.submit(_run_job, arm, seed) for arm, seed in jobs]
        for future in as_completed(futures):
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------------------- outputs
def prediction_rows(run: RunOutput, test: SplitArrays, classes: list[str]) -> list[dict]:
    pred = run.proba.argmax(axis=1)
    return [{"image_id": str(i), "actual": classes[a], "predicted": classes[p], "arm": run.arm, "seed": run.seed,
             **{f"p_{c}": round(float(v), 5) for c, v in zip(classes, probs)}}
            for i, a, p, probs in zip(test.image_ids, test.labels, pred, run.proba)]


def _fmt(iv: dict) -> str:
    return f"{iv['estimate']:.3f} [{iv['low']:.3f}, {iv['high']:.3f}]"


def summary_table(comparison: dict, arms: list[str]) -> tuple[list[dict], str]:
    """Rows for summary.csv and the markdown table of summary.md."""
    gains_ro = comparison["gains"]["real_only"]["arms"]
    gains_bn = comparison["gains"].get("best_non_gan", {}).get("arms", {})
    rows = []
    for arm in arms:
        a = comparison["arms"][arm]
        row = {"arm": arm}
        for m in HEADLINE:
            row.update({f"{m}_mean": a[m]["estimate"], f"{m}_low": a[m]["low"], f"{m}_high": a[m]["high"]})
        for name, gains in (("vs_real_only", gains_ro), ("vs_best_non_gan", gains_bn)):
            g = gains.get(arm, {}).get("macro_f1")
            row.update({f"macro_f1_gain_{name}": g["estimate"] if g else "", f"macro_f1_gain_{name}_low": g["low"] if g else "",
                        f"macro_f1_gain_{name}_high": g["high"] if g else "", f"macro_f1_gain_{name}_label": g["label"] if g else ""})
        rows.append(row)
    level = int(round(100 * comparison["level"]))
    head = ("| arm | macro-F1 | balanced acc. | minority recall | AUC (macro OvR) | macro-F1 gain vs real_only | "
            f"macro-F1 gain vs best non-GAN ({comparison['best_non_gan']}) |")
    lines = [f"Mean over seeds [{level} % two-way bootstrap interval over seeds and test images]", "", head,
             "|" + "---|" * 7]
    for arm in arms:
        a = comparison["arms"][arm]
        cells = [arm] + [_fmt(a[m]) for m in HEADLINE]
        for gains in (gains_ro, gains_bn):
            g = gains.get(arm, {}).get("macro_f1")
            cells.append(f"{g['estimate']:+.3f} [{g['low']:+.3f}, {g['high']:+.3f}] **{g['label']}**" if g else "reference")
        lines.append("| " + " | ".join(cells) + " |")
    return rows, "\n".join(lines) + "\n"


def evaluate_details(comparison: dict, parent_run_id: str | None, **extra) -> EvaluateDetails:
    """The details: each arm's mean and interval, the gains with labels, the MLflow parent run, and ``extra``
    (the other fields of :class:`EvaluateDetails`)."""
    def short(iv: dict) -> dict:
        return {"mean": iv["estimate"], "low": iv["low"], "high": iv["high"]}

    out = {"mlflow_parent_run_id": parent_run_id or "", **extra,
           "arms": {arm: {m: short(a[m]) for m in HEADLINE} for arm, a in comparison["arms"].items()}}
    for ref_name, block in comparison["gains"].items():
        out[f"gains_vs_{ref_name}"] = {arm: {m: {"diff": g[m]["estimate"], "low": g[m]["low"], "high": g[m]["high"],
                                                 "label": g[m]["label"]} for m in HEADLINE}
                                       for arm, g in block["arms"].items()}
    return EvaluateDetails(**json_safe(out))


# The arm metrics of the headline; macro-F1 keeps its interval there (the others' are in details.json).
HEADLINE_ARM = ("macro_f1", "balanced_accuracy", "minority_recall")


def uses_gan(arm: str, cfg: EvaluateConfig) -> bool:
    """An arm that adds a GAN's images or fine-tunes its discriminator: the arms whose gains the study is about."""
    return arm_gan(arm, cfg) is not None or arm in DISCRIMINATOR_ARMS


def headline_metrics(details: EvaluateDetails, gan_arms: list[str]) -> dict:
    """The metrics file of ``dvc metrics show`` / ``dvc exp show``: a few columns per arm.

    Per arm the means of :data:`HEADLINE_ARM` and macro-F1's interval; per arm that uses a GAN (``gan_arms``)
    its macro-F1 gain against real_only and against the best non-GAN arm.
    """
    gains = {"real_only": details.gains_vs_real_only, "best_non_gan": details.gains_vs_best_non_gan}
    out: dict = {"best_non_gan": details.best_non_gan}
    for arm, a in details.arms.items():
        row = {m: a[m]["mean"] for m in HEADLINE_ARM}
        row.update(macro_f1_low=a["macro_f1"]["low"], macro_f1_high=a["macro_f1"]["high"])
        if arm in gan_arms:
            for ref in ("real_only", "best_non_gan"):
                row[f"gain_vs_{ref}"] = gains[ref][arm]["macro_f1"]["diff"]
        out[arm] = row
    return out


def _log_child(parent: tracking.Tracker, run: RunOutput, report: dict, counts: np.ndarray, classes: list[str],
               tags: dict, params: dict, dataset: str) -> None:
    with tracking.start_child_run(parent, f"{run.arm}-seed{run.seed}", params=params,
                                  tags={**tags, "arm": run.arm, "seed": run.seed,
                                        "train_ids_hash": run.train_ids_hash}) as child:
        if not child.enabled:
            return
        child.log_metrics({**report, "best_epoch": run.best_epoch, "epochs_run": run.epochs_run,
                           "train_time_s": run.train_time_s, "train_cpu_s": run.train_cpu_s, "n_train": run.n_train,
                           "n_synthetic": run.n_synthetic})
        tracking.log_metric_series(child, run.history, "epoch", prefix="curve.")
        with tempfile.TemporaryDirectory() as tmp:
            png = save_confusion_png(counts, classes, f"{dataset} {run.arm} seed {run.seed} (real test split)",
                                     Path(tmp) / "confusion_matrix.png")
            (Path(tmp) / "confusion_matrix.json").write_text(json.dumps(
                {"classes": classes, "rows": "actual", "columns": "predicted", "counts": counts.tolist(),
                 "normalised": np.round(normalise_rows(counts), 4).tolist(),
                 "metrics": report}, indent=1))
            child.log_artifact(png)
            child.log_artifact(Path(tmp) / "confusion_matrix.json")


def write_results(out_dir: str | Path, runs: dict[tuple[str, int], RunOutput], test: SplitArrays,
                  classes: list[str], cfg: EvaluateConfig, dataset: str, table: str, rows: list[dict],
                  summary: EvaluateSummary, minority: int, details: EvaluateDetails) -> None:
    """``out_dir`` all at once (atomic): predictions and pooled confusion matrix per arm, the summaries."""
    from sklearn.metrics import confusion_matrix

    labels = list(range(len(classes)))
    with atomic_dir(out_dir) as out:
        for arm in cfg.arms:
            write_csv_atomic(predictions_path(out, arm),
                      [r for s in cfg.seeds for r in prediction_rows(runs[(arm, s)], test, classes)])
            for s in cfg.seeds:
                write_csv_atomic(out / "curves" / f"{arm}-seed{s}.csv", runs[(arm, s)].history)
            save_learning_curves_png({s: runs[(arm, s)].history for s in cfg.seeds}, cfg.budget.monitor,
                                     f"{dataset} {arm}: {cfg.classifier.network}, real validation split",
                                     out / "curve_images" / f"{arm}.png")
            pooled = sum(confusion_matrix(test.labels, runs[(arm, s)].proba.argmax(axis=1), labels=labels)
                         for s in cfg.seeds)
            save_confusion_png(pooled, classes, f"{dataset} {arm}: real test split, pooled over {len(cfg.seeds)} seeds",
                               out / "confusion" / f"{arm}.png")
        write_csv_atomic(out / "summary.csv", rows)
        (out / "summary.md").write_text(f"# evaluate {dataset}\n\n{table}\nMinority class: {classes[minority]}. "
                                        f"Seeds: {cfg.seeds}. Labels: gain = interval above 0, loss = below 0, "
                                        f"no gain = it contains 0.\n\nNetwork: {cfg.classifier.describe()}. "
                                        f"Checkpoint: {selection_rule(cfg)}. Learning curves: curves/ (CSV), "
                                        "curve_images/ (PNG).\n")
        summary.write(out / "summary.json")
        details.write(out / "details.json")
        save_arms_png(details.arms, HEADLINE_ARM, f"{dataset}: arms on the real test split, "
                      f"{len(cfg.seeds)} seeds ({summary.level:.0%} intervals)", out / "arms.png")


def log_parent_summary(parent: tracking.Tracker, headline: dict, timing: dict, out_dir: Path) -> None:
    """The parent run gets the headline (the metrics file's numbers, same names), the timing, the arms chart and
    table at the top of its artifacts (the first thing the run page shows) and the whole results folder."""
    if not parent.enabled:
        return
    parent.log_metrics(tracking.flatten(headline, numbers_only=True))
    parent.log_metrics({k: v for k, v in timing.items() if k.startswith(("time_s", "train_"))})
    parent.set_tags({"best_non_gan": headline["best_non_gan"]})
    arms = [a for a, v in headline.items() if isinstance(v, dict)]
    parent.share_runs_view(tracking.ARMS_VIEW, "tags.stage = 'evaluate' and attributes.status = 'FINISHED'",
                           [f"{a}.macro_f1" for a in arms]
                           + [f"{a}.gain_vs_best_non_gan" for a in arms if "gain_vs_best_non_gan" in headline[a]])
    for name in ("arms.png", "summary.md", "summary.csv"):
        if (out_dir / name).is_file():
            parent.log_artifact(out_dir / name)
    for path in sorted(out_dir.rglob("*")):
        if path.is_file():
            parent.log_artifact(path, artifact_path=str(Path("results") / path.parent.relative_to(out_dir)))


# ------------------------------------------------------------------------------------ the stage
def selection_rule(cfg: EvaluateConfig) -> str:
    """The checkpoint-selection rule in words (summary and metrics)."""
    b = cfg.budget
    return (f"best {b.monitor} (mean over {b.monitor_window_epochs} epochs) on the real validation split, "
            f"{b.lr_schedule} lr {b.lr:g}, {b.min_epochs}-{b.max_epochs} epochs, patience {b.patience}"
            + (", bf16 autocast" if b.bf16 else ""))


def evaluate_dataset(dataset: str, cfg: EvaluateConfig, data_dir: str | Path, synthetic_dir: str | Path,
                     out_dir: str | Path, metrics_path: str | Path, models_dir: str | Path | None = None
                     ) -> EvaluateDetails:
    """Run every arm x seed of ``cfg`` on one ingested data set; returns the details (``<out_dir>/details.json``).

    ``models_dir`` holds the trained GANs (``<gan>/best.pt``); only the discriminator arms read it.
    """
    from sklearn.metrics import confusion_matrix

    start = time.perf_counter()
    data_dir, synthetic_dir = Path(data_dir), Path(synthetic_dir)
    meta = load_meta(data_dir)
    classes: list[str] = list(meta["classes"])
    splits = {s: load_split(data_dir, s) for s in ("train", "val", "test")}
    missing = [c for k, c in enumerate(classes) if not (splits["test"].labels == k).any()]
    if missing:
        raise DataError(f"{data_dir}/cache/test.npz: no test image of class {missing[0]!r}; its sensitivity is "
                        "undefined: re-split with a larger test_fraction or merge the class")
    synthetic = load_synthetic_sets(cfg, synthetic_dir, meta)
    acgan_checkpoint = Path(models_dir) / "acgan" / "best.pt" if models_dir is not None else None
    if any(a in DISCRIMINATOR_ARMS for a in cfg.arms) and (acgan_checkpoint is None or not acgan_checkpoint.is_file()):
        raise DataError(f"{acgan_checkpoint}: not found, arm 'acgan_discriminator' fine-tunes that ACGAN's "
                        "discriminator; run the train_gan stage (dvc repro train_gan) or remove the arm from "
                        "evaluate.arms in params.yaml")
    check_real_only(data_dir, splits, synthetic, synthetic_dir)
    minority = resolve_minority(cfg, dataset, classes, splits["train"].labels)
    split_hash = ids_hash(*(splits[s].image_ids for s in ("train", "val", "test")))
    jobs = [(arm, seed) for arm in cfg.arms for seed in cfg.seeds]
    workers, threads = worker_plan(cfg, len(jobs))
    state = {"cfg": cfg, "n_classes": len(classes), "train": splits["train"], "val": splits["val"],
             "test": splits["test"], "synthetic": synthetic, "classes": classes, "acgan_checkpoint": acgan_checkpoint,
             "eval_ids": set(splits["val"].image_ids.astype(str)) | set(splits["test"].image_ids.astype(str))}
    p_hash = params_hash(cfg)
    common_tags = {"dataset": dataset, "git_commit": tracking.git_commit(), "params_hash": p_hash, "split_hash": split_hash,
                   "seeds": ",".join(map(str, cfg.seeds)), "minority_class": classes[minority],
                   "classifier": cfg.classifier.network}
    log.info("evaluate %s: %d arms x %d seeds on %d train / %d val / %d test images, %d process(es) x %d thread(s); "
             "%s; %s", dataset, len(cfg.arms), len(cfg.seeds), *(len(splits[s]) for s in ("train", "val", "test")),
             workers, threads, cfg.classifier.describe(), selection_rule(cfg))
    if cfg.tracking_uri and not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["MLFLOW_TRACKING_URI"] = cfg.tracking_uri
    flat_params = {**tracking.flatten(cfg, "evaluate"), "dataset": dataset, "minority_class": classes[minority],
                   "n_train": len(splits["train"]), "n_val": len(splits["val"]), "n_test": len(splits["test"])}
    with tracking.start_run("evaluate", dataset, enabled=cfg.tracking, params=flat_params,
                            tags={**common_tags, "arms": ",".join(cfg.arms)}) as parent:
        runs: dict[tuple[str, int], RunOutput] = {}
        reports: dict[tuple[str, int], dict] = {}
        y_test = splits["test"].labels
        for run in progress(run_jobs(jobs, state, workers, threads), total=len(jobs), desc=f"evaluate {dataset}",
                            unit="fit"):
            report = classification_report(y_test, run.proba, classes, minority)
            counts = confusion_matrix(y_test, run.proba.argmax(axis=1), labels=list(range(len(classes))))
            runs[(run.arm, run.seed)], reports[(run.arm, run.seed)] = run, report
            log.info("%s seed %d: macro-F1 %.3f, minority recall %.2f; %d/%d epochs (best %d) in %.1f s (%.1f s CPU)",
                     run.arm, run.seed, report["macro_f1"], report["minority_recall"], run.epochs_run,
                     cfg.budget.max_epochs, run.best_epoch, run.train_time_s, run.train_cpu_s)
            child_params = {**tracking.flatten(cfg.budget, "budget"), **tracking.flatten(cfg.classifier, "classifier"),
                            "arm": run.arm, "seed": run.seed, "num_threads": run.num_threads}
            gan = arm_gan(run.arm, cfg) or ("acgan" if run.arm in DISCRIMINATOR_ARMS else "none")
            _log_child(parent, run, report, counts, classes, {**common_tags, "gan": gan},
                       child_params, dataset)

        proba = {arm: np.stack([runs[(arm, s)].proba for s in cfg.seeds]) for arm in cfg.arms}
        non_gan = [a for a in cfg.arms if not uses_gan(a, cfg)]
        mean_f1 = {a: np.mean([reports[(a, s)]["macro_f1"] for s in cfg.seeds]) for a in non_gan}
        best_non_gan = max(non_gan, key=lambda a: (mean_f1[a], -non_gan.index(a)))
        comparison = compare_arms(y_test, proba, minority, {"real_only": "real_only", "best_non_gan": best_non_gan},
                                  n_boot=cfg.stats.n_boot, level=cfg.stats.level, seed=cfg.stats.seed)
        comparison.update(level=cfg.stats.level, best_non_gan=best_non_gan)
        elapsed = round(time.perf_counter() - start, 1)
        timing = {"time_s": elapsed, "workers": workers, "threads": threads,
                  **{f"{k}_{stat}": round(float(fn([getattr(r, k) for r in runs.values()])), 2)
                     for k in ("train_time_s", "train_cpu_s") for stat, fn in (("mean", np.mean), ("max", np.max))}}
        info = {"dataset": dataset, "classes": classes, "minority_class": classes[minority], "seeds": cfg.seeds,
                "classifier": cfg.classifier.describe(), "selection": selection_rule(cfg),
                "arms": cfg.arms, "best_non_gan": best_non_gan, "n_seeds": len(cfg.seeds), "split_hash": split_hash,
                "params_hash": p_hash, "n_test": len(y_test),
                "n_synthetic": {gan: len(s) for gan, s in synthetic.items()}}
        rows, table = summary_table(comparison, cfg.arms)
        summary = EvaluateSummary(**json_safe({
            **info, "mlflow_parent_run_id": parent.run_id, "timing": timing,
            "method": "two-way percentile bootstrap over seeds and class-stratified test images; "
                      "see pipeline/classify/stats.py", **comparison,
            "runs": [{"arm": a, "seed": s, **reports[(a, s)],
                      **{k: v for k, v in dataclasses.asdict(runs[(a, s)]).items()
                         if k not in ("proba", "history", "arm", "seed")}}
                     for a in cfg.arms for s in cfg.seeds]}))
        details = evaluate_details(
            comparison, parent.run_id, n_seeds=len(cfg.seeds), minority_class=classes[minority],
            best_non_gan=best_non_gan, classifier=cfg.classifier.network,
            classifier_detail=cfg.classifier.describe(), selection=selection_rule(cfg),
            best_epoch_mean={a: float(np.mean([runs[(a, s)].best_epoch for s in cfg.seeds])) for a in cfg.arms},
            epochs_run_mean={a: float(np.mean([runs[(a, s)].epochs_run for s in cfg.seeds])) for a in cfg.arms},
            time_s=elapsed, train_time_s_mean=timing["train_time_s_mean"],
            train_cpu_s_mean=timing["train_cpu_s_mean"])
        write_results(out_dir, runs, splits["test"], classes, cfg, dataset, table, rows, summary, minority, details)
        headline = headline_metrics(details, [a for a in cfg.arms if a not in non_gan])
        write_json_atomic(metrics_path, headline)
        log_parent_summary(parent, headline, timing, Path(out_dir))
    return details
