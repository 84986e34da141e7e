"""``medsynth``: the command-line tool for what users run outside DVC (installed by ``pip install -e .``).

    medsynth generate --checkpoint models:/mammography-acgan/latest --label malignant -n 100 --out DIR
    medsynth models                       # the generators train_gan registered in MLflow
    medsynth validate presets/mias.yaml   # check a params file before a long run
    medsynth preset herlev                # params.yaml = the defaults + presets/herlev.yaml
    medsynth report --dataset mammography --open

The stage commands (ingest, train-gan, generate, evaluate, score-review) run the stage scripts exactly as
``python -m stages.<name>`` does, with the same options (``medsynth <command> --help``), one-line errors and
exit code 2. The others (report, validate, preset, models, ui) are tools of their own, in this module.
"""
from __future__ import annotations

import argparse
import os
import runpy
import sys
import webbrowser
from pathlib import Path

# command -> (module run as ``python -m``, one line of help)
STAGES = {
    "ingest": ("stages.ingest", "read, patch, split and cache one data set (DVC stage ingest@<dataset>)"),
    "train-gan": ("stages.train_gan", "train a class-conditional GAN on an ingested data set and register its "
                                      "best generator in MLflow as <dataset>-<gan>"),
    "generate": ("stages.generate", "draw gated, filtered synthetic images from a checkpoint or a registered "
                                    "generator (models:/<dataset>-<gan>/<version>, @<alias>, /latest)"),
    "evaluate": ("stages.evaluate", "retrain the classifier per arm and seed, with and without synthetic images"),
    "score-review": ("stages.score_review", "score readers' answers to the blinded review page against its key"),
}

EXAMPLES = """examples:
  medsynth generate --checkpoint models/mammography/acgan/best.pt --label malignant -n 100 --out DIR
  medsynth generate --checkpoint models:/mammography-acgan@champion --label malignant -n 100 --out DIR
  medsynth models --set-alias champion models:/mammography-acgan/3
  medsynth score-review --dataset mammography --answers reader1.csv reader2.csv
  medsynth report --dataset mammography --open
  medsynth validate params.yaml presets/*.yaml
  medsynth preset herlev && dvc exp run -n herlev

Each command explains its options: medsynth <command> --help. Inside the DVC pipeline use dvc repro."""


def run_module(module: str, prog: str, argv: list[str]) -> int:
    """Run ``module`` as ``python -m module argv...`` would (its __main__ block: logging, one-line errors, exit
    code), its help naming the program ``medsynth <prog>``; returns the exit code."""
    saved = sys.argv
    sys.argv = [f"medsynth {prog}", *argv]  # argparse names the program after argv[0]
    try:
        runpy.run_module(module, run_name="__main__")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    folder = Path(args.root) / "reports" / args.dataset
    if args.build:
        code = run_module("stages.report", "report --build",
                          ["--dataset", args.dataset, "--params", args.params, "--root", args.root])
        if code:
            return code
    index, review = folder / "index.html", folder / "review.html"
    if not index.is_file():
        from pipeline.errors import DataError

        raise DataError(f"{index}: not found; build it with `dvc repro report@{args.dataset}` or "
                        f"`medsynth report --dataset {args.dataset} --build`")
    print(f"report: {index}")
    if review.is_file():
        print(f"review page: {review} (answers: medsynth score-review --dataset {args.dataset} --answers FILE.csv)")
    if args.open and not webbrowser.open(index.resolve().as_uri()):
        print("no web browser found here; open the report path above", file=sys.stderr)
    return 0


def cmd_preset(args: argparse.Namespace) -> int:
    """Write params.yaml from a preset overlay (the defaults with the preset's keys written over them)."""
    from pipeline.config import preset_path, render_preset
    from pipeline.io import write_bytes_atomic

    source = preset_path(args.preset)
    write_bytes_atomic(args.out, render_preset(source).encode())
    print(f"{args.out}: written from {source}; run: dvc repro (or dvc exp run -n NAME); "
          "back to the default run: git checkout params.yaml")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Load every params file with the stages' own checks; notes for data set folders that do not exist here."""
    from pipeline.config import SECTIONS, load_params
    from pipeline.errors import PipelineError

    failed = 0
    for path in args.files:
        try:
            params = load_params(path)
        except PipelineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        sections = list(SECTIONS)
        print(f"{path}: valid; data sets: {', '.join(params.datasets)}; sections: {', '.join(sections)}")
        for name, ds in params.datasets.items():
            for key, source in (("source", ds.source), ("external_test", ds.external_test)):
                for field in ("root", "labels_csv"):
                    where = getattr(source, field, None) if source else None
                    if where and not Path(where).exists():
                        print(f"  note: datasets.{name}.{key}.{field}: {where} does not exist here (yet); "
                              "ingest will stop unless a stage makes it first (phantoms) or you fix the path")
    return 2 if failed else 0


