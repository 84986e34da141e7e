"""DVC stage ``report@<dataset>``: the clinician report and the blinded review page of one data set.

Usage: python -m stages.report --dataset mammography [--params params.yaml] [--root .]

Writes ``reports/<dataset>/index.html`` (report), ``review.html`` (blinded real-or-synthetic page) and
``review_key.json`` (its answer key, never referenced by the page), and logs the two pages to MLflow
under the data set's parent run (the evaluate stage's). Missing inputs become "not available" sections.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.config import dataset, load_params
from pipeline.report.build import build
from pipeline.tracking import log_to_parent_run
from stages._common import parser, run


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--dataset", required=True, help="a key of the datasets section")
    p.add_argument("--root", default=".", help="folder holding data/, metrics/, plots/, results/ (default: .)")
    args = p.parse_args()
    params = load_params(args.params)
    dataset(params, args.dataset, args.params)
    cfg = params.report
    built = build(Path(args.root), args.dataset, params)
    run_id = log_to_parent_run(args.dataset, [built.index, built.review], built.parent_run_id, enabled=cfg.tracking,
                           stage="report", artifact_path="report",
                           tags={"report.review_page_id": str(built.page_id)})
    print(f"report {args.dataset}: {built.index} ({_kib(built.index)}, {built.seconds['report']:.1f} s), "
          f"{built.review} ({built.review_items} items, {_kib(built.review)}, {built.seconds['review']:.1f} s), "
          f"key {built.key}" + (f"; MLflow run {run_id}" if run_id else ""))


def _kib(path: Path) -> str:
    return f"{path.stat().st_size / 1024:.0f} KiB"


if __name__ == "__main__":
    run(main)
