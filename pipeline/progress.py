"""Progress bars for a person at a terminal, and nothing in logs.

Every long loop (GAN epochs or training minutes, images decoded, images kept per class, feature-net epochs)
goes through :func:`progress`, a ``tqdm`` bar that is shown only when :func:`show_progress` says so:
stderr is a terminal and the process does not run under CI (env ``CI``, set by GitHub Actions, GitLab,
Jenkins' plugins, ...). ``PIPELINE_PROGRESS=0`` turns bars off, ``PIPELINE_PROGRESS=1`` forces them on
(e.g. under ``script`` or a CI job that renders them).

    for item in progress(items, desc="decode", unit="img"):
        ...
"""
from __future__ import annotations

import os
import sys
from typing import Any, Iterable

from tqdm import tqdm

OFF = ("0", "false", "no", "off")


def show_progress(stream: Any = None) -> bool:
    """Whether to draw bars: ``PIPELINE_PROGRESS`` if set, else a terminal on ``stream`` (stderr) outside CI."""
    setting = os.environ.get("PIPELINE_PROGRESS", "").strip().lower()
    if setting:
        return setting not in OFF
    if os.environ.get("CI", "").strip().lower() not in ("", *OFF):
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no stream, or a closed one
        return False


def quiet_mlflow_transfers() -> None:
    """MLflow draws its own bars when it downloads artifacts (registering or loading a model): the same rule."""
    if not show_progress():
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def progress(iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``, disabled unless :func:`show_progress` (an explicit ``disable`` wins)."""
    kwargs.setdefault("disable", not show_progress(kwargs.get("file")))
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
