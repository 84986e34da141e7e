"""DVC stage ``train_gan``: train one class-conditional GAN on one ingested data set.

    python -m stages.train_gan --dataset mammography --model acgan [--params params.yaml]
    torchrun --nproc_per_node 2 -m stages.train_gan --dataset mammography --model acgan

Reads ``data/<dataset>/cache`` and the ``gan`` section of params.yaml; checkpoints go to
``<gan.work_dir>/<dataset>/<model>/`` (kept between runs, so ``resume: auto`` survives ``dvc repro``).
Writes ``models/<dataset>/<model>/`` (best.pt, last.pt, samples/, train_summary.json: everything about the
run), ``metrics/train_gan/<dataset>_<model>.json`` (the headline: steps, best FD, lowest diversity ratio,
images/s) and ``plots/train_gan/<dataset>_<model>.csv``.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from pipeline.config import dataset as dataset_config
from pipeline.config import load_params
from pipeline.gan.config import MODELS
from pipeline.gan.records import HISTORY_COLUMNS
from pipeline.gan.train import headline_metrics, train_gan
from pipeline.io import atomic_dir, write_csv_atomic, write_json_atomic
from stages._common import check_writable, exit_code, run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True, help="data set name (a key of params.yaml datasets)")
    ap.add_argument("--model", required=True, choices=MODELS)
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    ap.add_argument("--data-dir", help="ingested data set folder (default: data/<dataset>)")
    ap.add_argument("--run-dir", help="checkpoint folder (default: <gan.work_dir>/<dataset>/<model>)")
    ap.add_argument("--out-dir", help="output folder (default: models/<dataset>/<model>)")
    ap.add_argument("--metrics", help="headline metrics JSON (default: metrics/train_gan/<dataset>_<model>.json)")
    ap.add_argument("--plots", help="loss-curve CSV (default: plots/train_gan/<dataset>_<model>.csv)")
    args = ap.parse_args(argv)
    return exit_code(lambda: train(args))


def train(args: argparse.Namespace) -> int:
    name = f"{args.dataset}_{args.model}"
    params = load_params(args.params)
    cfg = params.gan
    if args.data_dir is None:
        dataset_config(params, args.dataset, args.params)  # a clear error for an unknown data set
    data_dir = Path(args.data_dir or Path("data") / args.dataset)
    run_dir = Path(args.run_dir or Path(cfg.work_dir) / args.dataset / args.model)
    out_dir = Path(args.out_dir or Path("models") / args.dataset / args.model)
    metrics_path = Path(args.metrics or Path("metrics/train_gan") / f"{name}.json")
    plots_path = Path(args.plots or Path("plots/train_gan") / f"{name}.csv")
    check_writable(run_dir / "last.pt", out_dir, metrics_path, plots_path)
    result = train_gan(cfg, args.model, data_dir, run_dir, args.dataset)
    if result is None:  # a DDP rank other than 0: rank 0 writes the outputs
        return 0
    with atomic_dir(out_dir) as out:
        shutil.copy2(result.best, out / "best.pt")
        shutil.copy2(result.last, out / "last.pt")
        (out / "samples").mkdir()
        for png in result.samples:
            shutil.copy2(png, out / "samples" / png.name)
        result.summary.write(out / "train_summary.json")
    write_json_atomic(metrics_path, headline_metrics(result.summary))
    write_csv_atomic(plots_path, result.history, HISTORY_COLUMNS, blank_nonfinite=True)
    return 0


if __name__ == "__main__":
    run(main)
