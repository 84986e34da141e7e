"""GAN ablation at equal wall time: train one model under several variants on one ingested data set, score
each the way the generate stage would, and write a table with the grids beside it.

    python scripts/gan_ablation.py --data data/herlev --params presets/herlev.yaml --model cdcgan --minutes 8 \
        --variant case_study:@case_study --variant data_efficient:@data_efficient \
        --variant no_sn:@data_efficient,cdcgan.d_norm=batch --jobs 2 --out reports/ablation/herlev_cdcgan

A variant is ``name:[@recipe,]key=value,key=value``: ``@recipe`` starts from a named recipe of
``pipeline/gan/recipes.py``, keys are relative to the ``gan`` section (values parsed as YAML). Every
variant trains from scratch with the same seed for ``--minutes`` of training time (gan.train.max_minutes;
``--jobs`` variants at a time, one thread each, so two jobs use two cores), then ``--per-class`` fakes of
every class go through the copy gate, the realism filter and the confidence filter of params' ``generate``
section, and are measured against the real-vs-real references (pipeline/generate/score.py). The table
(``<out>/ablation.md`` and ``ablation.json``) gives steps reached, per-class Frechet distance, precision,
recall, coverage as ratios to their references, the lowest diversity ratio of the collapse watch, the
filter keep rate, and the grid of each variant. MLflow is off.
"""
from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import re
import shutil
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import build, load_params  # noqa: E402
from pipeline.gan.config import GanConfig  # noqa: E402
from pipeline.gan.recipes import RECIPES, apply_recipe  # noqa: E402
from pipeline.generate.score import BAR, score_checkpoint  # noqa: E402

TIMED = {"train.epochs": "100000", "train.checkpoint_every_epochs": "100000", "train.sample_every_epochs": "0",
         "watch.every_epochs": "0", "train.tracking": "false", "train.num_threads": "1"}


def with_overrides(section: dict, pairs: list[tuple[str, str]], where: str) -> GanConfig:
    """The ``gan`` section with recipes (``@name``) and ``a.b = value`` (parsed as YAML) set, built and
    checked like params.yaml."""
    section = copy.deepcopy(section)
    for dotted, raw in pairs:
        if dotted.startswith("@"):
            section = apply_recipe(section, dotted[1:])
            continue
        *parents, leaf = dotted.split(".")
        node = section
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = yaml.safe_load(raw)
    return build(GanConfig, section, "gan", where)


def parse_variant(text: str) -> tuple[str, list[tuple[str, str]]]:
    name, _, body = text.partition(":")
    # split at commas that start a new key= or @recipe, so values may hold commas ("color,translation")
    parts = [kv for kv in re.split(r",(?=[\w.]+=|@)", body) if kv]
    pairs = [(kv, "") if kv.startswith("@") else tuple(kv.split("=", 1)) for kv in parts]
    for key, _ in pairs:
        if key.startswith("@") and key[1:] not in RECIPES:
            raise SystemExit(f"--variant {name}: unknown recipe {key}; use one of @{', @'.join(RECIPES)}")
    return name, pairs


