"""Quality against training minutes: score every time snapshot of one GAN run the way generate would.

    python scripts/gan_curve.py --run runs/herlev/cdcgan --data data/herlev --params presets/herlev.yaml \
        --out reports/ablation/curve_herlev_cdcgan

The run must have been trained with ``gan.watch.every_minutes`` > 0, which writes
``<run>/snapshots/minute_MMMM.M.pt`` (with the collapse watch's scores) and a grid at each check.
Writes ``<out>.md`` (minutes, G steps, FD / precision / recall / coverage as ratios to the real-vs-real
references, lowest diversity ratio, filter keep rate), ``<out>.json`` and ``<out>.png`` (the grid of
every snapshot, one column block per snapshot, its minutes above).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import load_params  # noqa: E402
from pipeline.gan.checkpoint import load_checkpoint  # noqa: E402
from pipeline.generate.score import BAR, score_checkpoint  # noqa: E402


def _f(x, spec=".2f") -> str:
    return "-" if x is None else format(x, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="the GAN run folder (gan.work_dir/<dataset>/<model>)")
    p.add_argument("--data", required=True, help="the ingested data folder it was trained on")
    p.add_argument("--params", default="params.yaml", help="params whose generate section scores the fakes")
    p.add_argument("--per-class", type=int, default=200)
    p.add_argument("--out", required=True, help="output path without suffix")
    args = p.parse_args()
    gen_cfg = load_params(args.params).generate
    snapshots = sorted((Path(args.run) / "snapshots").glob("minute_*.pt"))
    if not snapshots:
        raise SystemExit(f"{args.run}/snapshots: no minute_*.pt; train with gan.watch.every_minutes > 0")
    out = Path(args.out)
    done = {r["snapshot"]: r for r in json.loads(out.with_suffix(".json").read_text())} \
        if out.with_suffix(".json").is_file() else {}  # a re-run scores only new snapshots
    rows = []
    for path in snapshots:
        if path.name in done:
            rows.append(done[path.name])
            continue
        state = load_checkpoint(path)
        watch = state.get("watch") or {}
        score = score_checkpoint(path, args.data, gen_cfg, args.per_class, watch.get("diversity"))
        rows.append({"snapshot": path.name, "minutes": state["history"][-1].get("train_minutes"),
                     "epoch": state["epoch"], "steps": state["step"], "watch_fd": watch.get("quality_fd"),
                     "score": score})
        o = score["overall"]
        print(f"{path.name}: {state['step']} steps, FD ratio {_f(o['fd_ratio'])}, keep {_f(o['keep_rate_total'])}",
              file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    lines = [f"# Quality against training minutes: `{args.run}`", "",
             "Each row scores the snapshot taken at that many training minutes (EMA generator where on), "
             f"{args.per_class} fakes per class, as the generate stage would (pipeline/generate/score.py); ratios "
             f"to the real-vs-real reference. Bar: FD <= {BAR['fd_ratio_max']}x, precision >= "
             f"{BAR['precision_ratio_min']}x, coverage >= {BAR['coverage_ratio_min']}x, lowest diversity >= "
             f"{BAR['diversity_min']}, keep >= {BAR['keep_rate_min']}.", "",
             *curve_table(rows)]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    write_strip(Path(args.run) / "samples", rows, out.with_suffix(".png"))


def curve_table(rows: list[dict]) -> list[str]:
    """Markdown rows: one per scored snapshot (minutes, steps, ratios, diversity, keep rate)."""
    out = ["| minutes | G steps | FD ratio (mean / worst) | precision ratio | recall ratio | coverage ratio | "
           "lowest diversity | keep rate |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        o = r["score"]["overall"]
        out.append(f"| {_f(r['minutes'], '.1f')} | {r['steps']} | {_f(o['fd_ratio'])} / {_f(o['fd_ratio_worst'])} | "
                   f"{_f(o['precision_ratio'])} | {_f(o['recall_ratio'])} | {_f(o['coverage_ratio'])} | "
                   f"{_f(o['diversity_ratio_lowest'])} | {_f(o['keep_rate_total'])} |")
    return out


def write_strip(samples: Path, rows: list[dict], path: Path) -> None:
    """The grids written at the snapshots' epochs side by side, the minutes above each."""
    grids = [(r, samples / f"epoch_{r['epoch']:04d}.png") for r in rows]
    grids = [(r, Image.open(g).convert("RGB")) for r, g in grids if g.is_file()]
    if not grids:
        return
    w, h = grids[0][1].size
    strip = Image.new("RGB", (w * len(grids), h + 16), "white")
    draw = ImageDraw.Draw(strip)
    for i, (r, im) in enumerate(grids):
        strip.paste(im, (i * w, 16))
        draw.text((i * w + 4, 2), f"{r['minutes']:.0f} min, {r['steps']} steps", fill="black")
    strip.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)  # a palette keeps long strips small


if __name__ == "__main__":
    main()
