"""Summarise a finished study run (a preset's `dvc repro`) as a markdown table for reports/.

    python scripts/study_table.py --repo /path/to/checkout --dataset herlev --out reports/study/herlev.md \
        --timing /path/to/herlev_time.json    # optional: the phase times scripts/study.py wrote

Reads the details the stages wrote beside their outputs: results/<dataset>/details.json (every arm's mean and
95 % interval over paired seeds, gains against real-only and against the best non-GAN arm with bootstrap
intervals), data/synthetic/<dataset>/<gan>/details.json (kept / generated per class),
models/<dataset>/<gan>/train_summary.json (steps, best epoch, Frechet distance, diversity) and
data/<dataset>/meta.json (split sizes, patient grouping).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import yaml

METRICS = ("macro_f1", "balanced_accuracy", "minority_recall", "auc_macro")
GANS = ("cdcgan", "acgan")
DISCRIMINATOR_SUFFIX = "_discriminator"  # semi-supervised arms (acgan_discriminator): a GAN's D, no images added


def load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def ci(d: dict | None) -> str:
    if not d or d.get("mean") is None:
        return "-"
    return f"{d['mean']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"


def gain(d: dict | None, label: bool = True) -> str:
    if not d or d.get("diff") is None:
        return "-"
    text = f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
    return f"{text} {d['label']}" if label and d.get("label") else text


def verdict(d: dict | None) -> str:
    """In words, from the interval alone: a gain or a loss only when the interval excludes 0."""
    if not d or d.get("diff") is None:
        return "not measured"
    return "gain" if d["low"] > 0 else "loss" if d["high"] < 0 else "no difference shown (interval spans 0)"


def quality_ratio(block: dict | None) -> str:
    if not block or not block.get("reference"):
        return "-"
    return f"{block['value']:.2f} ({block['value'] / block['reference']:.2f}x real-vs-real)"


def kept_images(repo: Path, dataset: str, gan: str) -> int | str:
    ge = load(repo / "data" / "synthetic" / dataset / gan / "details.json")
    return sum(v["kept"] for v in ge["counts"].values()) if ge else "?"


def data_line(meta: dict | None, minority: str | None) -> list[str]:
    """The split the study ran on, from ingest's meta.json: sizes, the minority class's share, patient grouping."""
    if not meta:
        return []
    counts = meta["counts"]
    sizes = " / ".join(str(sum(counts[s].values())) for s in ("train", "val", "test"))
    rare = " / ".join(str(counts[s].get(minority, 0)) for s in ("train", "val", "test"))
    grouping = (f"split by patient ({meta['n_groups']} patients)" if meta.get("patient_level_split") else
                "no patient ids: the split is per image, so results may be optimistic")
    return [f"{len(meta['classes'])} classes; {sizes} train / validation / test images (minority class "
            f"{minority}: {rare}); {grouping}.", ""]


def render(repo: Path, dataset: str, grids: dict[str, str] | None = None, timing: dict | None = None) -> str:
    ev = load(repo / "results" / dataset / "details.json")
    if ev is None:
        raise SystemExit(f"{repo}/results/{dataset}/details.json: not found; run the study (dvc repro) first")
    meta = load(repo / "data" / dataset / "meta.json")
    lines = [f"# Study: {dataset}", "", *data_line(meta, ev.get("minority_class")),
             f"{ev['n_seeds']} paired seeds per arm (same splits, same seeds), real test split only; "
             f"minority class: {ev.get('minority_class')}; evaluate stage {ev.get('time_s')} s. "
             "Cells: mean over seeds [95 % interval]. Gains: paired difference against real-only "
             "[95 % bootstrap interval]; an interval that spans 0 is reported as no gain. A GAN arm whose GAN "
             "kept no image trains exactly like real-only (same seeds), so its gain is exactly 0; the "
             "semi-supervised arm (<gan>_discriminator) adds no image by design: it fine-tunes that GAN's "
             "discriminator on the real training split.", "",
             "| arm | synthetic images added | " + " | ".join(METRICS)
             + " | macro-F1 gain vs real-only | minority-recall gain vs real-only |",
             "|---" * (len(METRICS) + 4) + "|"]
    params = yaml.safe_load((repo / "params.yaml").read_text()) if (repo / "params.yaml").is_file() else {}
    mixed_gan = (params.get("evaluate") or {}).get("synthetic_classical_gan", "acgan")
    for arm, m in ev["arms"].items():
        g = ev["gains_vs_real_only"].get(arm, {})
        gan = arm if arm in GANS else mixed_gan if arm == "synthetic_classical" else None
        added = "-" if gan is None else str(kept_images(repo, dataset, gan)) + ("" if gan == arm else f" ({gan})")
        if arm.endswith(DISCRIMINATOR_SUFFIX):
            added = f"none ({arm[:-len(DISCRIMINATOR_SUFFIX)]} discriminator fine-tuned)"
        lines.append(f"| {arm} | {added} | " + " | ".join(ci(m.get(k)) for k in METRICS)
                     + f" | {gain(g.get('macro_f1'))} | {gain(g.get('minority_recall'))} |")
    best = ev.get("best_non_gan")
    lines += ["", f"Best non-GAN arm: {best}. GAN arms (images or discriminator) against it; a gain counts only "
              "when its whole interval is above 0:", ""]
    for arm, g in ev.get("gains_vs_best_non_gan", {}).items():
        if arm in GANS or arm.startswith("synthetic") or arm.endswith(DISCRIMINATOR_SUFFIX):
            lines.append(f"- {arm}: macro-F1 {gain(g.get('macro_f1'), False)} ({verdict(g.get('macro_f1'))}); "
                         f"minority recall {gain(g.get('minority_recall'), False)} "
                         f"({verdict(g.get('minority_recall'))})")
    lines += ["", "## GANs", "", "Kept images against the real training images of the same classes, in the generate "
              "stage's feature space (FD: lower is better; coverage: higher is better; the reference is real "
              "validation against real training images).", "",
              "| GAN | steps | best epoch | lowest class diversity ratio | kept / generated (per class) | "
              "FD of kept | coverage of kept |", "|---|---|---|---|---|---|---|"]
    for gan in GANS:
        tr = load(repo / "models" / dataset / gan / "train_summary.json") or {}
        ge = load(repo / "data" / "synthetic" / dataset / gan / "details.json") or {}
        div = tr.get("best_diversity_ratio_per_class") or {}
        counts = ", ".join(f"{c} {v['kept']}/{v['generated']}" for c, v in (ge.get("counts") or {}).items())
        kept = ((ge.get("quality") or {}).get("kept") or {}).get("overall") or {}
        lines.append(f"| {gan} | {tr.get('steps', '-')} | {tr.get('best_epoch', '-')} | "
                     f"{f'{min(div.values()):.2f}' if div else '-'} | {counts} | {quality_ratio(kept.get('fd'))} | "
                     f"{quality_ratio(kept.get('coverage'))} |")
    if grids:
        lines += ["", "Kept images (one row per class, 8 per row; every image is marked synthetic in its file):", ""]
        lines += [f"![{dataset} {gan} kept images]({name})" for gan, name in grids.items()]
    if timing:
        lines += ["", f"## Wall time ({timing['cores']} cores, `scripts/study.py {timing['preset']}`)", "",
                  "| phase | minutes |", "|---|---|"]
        lines += [f"| {phase} | {v['seconds'] / 60:.1f} |" for phase, v in timing["phases"].items()]
        lines.append(f"| total | {timing['total_seconds'] / 60:.1f} |")
        if timing.get("note"):
            lines += ["", f"How these were measured: {timing['note']}."]
    return "\n".join(lines) + "\n"


def copy_grids(repo: Path, dataset: str, out_dir: Path) -> dict[str, str]:
    """Each GAN's kept-image grid (data/synthetic/<ds>/<gan>/samples.png) copied beside the table."""
    grids = {}
    for gan in GANS:
        src = repo / "data" / "synthetic" / dataset / gan / "samples.png"
        if src.is_file():
            grids[gan] = f"{dataset}_{gan}_kept.png"
            shutil.copyfile(src, out_dir / grids[gan])
    return grids


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", default=".", help="the checkout the study ran in")
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--timing", help="the phase times scripts/study.py wrote (--timing there)")
    args = p.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grids = copy_grids(Path(args.repo), args.dataset, out.parent)
    out.write_text(render(Path(args.repo), args.dataset, grids, load(Path(args.timing)) if args.timing else None))
    print(out.read_text())


if __name__ == "__main__":
    main()
