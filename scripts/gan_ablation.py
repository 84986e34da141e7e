"""GAN ablation: train one model under several param variants on one ingested data set and compare them.

    python scripts/gan_ablation.py --data data/cervical --params params.yaml --model cdcgan --epochs 100 \
        --variant base: --variant no_dropout:stabilise.g_dropout=0 \
        --variant plain:stabilise.g_dropout=0,stabilise.g_layer_noise_std=0 --out reports/ablation

Each variant is ``name:key=value,key=value`` with keys relative to the ``gan`` section. Every variant
trains from scratch with the same seed; the table (``<out>/ablation.md``) gives the collapse watch's
per-class Frechet distance and diversity ratio at the end (G in eval mode, as generation uses it),
and each variant's last sample grid is copied beside it. MLflow is off.
"""
from __future__ import annotations

import argparse
import copy
import re
import shutil
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import build  # noqa: E402
from pipeline.gan.config import GanConfig  # noqa: E402
from pipeline.gan.train import train_gan  # noqa: E402


def with_overrides(section: dict, pairs: list[tuple[str, str]], where: str) -> GanConfig:
    """The ``gan`` section with ``a.b = value`` (parsed as YAML) set, built and checked like params.yaml."""
    section = copy.deepcopy(section)
    for dotted, raw in pairs:
        *parents, leaf = dotted.split(".")
        node = section
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = yaml.safe_load(raw)
    return build(GanConfig, section, "gan", where)


def parse_variant(text: str) -> tuple[str, list[tuple[str, str]]]:
    name, _, body = text.partition(":")
    # split at commas that start a new key=, so values may hold commas ("color,translation")
    pairs = [tuple(kv.split("=", 1)) for kv in re.split(r",(?=[\w.]+=)", body) if kv]
    return name, pairs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="an ingested data folder (holds cache/ and meta.json)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--model", default="cdcgan", choices=["cdcgan", "acgan"])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--variant", action="append", required=True, help="name:key=value,key=value")
    p.add_argument("--out", default="reports/ablation")
    args = p.parse_args()

    section = (yaml.safe_load(Path(args.params).read_text()) or {}).get("gan", {})
    common = [("train.epochs", str(args.epochs)), ("train.tracking", "false")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for text in args.variant:
        name, pairs = parse_variant(text)
        cfg = with_overrides(section, common + pairs, f"{args.params} + --variant {name}")
        run_dir = out / "runs" / name
        shutil.rmtree(run_dir, ignore_errors=True)
        t0 = time.perf_counter()
        result = train_gan(cfg, args.model, args.data, run_dir)
        seconds = time.perf_counter() - t0
        last = result.history[-1]
        grid = result.samples[-1]
        shutil.copy2(grid, out / f"{name}.png")
        best = result.summary
        rows.append((name, ", ".join(f"{k}={v}" for k, v in pairs) or "(params as given)", last["quality_fd"],
                     last["diversity_ratio"], best["best_diversity_ratio_per_class"], seconds, result.summary["steps"]))
        print(f"{name}: FD {last['quality_fd']:.2f} min diversity {last['diversity_ratio']:.2f} in {seconds:.0f} s",
              file=sys.stderr)
        write_table(out / "ablation.md", args, rows)


def write_table(path: Path, args, rows) -> None:
    lines = [f"# GAN ablation: {args.model} on {args.data}, {args.epochs} epochs, params {args.params}", "",
             "Collapse watch at the last epoch (G in eval mode, fixed latents, real validation images): mean "
             "per-class Frechet distance (lower is better) and the lowest per-class diversity ratio "
             "(fakes' mean pairwise feature distance / real images'; 1 = as varied as real, < 0.5 = collapsing).", "",
             "| variant | overrides | FD (last) | min diversity (last) | diversity per class (best ckpt) | steps | time (s) |",
             "|---|---|---|---|---|---|---|"]
    for name, over, fd, div, per_class, seconds, steps in rows:
        pc = " ".join(f"{k[:10]} {v:.2f}" for k, v in per_class.items())
        lines.append(f"| {name} | {over} | {fd:.2f} | {div:.2f} | {pc} | {steps} | {seconds:.0f} |")
    lines += ["", "Sample grids (one row per class, one column per shared z): " +
              ", ".join(f"`{r[0]}.png`" for r in rows), ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