def train_one(args: tuple) -> dict:
    """One variant in its own process (one thread): returns its training summary and last grid."""
    cfg, model, data, run_dir = args
    from pipeline.gan.train import train_gan
    run_dir = Path(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    result = train_gan(cfg, model, data, run_dir)
    last = result.history[-1]
    return {"summary": result.summary.to_json(), "seconds": time.perf_counter() - t0, "grid": str(result.samples[-1]),
            "last_diversity": last.get("diversity_ratio"), "last_fd": last.get("quality_fd"),
            "best": str(result.best), "last": str(result.last)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="an ingested data folder (holds cache/ and meta.json)")
    p.add_argument("--params", default="params.yaml", help="params whose gan and generate sections are the base")
    p.add_argument("--model", default="cdcgan", choices=["cdcgan", "acgan"])
    p.add_argument("--minutes", type=float, default=8.0, help="training minutes per variant (equal wall time)")
    p.add_argument("--variant", action="append", required=True, help="name:[@recipe,]key=value,...")
    p.add_argument("--work-dir", default="runs/ablation",
                   help="where the variants' checkpoints go (ignored by git; the table and grids go to --out)")
    p.add_argument("--jobs", type=int, default=2, help="variants trained at a time, one thread each")
    p.add_argument("--per-class", type=int, default=200, help="fakes per class for the scores")
    p.add_argument("--out", default="reports/ablation")
    args = p.parse_args()

    raw = yaml.safe_load(Path(args.params).read_text()) or {}
    section = raw.get("gan", {})
    gen_cfg = load_params(args.params).generate
    common = [(k, v) for k, v in TIMED.items()] + [("train.max_minutes", str(args.minutes))]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = [parse_variant(v) for v in args.variant]
    jobs = [(with_overrides(section, common + pairs + [("watch.every_minutes", "0")],
                            f"{args.params} + --variant {name}"), args.model, args.data,
             str(Path(args.work_dir) / out.name / name)) for name, pairs in variants]
    print(f"{len(jobs)} variants x {args.minutes} min, {args.jobs} at a time", file=sys.stderr)
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        trained = pool.map(train_one, jobs, chunksize=1)
    rows = []
    for (name, pairs), tr in zip(variants, trained):
        shutil.copy2(tr["grid"], out / f"{name}.png")
        score = score_checkpoint(tr["last"], args.data, gen_cfg, args.per_class,
                                 tr["summary"]["final_diversity_ratio_per_class"])
        rows.append({"name": name, "overrides": ", ".join(k if k.startswith("@") else f"{k}={v}" for k, v in pairs),
                     "steps": tr["summary"]["steps"], "minutes": tr["summary"]["train_minutes"],
                     "precision": tr["summary"]["precision"], "watch_fd": tr["last_fd"], "score": score})
        print(f"{name}: {rows[-1]['steps']} steps, FD ratio {score['overall']['fd_ratio']}, keep "
              f"{score['overall']['keep_rate_total']:.2f}", file=sys.stderr)
    (out / "ablation.json").write_text(json.dumps(rows, indent=1))
    write_table(out / "ablation.md", args, rows)


def _f(x, spec=".2f") -> str:
    return "-" if x is None else format(x, spec)


def write_table(path: Path, args, rows: list[dict]) -> None:
    lines = [f"# GAN ablation at equal wall time: {args.model} on `{args.data}`, {args.minutes:g} training minutes "
             f"per variant ({args.jobs} at a time, one thread each)", "",
             f"Scores of the last generator (EMA where on) on {args.per_class} fakes per class, in the feature space of "
             "the generate stage's classifier, each as a ratio to the real-vs-real reference (real validation vs "
             f"real training images): FD lower is better (bar <= {BAR['fd_ratio_max']}x), precision (bar >= "
             f"{BAR['precision_ratio_min']}x), coverage (bar >= {BAR['coverage_ratio_min']}x). Diversity: the "
             f"collapse watch's lowest per-class ratio (bar >= {BAR['diversity_min']}). Keep: share of fakes that "
             f"pass the copy gate, the realism filter and the confidence filter (bar >= {BAR['keep_rate_min']}).", "",
             "| variant | overrides | G steps | FD ratio (mean / worst class) | precision ratio | recall ratio | "
             "coverage ratio | lowest diversity | keep rate | grid |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        o = r["score"]["overall"]
        lines.append(f"| {r['name']} | {r['overrides']} | {r['steps']} | {_f(o['fd_ratio'])} / {_f(o['fd_ratio_worst'])} "
                     f"| {_f(o['precision_ratio'])} | {_f(o['recall_ratio'])} | {_f(o['coverage_ratio'])} | "
                     f"{_f(o['diversity_ratio_lowest'])} | {_f(o['keep_rate_total'])} | `{r['name']}.png` |")
    lines += ["", "Per class (FD ratio / precision ratio / coverage ratio / keep rate):", ""]
    classes = list(rows[0]["score"]["per_class"]) if rows else []
    lines += ["| variant | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    for r in rows:
        pc = r["score"]["per_class"]
        lines.append(f"| {r['name']} | " + " | ".join(
            f"{_f(pc[c]['fd_ratio'], '.1f')} / {_f(pc[c]['precision_ratio'])} / {_f(pc[c]['coverage_ratio'])} / "
            f"{_f(pc[c]['keep_rate'])}" for c in classes) + " |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
