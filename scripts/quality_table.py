"""The real-data quality table of reports/study/quality.md from the JSON that ``scripts/gan_curve.py`` writes.

    python scripts/quality_table.py --intro intro.md --out reports/study/quality.md \
        --curve "herlev cdcgan=reports/study/quality_herlev_cdcgan.json@2040" \
        --curve "herlev acgan=reports/study/quality_herlev_acgan.json"

``@N`` picks the snapshot closest to N generator steps as the GAN's row against the bar (default: the last);
every snapshot is listed below it, so the table also reads as quality against minutes and steps.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.generate.score import BAR  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gan_curve import curve_table  # noqa: E402


def _f(x, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def pick(rows: list[dict], steps: int | None) -> dict:
    return rows[-1] if steps is None else min(rows, key=lambda r: abs(r["steps"] - steps))


def bar_row(name: str, row: dict) -> str:
    o, bar = row["score"]["overall"], row["score"]["bar"]
    met = ", ".join(k for k, v in bar.items() if v) or "none"
    missed = ", ".join(k for k, v in bar.items() if v is False) or "none"
    return (f"| {name} | {_f(row['minutes'], '.0f')} | {row['steps']} | {_f(o['fd_ratio'])} / {_f(o['fd_ratio_worst'])} | "
            f"{_f(o['precision_ratio'])} | {_f(o['coverage_ratio'])} | {_f(o['recall_ratio'])} | "
            f"{_f(o['diversity_ratio_lowest'])} | {_f(o['keep_rate_total'])} | met: {met}; missed: {missed} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--curve", action="append", required=True, help="'<name>=<curve.json>[@steps]'")
    p.add_argument("--intro", help="markdown put under the title (how the runs were made)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    curves = []
    for spec in args.curve:
        name, _, rest = spec.partition("=")
        path, _, steps = rest.partition("@")
        curves.append((name, path, json.loads(Path(path).read_text()), int(steps) if steps else None))
    lines = ["# GAN quality on real data: the bar of the quality issue", ""]
    if args.intro:
        lines += [Path(args.intro).read_text().strip(), ""]
    lines += [f"Bar: FD <= {BAR['fd_ratio_max']}x the real-vs-real reference, precision >= {BAR['precision_ratio_min']}x, "
              f"coverage >= {BAR['coverage_ratio_min']}x, lowest class diversity ratio (collapse watch) >= "
              f"{BAR['diversity_min']}, filter keeps >= {BAR['keep_rate_min']:.0%} of what was generated.", "",
              "## Each GAN against the bar", "",
              "| data set / GAN | minutes | G steps | FD ratio (mean / worst class) | precision ratio | coverage ratio | "
              "recall ratio | lowest diversity | keep rate | bar |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [bar_row(name, pick(rows, steps)) for name, _, rows, steps in curves]
    lines += ["", "## Quality against minutes and generator steps (every snapshot)", ""]
    for name, path, rows, _ in curves:
        lines += [f"### {name} (`{Path(path).name}`, grids: `{Path(path).with_suffix('.png').name}`)", "",
                  *curve_table(rows), ""]
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
