"""DVC stage ``ingest@<dataset>``: read, patch, split and cache one data set.

Usage: python -m stages.ingest --dataset mammography [--params params.yaml]
"""
from __future__ import annotations

from pathlib import Path

from pipeline.config import dataset, load_params
from pipeline.data.ingest import ingest_dataset
from pipeline.data.records import load_salt
from stages._common import check_writable, parser, run


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--dataset", required=True, help="a key of the datasets section")
    p.add_argument("--out", default=None, help="output folder (default data/<dataset>)")
    p.add_argument("--metrics", default=None, help="headline metrics JSON (default metrics/ingest/<dataset>.json; "
                                                  "the rest in <out>/ingest.json)")
    args = p.parse_args()
    params = load_params(args.params)
    cfg = dataset(params, args.dataset, args.params)
    out = Path(args.out or f"data/{args.dataset}")
    metrics_path = Path(args.metrics or f"metrics/ingest/{args.dataset}.json")
    check_writable(out, metrics_path)
    metrics = ingest_dataset(args.dataset, cfg, load_salt(params.privacy.salt_env), out, metrics_path)
    counts = metrics["counts"]
    print(f"ingest {args.dataset}: {metrics['n_images']} images, {metrics['n_groups']} groups, "
          + ", ".join(f"{s} {sum(counts[s].values())}" for s in counts) + f" in {metrics['time_s']} s")


if __name__ == "__main__":
    run(main)
