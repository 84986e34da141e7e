"""DVC stage ``generate@<dataset>-<gan>``: minority-class synthetic images, gated, filtered and measured.

    python -m stages.generate --dataset mammography --gan acgan [--params params.yaml]
    python -m stages.generate --checkpoint models/mammography/acgan/best.pt --label malignant -n 100 --out DIR
    python -m stages.generate --checkpoint models:/mammography-acgan/3 --label malignant -n 100 --out DIR

The first form (DVC) reads ``models/<dataset>/<gan>/best.pt`` and ``data/<dataset>``, tops up the
classes ``generate.target`` asks for and writes ``data/synthetic/<dataset>/<gan>/`` (with details.json: every
count, threshold, quality value and timing) and ``metrics/generate/<dataset>_<gan>.json`` (the headline:
kept/target per class, FD and coverage beside their references). The second makes ``-n`` kept images of each
``--label`` class with any checkpoint, or any generator the train_gan stage registered in MLflow
(``models:/<dataset>-<gan>/<version>``, ``@<alias>`` or ``/latest``; data set and GAN are read from it),
and writes DIR, with DIR/details.json (and the headline only where --metrics says). The rest of the settings
come from the ``generate`` section of --params.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.config import load_params
from pipeline.io import write_json_atomic
from pipeline.errors import ConfigError
from pipeline.generate.config import GenerateConfig
from pipeline.generate.run import generate_synthetic, headline_metrics, log_to_mlflow, write_outputs
from pipeline.generate.registry import load_generator_source
from pipeline.tracking import find_run, flatten, start_run, tracking_enabled
from stages._common import check_writable, parser, run


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--dataset", help="data set name (default: the one the checkpoint was trained on)")
    p.add_argument("--gan", choices=("cdcgan", "acgan"), help="GAN (default: the checkpoint's)")
    p.add_argument("--checkpoint", help="generator checkpoint file, or a registered generator: "
                                        "models:/<dataset>-<gan>/<version>, models:/<name>@<alias>, "
                                        "models:/<name>/latest (default: models/<dataset>/<gan>/best.pt)")
    p.add_argument("--label", action="append", help="class to generate (repeat for several); needs -n")
    p.add_argument("-n", "--count", type=int, help="kept images per --label class")
    p.add_argument("--out", help="output folder (default: data/synthetic/<dataset>/<gan>)")
    p.add_argument("--data-dir", help="ingested data set folder (default: data/<dataset>)")
    p.add_argument("--metrics", help="headline metrics JSON (default: metrics/generate/<dataset>_<gan>.json; "
                                     "with --out: none); everything else is in DIR/details.json")
    p.add_argument("--seed", type=int, help="overrides generate.seed")
    args = p.parse_args(argv)

    if bool(args.label) != (args.count is not None):
        raise ConfigError("--label and -n go together: e.g. --label malignant -n 100")
    if args.count is not None and args.count < 1:
        raise ConfigError(f"-n {args.count}: give a positive number of images")
    if not args.checkpoint and not (args.dataset and args.gan):
        raise ConfigError("give --dataset and --gan (DVC stage) or --checkpoint FILE|models:/<name>/<version>")
    params = load_params(args.params)
    cfg: GenerateConfig = params.generate
    if args.seed is not None:
        cfg.seed = args.seed
    dataset, gan = args.dataset, args.gan
    source = args.checkpoint or Path("models") / dataset / gan / "best.pt"
    generator = load_generator_source(source, cfg.prefer_ema, gan, dataset)  # missing or foreign: one line
    dataset, gan = dataset or generator.dataset, gan or generator.model
    data_dir = Path(args.data_dir or Path("data") / dataset)
    out = Path(args.out or Path("data/synthetic") / dataset / gan)
    metrics_path = Path(args.metrics) if args.metrics else None
    if metrics_path is None and not args.out:
        metrics_path = Path("metrics/generate") / f"{dataset}_{gan}.json"
    counts = {label: args.count for label in args.label} if args.label else None
    check_writable(out, *([metrics_path] if metrics_path else []))

    # A child of the train_gan run that made the checkpoint (its id is in the checkpoint), else of the latest
    # train_gan run of this data set and GAN, else a run of its own.
    parent = find_run("train_gan", dataset, gan, generator.mlflow_run_id) if tracking_enabled(cfg.tracking) else None
    with start_run("generate", dataset, gan, enabled=cfg.tracking, params=flatten(cfg, "generate"),
                   parent_run_id=parent, tags={"checkpoint": generator.label}) as tracker:
        result = generate_synthetic(cfg, generator, data_dir, dataset, gan, counts)
        write_outputs(result, out, "details.json")
        if metrics_path:
            write_json_atomic(metrics_path, headline_metrics(result.metrics))
        log_to_mlflow(tracker, result, out)
    t = result.metrics.totals
    print(f"generate {dataset}/{gan}: {t['kept']}/{t['target']} kept of {t['generated']} generated "
          f"({t['memorised']} memorised, {t['unrealistic']} unrealistic, {t['low_confidence']} low confidence, "
          f"shortfall {t['shortfall']}) -> {out}")


if __name__ == "__main__":
    run(main)