def cmd_models(args: argparse.Namespace) -> int:
    """List registered models (versions, aliases, tags); ``--set-alias`` points an alias at a version."""
    from pipeline.generate.registry import registry_client, resolve
    from pipeline.tracking import tracking_uri, with_retry

    client = registry_client("medsynth models")
    if args.set_alias:
        alias, uri = args.set_alias
        mv = resolve(uri)
        with_retry(client.set_registered_model_alias, mv.name, alias, mv.version)
        print(f"models:/{mv.name}@{alias} -> version {mv.version}")
        return 0
    registered = [m for m in with_retry(client.search_registered_models) if not args.name or m.name == args.name]
    if not registered:
        print(f"no registered models{' named ' + args.name if args.name else ''} in {tracking_uri()}; the train_gan "
              "stage registers its best generator when tracking is on")
        return 0
    for model in sorted(registered, key=lambda m: m.name):
        aliases: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        print(model.name)
        versions = with_retry(client.search_model_versions, f"name = '{model.name}'")
        for mv in sorted(versions, key=lambda v: int(v.version)):
            tags = mv.tags or {}
            shown = [f"{k}={tags[k]}" for k in ("classes", "resolution_px", "best_quality_fd", "best_epoch")
                     if k in tags]
            at = "".join(f" @{a}" for a in sorted(aliases.get(str(mv.version), [])))
            print(f"  models:/{model.name}/{mv.version}{at}  {'  '.join(shown)}  run {mv.run_id}")
    return 0


def option_value(argv: list[str], names: tuple[str, ...], default: str) -> str:
    """The value of ``--opt V`` or ``--opt=V`` in a list of pass-through options (the last one wins)."""
    value = default
    for i, arg in enumerate(argv):
        if arg in names and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.split("=", 1)[0] in names and "=" in arg:
            value = arg.split("=", 1)[1]
    return value


def cmd_ui(args: argparse.Namespace) -> int:
    """``mlflow ui`` on the pipeline's store (the sqlite file this checkout's stages write to); prints the
    address of each data set's runs table first."""
    from pipeline.tracking import runs_table_urls, tracking_uri

    uri = tracking_uri()
    host = option_value(args.mlflow_args, ("--host", "-h"), "127.0.0.1")
    port = option_value(args.mlflow_args, ("--port", "-p"), "5000")
    urls = runs_table_urls(uri, f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}")
    print("runs tables (open one once the server is up):" if urls else
          "no pipeline experiment in this store yet: run `dvc repro` first", file=sys.stderr)
    for line in urls:
        print(f"  {line}", file=sys.stderr)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, *args.mlflow_args]
    print(" ".join(command[1:]), file=sys.stderr)
    os.execv(command[0], command)
    return 0  # not reached


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medsynth", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Class-conditional GAN augmentation of small medical image sets: the "
                                            "commands users run outside the DVC pipeline.", epilog=EXAMPLES)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, summary) in STAGES.items():  # their options are the stage scripts' own (main() passes them on)
        sub.add_parser(name, help=summary, add_help=False)

    report = sub.add_parser("report", help="print the path of a data set's clinician report and review page; "
                                           "--open shows it in a browser, --build makes it first",
                            description="Print (and --open) reports/<dataset>/index.html and review.html.")
    report.add_argument("--dataset", required=True, help="a key of the datasets section")
    report.add_argument("--root", default=".", help="folder holding reports/ (default: .)")
    report.add_argument("--open", action="store_true", help="open the report in the default web browser")
    report.add_argument("--build", action="store_true", help="build the report first (as the report@<dataset> stage)")
    report.add_argument("--params", default="params.yaml", help="params file for --build (default: params.yaml)")
    report.set_defaults(func=cmd_report)

    validate = sub.add_parser("validate", help="check params files as the stages would (unknown keys, types, "
                                               "ranges, duplicate keys) without running anything",
                              description="Check params files; exit 0 when all are valid, 2 otherwise (one line each).")
    validate.add_argument("files", nargs="*", default=["params.yaml"], help="params files (default: params.yaml)")
    validate.set_defaults(func=cmd_validate)

    preset = sub.add_parser("preset", help="write params.yaml from a preset overlay in presets/ (the defaults "
                                           "with the preset's keys written over them)")
    preset.add_argument("preset", help="a name in presets/ (mias, herlev, cric, gpu) or a YAML path")
    preset.add_argument("--out", default="params.yaml", help="file to write (default: params.yaml)")
    preset.set_defaults(func=cmd_preset)

    models = sub.add_parser("models", help="list the generators registered in MLflow (versions, aliases, quality "
                                           "tags); --set-alias points an alias at a version",
                            description="Registered generators in the MLflow store (MLFLOW_TRACKING_URI, else "
                                        "mlflow.db of this checkout). Use one with medsynth generate --checkpoint "
                                        "models:/<name>/<version> or models:/<name>@<alias>.")
    models.add_argument("name", nargs="?", help="only this registered model (e.g. mammography-acgan)")
    models.add_argument("--set-alias", nargs=2, metavar=("ALIAS", "URI"),
                        help="point ALIAS (e.g. champion) at the version URI names (e.g. models:/mammography-acgan/3)")
    models.set_defaults(func=cmd_models)

    ui = sub.add_parser("ui", help="start mlflow ui on the pipeline's tracking store",
                        description="mlflow ui --backend-store-uri <the pipeline's store>; other options go to mlflow "
                                    "ui (e.g. --port 5001).")
    ui.set_defaults(func=cmd_ui)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in STAGES:
        return run_module(STAGES[argv[0]][0], argv[0], argv[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "ui":  # only ui passes options on (to mlflow ui)
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.mlflow_args = extra
    from stages._common import error_line

    try:
        return args.func(args)
    except Exception as exc:  # bad input, missing store or report: one line, exit 2 (as the stages)
        line = error_line(exc)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
