"""DVC stage ``evaluate@<dataset>``: retrain the classifier per arm and seed, compare the arms on the real test split.

Usage: python -m stages.evaluate --dataset mammography [--params params.yaml]
       [--data-dir data/<dataset>] [--synthetic-dir data/synthetic/<dataset>] [--models-dir models/<dataset>]
       [--arms real_only,oversample]

Reads the ``evaluate`` section (pipeline/classify/config.py), ``data/<dataset>/``, the synthetic manifests
``data/synthetic/<dataset>/<gan>/manifest.csv`` of the GAN arms and, for the semi-supervised arm
``acgan_discriminator``, ``models/<dataset>/acgan/best.pt``. Writes ``results/<dataset>/`` (per-arm
prediction CSVs, learning curves, confusion PNGs, summary.json/.md/.csv, arms.png, details.json: which network
ran, the selection rule, every arm's scores and gains), ``metrics/evaluate/<dataset>.json`` (the headline) and
one MLflow parent run with a child per arm and seed.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from pipeline.classify.config import EvaluateConfig
from pipeline.classify.evaluate import evaluate_dataset
from pipeline.config import dataset as dataset_config
from pipeline.config import load_params
from stages._common import check_writable, parser, run


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True, help="a key of the datasets section")
    p.add_argument("--data-dir", default=None, help="ingested data set (default data/<dataset>)")
    p.add_argument("--synthetic-dir", default=None, help="synthetic manifests (default data/synthetic/<dataset>)")
    p.add_argument("--models-dir", default=None, help="trained GANs, <gan>/best.pt (default models/<dataset>)")
    p.add_argument("--arms", default=None, help="comma-separated arms instead of evaluate.arms (quick checks)")
    p.add_argument("--out", default=None, help="output folder (default results/<dataset>)")
    p.add_argument("--metrics", default=None, help="headline metrics JSON (default metrics/evaluate/<dataset>.json)")
    args = p.parse_args()
    params = load_params(args.params)
    if args.data_dir is None:
        dataset_config(params, args.dataset, args.params)  # a clear error for an unknown data set
    cfg: EvaluateConfig = params.evaluate
    if args.arms:
        cfg = dataclasses.replace(cfg, arms=[a.strip() for a in args.arms.split(",") if a.strip()])
        cfg.validate("evaluate", "--arms")
    out_dir = Path(args.out or f"results/{args.dataset}")
    metrics_path = Path(args.metrics or f"metrics/evaluate/{args.dataset}.json")
    check_writable(out_dir, metrics_path)
    metrics = evaluate_dataset(
        args.dataset, cfg,
        data_dir=Path(args.data_dir or f"data/{args.dataset}"),
        synthetic_dir=Path(args.synthetic_dir or f"data/synthetic/{args.dataset}"),
        out_dir=out_dir, metrics_path=metrics_path, models_dir=Path(args.models_dir or f"models/{args.dataset}"))
    print(f"evaluate {args.dataset} ({metrics.classifier_detail}): {len(cfg.arms)} arms x {metrics.n_seeds} "
          f"seeds in {metrics.time_s} s "
          f"(best non-GAN arm: {metrics.best_non_gan}); macro-F1 gains vs real_only: "
          + ", ".join(f"{arm} {g['macro_f1']['diff']:+.3f} ({g['macro_f1']['label']})"
                      for arm, g in metrics.gains_vs_real_only.items()))


if __name__ == "__main__":
    run(main)
