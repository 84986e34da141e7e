"""Writing the pages atomically (all files of one build renamed together); MLflow logging is
:func:`pipeline.tracking.log_to_parent_run`."""
from __future__ import annotations

import json
import os
from pathlib import Path


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
