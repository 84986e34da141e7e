"""Where per-checkout state lives (the MLflow sqlite store, the patient-hash salt).

``dvc exp run --queue`` / ``dvc queue start`` run each experiment in a temporary copy of the repository
under ``<repo>/.dvc/tmp/exps/<tmpdir>/`` that DVC deletes afterwards. State written "in the repository"
from there would be lost with the copy: the experiment's MLflow runs, and a fresh random salt that would
hash the same patient differently in every experiment. :func:`main_checkout` maps such a copy back to
the repository that queued it.
"""
from __future__ import annotations

from pathlib import Path

EXPS_DIR = (".dvc", "tmp", "exps")


def main_checkout(path: str | Path) -> Path:
    """``path``, or the repository that owns it when ``path`` lies inside a DVC experiment's temporary copy."""
    path = Path(path).resolve()
    parts = path.parts
    for i in range(len(parts) - len(EXPS_DIR) + 1):
        if parts[i:i + len(EXPS_DIR)] == EXPS_DIR:
            return Path(*parts[:i])
    return path
