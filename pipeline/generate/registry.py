"""Generators from MLflow's model registry: ``models:/<name>/<version>``, ``models:/<name>@<alias>`` or
``models:/<name>/latest``, wherever a checkpoint path is accepted.

The train_gan stage registers its best generator as ``<dataset>-<gan>`` (a new version per training run)
with the data set, classes and resolution in the model's metadata. :func:`load_generator_source` loads either
kind of source into the same :class:`LoadedGenerator`, so generating from a registered model runs exactly
like generating from its checkpoint (the registered graph is the checkpoint's generator, exported by
``torch.export`` in eval mode: the same images for the same seeds).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from pipeline.errors import DataError
from pipeline.generate.sampling import LoadedGenerator, load_checked_generator
from pipeline.progress import quiet_mlflow_transfers
from pipeline.tracking import tracking_uri, with_retry

URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+|latest)|@(?P<alias>[\w-]+))$", re.IGNORECASE)
HINT = "list the registered generators with `medsynth models`"


def is_model_uri(source: str | Path) -> bool:
    return str(source).startswith("models:")


class ExportedGenerator(torch.nn.Module):
    """The generator graph of a registered model (``torch.export``'s module, traced in eval mode).

    ``train()``/``eval()`` do nothing: an exported graph has no mode to switch (it would raise).
    """

    def __init__(self, graph: torch.nn.Module):
        super().__init__()
        self.graph = graph

    def train(self, mode: bool = True) -> ExportedGenerator:
        return self

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.graph(z, y)


def _store_error(uri: str, exc: Exception) -> DataError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"{uri}: cannot read the MLflow registry at {tracking_uri()} ({first}); start the tracking "
                     "server or set MLFLOW_TRACKING_URI to the store the model was registered in")


def registry_client(what: str):
    """An MlflowClient on :func:`tracking_uri`; a one-line DataError naming ``what`` when a sqlite store is
    missing (MLflow would create an empty one and report the model as unknown)."""
    import mlflow

    store = tracking_uri()
    if store.startswith("sqlite:///") and not Path(store[len("sqlite:///"):]).is_file():
        raise DataError(f"{what}: no MLflow store at {store[len('sqlite:///'):]}; run the train_gan stage with "
                        "tracking on, or set MLFLOW_TRACKING_URI to the store the model was registered in")
    return mlflow.MlflowClient(store)


def resolve(uri: str):
    """The registry's ModelVersion that ``uri`` names (one-line DataError when it names none)."""
    m = URI.match(uri)
    if not m:
        raise DataError(f"{uri}: not a registered-model URI; write models:/<name>/<version>, models:/<name>@<alias> "
                        "or models:/<name>/latest (e.g. models:/mammography-acgan/1)")
    client = registry_client(uri)
    store = tracking_uri()
    name, version, alias = m["name"], m["version"], m["alias"]
    try:
        found = with_retry(client.search_model_versions, f"name = '{name}'")
    except Exception as exc:
        raise _store_error(uri, exc) from None
    if not found:
        names = sorted({mv.name for mv in with_retry(client.search_model_versions)})
        raise DataError(f"{uri}: no registered model {name!r} in {store}"
                        + (f" (registered: {', '.join(names)})" if names else " (none registered yet)")
                        + f"; {HINT}")
    versions = sorted(found, key=lambda mv: int(mv.version))
    if version and version.lower() == "latest":
        return versions[-1]
    if version:
        match = [mv for mv in versions if str(mv.version) == str(int(version))]
        if not match:
            have = ", ".join(str(mv.version) for mv in versions)
            raise DataError(f"{uri}: {name!r} has no version {version} (versions {have}); {HINT}")
        return match[0]
    aliases = with_retry(client.get_registered_model, name).aliases or {}  # alias -> version
    if alias not in aliases:
        raise DataError(f"{uri}: {name!r} has no alias {alias!r} (aliases: {', '.join(sorted(aliases)) or 'none'}); "
                        f"set one with `medsynth models --set-alias {alias} models:/{name}/<version>` or use a version")
    return next(mv for mv in versions if str(mv.version) == str(aliases[alias]))


def load_registered_generator(uri: str, model: str | None = None, dataset: str | None = None) -> LoadedGenerator:
    """The generator of registered model version ``uri`` after checking it is the expected GAN and data set."""
    import mlflow.pytorch
    from mlflow.models import get_model_info

    quiet_mlflow_transfers()
    mv = resolve(uri)
    pinned = f"models:/{mv.name}/{mv.version}"  # an alias or 'latest' may move later: record the version
    try:
        about = (get_model_info(pinned).metadata or {}).get("medsynth")
        graph = mlflow.pytorch.load_model(pinned, map_location="cpu") if about else None
    except Exception as exc:
        raise _store_error(uri, exc) from None
    if not about:
        raise DataError(f"{uri}: not a medsynth generator (its MLmodel has no 'medsynth' metadata); register one "
                        "with the train_gan stage, or pass a checkpoint file")
    if model and about["gan"] != model:
        raise DataError(f"{uri}: a {about['gan']} generator, not {model}; "
                        f"use models:/{about['dataset']}-{model}/<version>")
    if dataset and about["dataset"] != dataset:
        raise DataError(f"{uri}: trained on data set {about['dataset']!r}, not {dataset!r}; use a generator trained "
                        f"on {dataset} (models:/{dataset}-<gan>/<version>)")
    return LoadedGenerator(ExportedGenerator(graph), about["gan"], about["dataset"], [str(c) for c in about["classes"]],
                           int(about["channels"]), int(about["resolution_px"]), int(about["z_dim"]),
                           about.get("weights") == "ema", pinned, mv.run_id, Path(pinned))


def load_generator_source(source: str | Path, prefer_ema: bool = True, model: str | None = None,
                          dataset: str | None = None) -> LoadedGenerator:
    """A checkpoint file (:func:`load_checked_generator`) or a registered model (:func:`load_registered_generator`;
    it holds one set of weights, the EMA ones when training kept them, so ``prefer_ema`` does not apply)."""
    if is_model_uri(source):
        return load_registered_generator(str(source), model, dataset)
    return load_checked_generator(source, prefer_ema, model, dataset)
