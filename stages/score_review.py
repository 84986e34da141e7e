"""Score exported answers of the blinded review page against its key.

Usage: python -m stages.score_review --dataset mammography --answers a.csv [b.csv ...]
           [--key reports/<dataset>/review_key.json] [--params params.yaml] [--root .] [--no-report]

Writes ``reports/<dataset>/review_scores.json`` (per reader: accuracy, sensitivity and specificity for
spotting synthetic images, per class; agreement between readers: Cohen's kappa for two, Fleiss' for
more), rebuilds ``reports/<dataset>/index.html`` so it shows a review section, and logs the scores to
MLflow (the data set's parent run when its id is known, else a run ``review-<dataset>``).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from pipeline.config import dataset, load_params
from pipeline.errors import DataError
from pipeline.report.build import rebuild_index
from pipeline.report.inputs import Evaluation, Paths, read_evaluation
from pipeline.report.publish import write_json
from pipeline.tracking import log_to_parent_run
from pipeline.report.scoring import read_answers, read_key, score
from stages._common import parser, run


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--dataset", required=True, help="a key of the datasets section")
    p.add_argument("--answers", required=True, nargs="+", help="CSV file(s) exported from the review page")
    p.add_argument("--key", default=None, help="answer key (default: reports/<dataset>/review_key.json)")
    p.add_argument("--root", default=".", help="repository root holding reports/ (default: .)")
    p.add_argument("--no-report", action="store_true", help="do not rebuild index.html with the scores")
    args = p.parse_args()
    params = load_params(args.params)
    dataset(params, args.dataset, args.params)
    cfg = params.report
    paths = Paths(Path(args.root), args.dataset)
    key_path = Path(args.key) if args.key else paths.reports_dir / "review_key.json"
    key = read_key(key_path)
    if key.get("dataset") not in (None, args.dataset):
        raise DataError(f"{key_path}: the key is for data set {key['dataset']!r}, not {args.dataset!r}; "
                        "pass the matching --dataset or --key")
    answers = read_answers(args.answers, key)
    result = score(answers, key)
    result.update(key_file=str(key_path), answer_files=[str(a) for a in args.answers],
                  scored_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    write_json(paths.review_scores, result)
    for reader, r in result["readers"].items():
        print(f"{reader}: {r['n']} answers, accuracy {_f(r['accuracy'])}, sensitivity {_f(r['sensitivity'])}, "
              f"specificity {_f(r['specificity'])}")
    ag = result["agreement"]
    if ag["method"]:
        print(f"agreement ({ag['method']} kappa) on {ag['n_items_common']} items: {_f(ag['kappa'])}")
    files = [paths.review_scores]
    if not args.no_report:
        files.append(rebuild_index(args.root, args.dataset, params))
    evaluation = read_evaluation(paths, [])
    parent = evaluation.parent_run_id if isinstance(evaluation, Evaluation) else None
    metrics = {f"review.{reader}.{m}": r[m] for reader, r in result["readers"].items()
               for m in ("accuracy", "sensitivity", "specificity")}
    metrics.update({f"review.pooled.{m}": result["pooled"][m] for m in ("accuracy", "sensitivity", "specificity")},
                   **{"review.kappa": ag["kappa"], "review.n_readers": ag["n_readers"]})
    run_id = log_to_parent_run(args.dataset, files, parent, enabled=cfg.tracking, stage="review", artifact_path="report",
                           metrics=metrics, tags={"report.review_page_id": str(key.get("page_id"))})
    print(f"scores: {paths.review_scores}" + (f"; report: {files[1]}" if len(files) > 1 else "")
          + (f"; MLflow run {run_id}" if run_id else ""))


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    run(main)
