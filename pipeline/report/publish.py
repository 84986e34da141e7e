"""Writing the pages (atomically) and logging them to MLflow under the data set's parent run."""
from __future__ import annotations

import json
import logging
import os
import re
import time
import warnings
from pathlib import Path

from pipeline.tracking import find_run, ready_store, start_run, tracking_enabled, tracking_uri, with_retry

log = logging.getLogger(__name__)


def write_texts(files: dict[Path, str]) -> None:
    """Write every file to a temporary sibling first, then rename them all: no half-written page is left."""
    tmps = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmps.append((tmp, path))
    except BaseException:
        for tmp, _ in tmps:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, path in tmps:
        os.replace(tmp, path)


def write_json(path: Path, obj: object) -> None:
    write_texts({path: json.dumps(obj, indent=2, sort_keys=False) + "\n"})


def metric_key(text: str) -> str:
    """MLflow allows letters, digits, _ - . / and spaces in metric names."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]+", "_", text).strip() or "_"


def log_to_mlflow(dataset: str, files: list[Path], parent_run_id: str | None, *, enabled: bool, stage: str,
                  artifact_path: str, metrics: dict[str, float] | None = None,
                  tags: dict[str, str] | None = None) -> str | None:
    """Log ``files`` (and ``metrics``) to the data set's parent run; without one, to a new run ``<stage>-<dataset>``.

    The parent run is ``parent_run_id`` (from the evaluate stage's metrics) when this tracking store has it,
    else the latest run named ``evaluate-<dataset>``. It is left as it is (status, end time): artifacts and
    metrics are added through the client. Returns the run id used, or None with tracking off.
    """
    if not tracking_enabled(enabled):
        return None
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    clean = {metric_key(k): float(v) for k, v in (metrics or {}).items() if v is not None}
    client = MlflowClient(ready_store())
    wanted = parent_run_id
    try:  # the id evaluate recorded, else the latest run named evaluate-<dataset> in this store
        parent_run_id = find_run("evaluate", dataset, None, parent_run_id)
    except Exception as exc:  # an unreadable store: a new run below will say more
        log.warning("looking up the evaluate run of %s failed: %s", dataset, exc)
        parent_run_id = None
    if wanted and parent_run_id != wanted:  # e.g. a fresh mlflow.db: the recorded id is from another store
        warnings.warn(f"MLflow parent run {wanted} is not in {tracking_uri()}; logging to "
                      f"{parent_run_id or f'a new run {stage}-{dataset}'} instead", stacklevel=2)
    if parent_run_id:
        for path in files:
            with_retry(client.log_artifact, parent_run_id, str(path), artifact_path)
        if clean:
            now = int(time.time() * 1000)
            with_retry(client.log_batch, parent_run_id, metrics=[Metric(k, v, now, 0) for k, v in clean.items()])
        for k, v in (tags or {}).items():
            with_retry(client.set_tag, parent_run_id, k, v)
        return parent_run_id
    with start_run(stage, dataset, tags=tags) as tracker:
        for path in files:
            tracker.log_artifact(path, artifact_path)
        if clean:
            tracker.log_metrics(clean)
        return tracker.run_id
