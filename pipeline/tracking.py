"""MLflow helpers: the one place that knows the tracking URI, experiment and run names, tags and parent/child.

Every stage opens its run with :func:`start_run`, a context manager that always ends the run FINISHED
or FAILED and hands out a :class:`Tracker` whose calls retry on sqlite's "database is locked" (DVC
may run stages side by side on one ``mlflow.db``). With tracking off (param, or env
``PIPELINE_TRACKING=0``) the same Tracker does nothing, so stage code has no ``if tracking:`` branches.

    with start_run("train_gan", dataset="mammo", model="acgan", params=flat_params) as tracker:
        tracker.log_metrics({"loss_D": 0.7}, step=1)
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import socket
import subprocess
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from pipeline.workspace import main_checkout

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT_PREFIX = "medsynth"
# MLflow 3's UI opens an experiment on its GenAI overview unless this tag says it holds model training runs.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# MLflow UI "shared views": an experiment tag holding a runs-table state (filter, order, columns) as JSON, opened by
# #/experiments/<id>/runs?viewStateShareKey=<key> (what the UI's Share button writes; plain JSON is accepted).
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
ARMS_VIEW = "arms"  # the evaluate runs with one column per arm: what `medsynth ui` opens
T = TypeVar("T")
log = logging.getLogger(__name__)
_READY_STORES: set[str] = set()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<repo>/mlflow.db`` (the queuing repository's file when
    DVC runs a queued experiment in a temporary copy: see :mod:`pipeline.workspace`)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{main_checkout(REPO_ROOT) / 'mlflow.db'}"


def ready_store() -> str:
    """:func:`tracking_uri`, after creating or upgrading a sqlite store under a file lock.

    Two stages that start together on a new ``mlflow.db`` would otherwise both run MLflow's schema
    migrations, and one would die ('duplicate column name') with its run lost. The lock is a ``flock`` on
    the database file itself (sqlite's own locks are ``fcntl`` locks: the two do not interfere).
    """
    # MLflow logs every database error with its traceback before raising it, "database is locked" included
    # (with_retry retries those); the stage reports what is finally raised in one line (stages/_common.py).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    uri = tracking_uri()
    if uri in _READY_STORES or not uri.startswith("sqlite:///"):
        return uri
    import fcntl

    import mlflow

    path = Path(uri[len("sqlite:///"):])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as db:
        fcntl.flock(db, fcntl.LOCK_EX)
        try:
            mlflow.MlflowClient(uri).search_experiments(max_results=1)  # creates the tables or migrates them
        finally:
            fcntl.flock(db, fcntl.LOCK_UN)
    _READY_STORES.add(uri)
    return uri


def process_tags() -> dict[str, str]:
    """Which process runs a run: lets a later run end it as KILLED when that process died without ending it."""
    return {"process.host": socket.gethostname(), "process.pid": str(os.getpid())}


def end_runs_of_dead_processes(client: Any, experiment_id: str, keep: str | None = None) -> list[str]:
    """End as KILLED every RUNNING run of the experiment that a process of this host started and that process
    is gone (SIGKILL, out-of-memory killer, power cut); returns their ids. Runs of live processes, of other
    hosts and ``keep`` (a run about to be resumed) are left alone."""
    from pipeline.io import process_exists

    host, ended = socket.gethostname(), []
    for run in with_retry(client.search_runs, [experiment_id], filter_string="attributes.status = 'RUNNING'",
                          max_results=1000):
        pid = run.data.tags.get("process.pid", "")
        if run.info.run_id == keep or run.data.tags.get("process.host") != host or not pid.isdigit() \
                or process_exists(int(pid)):
            continue
        with_retry(client.set_terminated, run.info.run_id, status="KILLED")
        ended.append(run.info.run_id)
        log.warning("MLflow run %s (%s) was left RUNNING by process %s, which no longer exists: ended it as KILLED",
                    run.info.run_id, run.info.run_name, pid)
    return ended


def tracking_enabled(param: bool = True) -> bool:
    """The stage's ``tracking`` param, unless env ``PIPELINE_TRACKING`` says 0/false/off."""
    env = os.environ.get("PIPELINE_TRACKING", "").strip().lower()
    return param and env not in ("0", "false", "no", "off")


def experiment_name(dataset: str) -> str:
    return f"{EXPERIMENT_PREFIX}-{dataset}"


def run_name(stage: str, dataset: str, model: str | None = None) -> str:
    return "-".join(p for p in (stage, dataset, model) if p)


def git_commit(cwd: Path = REPO_ROOT) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def with_retry(fn: Callable[..., T], *args: Any, attempts: int = 8, **kwargs: Any) -> T:
    """Call ``fn``; on sqlite's 'database is locked' wait (0.1 s doubling, at most 5 s) and try again."""
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # MlflowException or sqlalchemy OperationalError, depending on the call
            if "database is locked" not in str(exc) or i == attempts - 1:
                raise
            time.sleep(min(5.0, 0.1 * 2 ** i))
    raise AssertionError("unreachable")


def flatten(obj: Any, prefix: str = "", numbers_only: bool = False) -> dict[str, Any]:
    """Dataclasses and nested dicts -> ``{"a.b.c": value}`` for MLflow params; ``numbers_only``: keep only
    int/float leaves (not bools or None), for metrics."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k), numbers_only))
        return out
    if numbers_only and (isinstance(obj, bool) or not isinstance(obj, (int, float))):
        return {}
    return {prefix: obj}


def metric_key(name: str) -> str:
    """MLflow allows letters, digits, _ - . / and spaces in metric names; anything else becomes _."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name).strip() or "_"


class Tracker:
    """Logging calls of one run; all no-ops when ``run_id`` is None (tracking off)."""

    def __init__(self, run_id: str | None = None):
        self.run_id = run_id
        self.model_uris: dict[str, str] = {}  # name -> models:/<model id> of each MLflow model logged here

    @property
    def enabled(self) -> bool:
        return self.run_id is not None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.enabled:
            import mlflow

            clean = {metric_key(k): float(v) for k, v in metrics.items() if v is not None}
            with_retry(mlflow.log_metrics, clean, step=step)

    def log_params(self, params: dict[str, Any]) -> None:
        """Log params; on a resumed run only the keys it does not have yet (MLflow forbids changing one)."""
        if not self.enabled:
            return
        import mlflow

        have = with_retry(mlflow.get_run, self.run_id).data.params
        new = {k: v for k, v in params.items() if k not in have}
        changed = sorted(k for k, v in params.items() if k in have and have[k] != str(v))
        if changed:
            warnings.warn(f"MLflow run {self.run_id}: params changed since it started, kept the old values: "
                          f"{', '.join(changed)}", stacklevel=2)
        for i in range(0, len(new), 100):  # MLflow's batch limit
            with_retry(mlflow.log_params, dict(list(new.items())[i:i + 100]))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.enabled:
            import mlflow

            with_retry(mlflow.log_artifact, str(path), artifact_path=artifact_path)

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.enabled:
            import mlflow

            with_retry(mlflow.set_tags, {k: str(v) for k, v in tags.items()})

    def share_runs_view(self, key: str, search_filter: str, metric_columns: list[str]) -> None:
        """Save a runs-table view of this run's experiment (filter, newest first, these metric columns) under
        ``key``: the UI opens it at ``#/experiments/<id>/runs?viewStateShareKey=<key>``."""
        if self.enabled:
            import mlflow

            state = {"searchFilter": search_filter, "orderByKey": "attributes.start_time", "orderByAsc": False,
                     "selectedColumns": ["tags.`dataset`", *(f"metrics.`{m}`" for m in metric_columns)]}
            client = mlflow.MlflowClient()
            experiment_id = with_retry(client.get_run, self.run_id).info.experiment_id
            with_retry(client.set_experiment_tag, experiment_id, SHARED_VIEW_PREFIX + key, json.dumps(state))

    def log_torch_model(self, model: Any, name: str, input_example: dict[str, Any], fallback_file: str | Path,
                        metadata: dict[str, Any] | None = None) -> str:
        """Log ``model`` as an MLflow model in the safe 'pt2' format (torch.export, no pickled code).

        ``input_example`` maps input names to numpy arrays (batch first, batch > 1: the batch dimension
        is exported as dynamic). MLflow traces the graph with it but cannot keep a tuple of inputs as the
        model's input example, so it also goes into the model as ``extra_files/input_example.json``
        (name -> nested lists). ``metadata`` goes into the model's MLmodel file (it travels with the model).
        When export fails, ``fallback_file`` (a checkpoint) is logged as an artifact instead and the reason
        goes in a warning. The tag ``<name>_logged_as`` says which happened: ``mlflow_model`` or
        ``state_dict``; returns it (``off`` without tracking).
        """
        if not self.enabled:
            return "off"
        import json
        import tempfile

        import mlflow.pytorch
        import numpy as np
        import torch
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        def spec(array: Any, label: str) -> TensorSpec:
            return TensorSpec(np.dtype(array.dtype), (-1, *array.shape[1:]), label)

        try:
            with torch.no_grad():
                out = model(*(torch.from_numpy(v) for v in input_example.values())).numpy()
            signature = ModelSignature(inputs=Schema([spec(v, k) for k, v in input_example.items()]),
                                       outputs=Schema([spec(out, "output")]))
            with tempfile.TemporaryDirectory() as tmp:
                example_file = Path(tmp) / "input_example.json"
                example_file.write_text(json.dumps({k: v.tolist() for k, v in input_example.items()}))
                info = with_retry(mlflow.pytorch.log_model, model, name=name,
                                  input_example=tuple(input_example.values()), signature=signature,
                                  serialization_format="pt2", metadata=metadata, extra_files=[str(example_file)],
                                  pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
            self.model_uris[name] = info.model_uri
            how = "mlflow_model"
        except Exception as exc:  # export is best effort; the checkpoint file is always there
            warnings.warn(f"mlflow.pytorch.log_model failed ({type(exc).__name__}: {exc}); "
                          f"logging {fallback_file} as an artifact instead", stacklevel=2)
            self.log_artifact(fallback_file, artifact_path=name)
            how = "state_dict"
        self.set_tags({f"{name}_logged_as": how})
        return how

    def register_model(self, name: str, registered_name: str, tags: dict[str, Any] | None = None,
                       description: str | None = None) -> str | None:
        """Register the MLflow model this run logged as ``name`` under ``registered_name`` (created when new).

        Each call adds a version; ``tags`` go on the version (the registry shows them beside it), ``description``
        on the registered model. Returns the version, or None without tracking or when ``name`` was not logged
        as an MLflow model (export failed: the tag ``<name>_logged_as`` says so).
        """
        if not self.enabled or name not in self.model_uris:
            return None
        import mlflow

        client = mlflow.MlflowClient()
        version = with_retry(mlflow.register_model, self.model_uris[name], registered_name,
                             tags={k: str(v) for k, v in (tags or {}).items()}).version
        if description:
            with_retry(client.update_registered_model, registered_name, description=description)
        self.set_tags({f"{name}_registered_as": f"models:/{registered_name}/{version}"})
        return str(version)


@contextmanager
def start_run(stage: str, dataset: str, model: str | None = None, *, enabled: bool = True,
              params: dict[str, Any] | None = None, run_id: str | None = None,
              parent_run_id: str | None = None, tags: dict[str, Any] | None = None) -> Iterator[Tracker]:
    """Open (or, with ``run_id``, resume) the run of ``stage`` on ``dataset`` [and ``model``].

    The run ends FINISHED when the block completes and FAILED when it raises (also on Ctrl-C).
    ``parent_run_id`` links runs started by different DVC stages (e.g. generate under train_gan).
    Runs that a killed stage left RUNNING in this data set's experiment are ended as KILLED first.
    """
    if not tracking_enabled(enabled):
        yield Tracker(None)
        return
    import mlflow

    mlflow.set_tracking_uri(ready_store())
    try:
        experiment = with_retry(mlflow.set_experiment, experiment_name(dataset))
    except Exception as exc:  # another stage created the experiment between MLflow's lookup and its create
        if "already exists" not in str(exc):
            raise
        experiment = with_retry(mlflow.set_experiment, experiment_name(dataset))
    if EXPERIMENT_KIND[0] not in experiment.tags:  # a kind set by hand in the UI is kept
        with_retry(mlflow.MlflowClient().set_experiment_tag, experiment.experiment_id, *EXPERIMENT_KIND)
    end_runs_of_dead_processes(mlflow.MlflowClient(), experiment.experiment_id, keep=run_id)
    all_tags = {"dataset": dataset, "stage": stage, "git_commit": git_commit(), **({"model": model} if model else {}),
                **process_tags(), **(tags or {})}
    active = None
    if run_id:
        try:
            active = with_retry(mlflow.start_run, run_id=run_id)
        except Exception as exc:  # e.g. a fresh mlflow.db: start a new run rather than fail the training
            warnings.warn(f"cannot resume MLflow run {run_id} ({exc}); starting a new run", stacklevel=3)
    if active is None:
        # Tag values as strings: a tracking server's REST client rejects ints (a sqlite store converts them).
        active = with_retry(mlflow.start_run, experiment_id=experiment.experiment_id,
                            run_name=run_name(stage, dataset, model), parent_run_id=parent_run_id,
                            tags={k: str(v) for k, v in all_tags.items()})
    with _ended_with_status(active.info.run_id, params, all_tags) as tracker:
        yield tracker


@contextmanager
def _ended_with_status(run_id: str, params: dict | None, tags: dict | None = None) -> Iterator[Tracker]:
    """Yield a Tracker for the active run; end it FINISHED, or FAILED when the body raises."""
    import mlflow

    tracker = Tracker(run_id)
    status = "FAILED"
    try:
        if tags:
            tracker.set_tags(tags)
        if params:
            tracker.log_params(params)
        yield tracker
        status = "FINISHED"
    finally:
        with_retry(mlflow.end_run, status=status)


def find_run(stage: str, dataset: str, model: str | None = None, run_id: str | None = None) -> str | None:
    """The id of an existing run: ``run_id`` when the tracking store has it, else the latest run named
    :func:`run_name` (stage, dataset, model) in the data set's experiment, else None.

    Lets a later stage attach to an earlier one (e.g. generate as a child of the train_gan run whose
    id the checkpoint recorded, even when the checkpoint came from another machine's mlflow.db).
    """
    import mlflow

    mlflow.set_tracking_uri(ready_store())
    client = mlflow.MlflowClient()
    if run_id:
        try:
            return with_retry(client.get_run, run_id).info.run_id
        except Exception:  # not in this store
            pass
    experiment = with_retry(client.get_experiment_by_name, experiment_name(dataset))
    if experiment is None:
        return None
    runs = with_retry(client.search_runs, [experiment.experiment_id],
                      filter_string=f"attributes.run_name = '{run_name(stage, dataset, model)}'",
                      order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


@contextmanager
def start_child_run(parent: Tracker, name: str, *, params: dict[str, Any] | None = None,
                    tags: dict[str, Any] | None = None) -> Iterator[Tracker]:
    """Open a run nested under ``parent`` (this process's active run from :func:`start_run`) named ``name``.

    Ends FINISHED or FAILED like :func:`start_run`; while it is open the parent's Tracker must not log (MLflow's
    fluent calls go to the innermost active run). A no-op Tracker when ``parent`` is off.
    """
    if not parent.enabled:
        yield Tracker(None)
        return
    import mlflow

    experiment_id = with_retry(mlflow.get_run, parent.run_id).info.experiment_id
    active = with_retry(mlflow.start_run, experiment_id=experiment_id, run_name=name, nested=True,
                        parent_run_id=parent.run_id,
                        tags={k: str(v) for k, v in {**process_tags(), **(tags or {})}.items()})
    with _ended_with_status(active.info.run_id, params) as tracker:
        yield tracker


def log_metric_series(tracker: Tracker, rows: list[dict[str, Any]], step_key: str = "epoch", prefix: str = "") -> None:
    """Log a whole curve (one dict per step) in one call: ``prefix + key`` at ``row[step_key]``.

    One sqlite transaction instead of one per step, which matters with many short child runs.
    """
    if not tracker.enabled or not rows:
        return
    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(f"{prefix}{k}", float(v), now, int(row[step_key])) for row in rows for k, v in row.items()
               if k != step_key and v is not None]
    client = mlflow.MlflowClient()
    for i in range(0, len(metrics), 1000):  # MLflow's batch limit
        with_retry(client.log_batch, tracker.run_id, metrics=metrics[i:i + 1000])


def log_to_parent_run(dataset: str, files: list[Path], parent_run_id: str | None, *, enabled: bool, stage: str,
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


def runs_table_urls(uri: str, base_url: str) -> list[str]:
    """One line per pipeline experiment: its runs table (MLflow 3's ``#/experiments/<id>/runs``; an experiment
    otherwise opens on its GenAI overview), in the evaluate stage's shared view (one macro-F1 column per arm)
    once an evaluate run has saved it."""
    import mlflow

    experiments = mlflow.MlflowClient(uri).search_experiments(filter_string=f"name LIKE '{EXPERIMENT_PREFIX}-%'")
    return [f"{e.name}: {base_url}/#/experiments/{e.experiment_id}/runs"
            + (f"?viewStateShareKey={ARMS_VIEW}" if SHARED_VIEW_PREFIX + ARMS_VIEW in e.tags else "")
            for e in sorted(experiments, key=lambda e: e.name)]
