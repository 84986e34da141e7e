"""What every stage script shares: ``--params FILE``, logging, one-line errors and exit code 2."""
from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from pathlib import Path
from typing import Callable

from pipeline.errors import PipelineError


def parser(description: str) -> argparse.ArgumentParser:
    # the stage's docstring as written: its usage lines stay lines in --help
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return p


# What to do about an OS error, by errno; the message names the path and the problem as the OS gives it.
OS_ERROR_FIXES = {
    errno.ENOSPC: "free disk space or write the outputs to another disk",
    errno.EDQUOT: "free disk space (quota) or write the outputs to another disk",
    errno.EFBIG: "free disk space or raise the file-size limit (ulimit -f)",
    errno.EACCES: "make the folder writable or choose another output folder",
    errno.EPERM: "make the folder writable or choose another output folder",
    errno.EROFS: "the disk is read-only: choose another output folder",
    errno.ENOTDIR: "a file stands where a folder is needed: move it or choose another output path",
    errno.EEXIST: "a file stands where a folder is needed: move it or choose another output path",
}

# sqlite's words when the MLflow store cannot be written: full disk or size limit, read-only file.
SQLITE_WRITE_ERRORS = ("database or disk is full", "disk I/O error", "attempt to write a readonly database")


def check_writable(*outputs: str | Path) -> None:
    """Make the folders that will hold ``outputs`` and check that they are writable, before the work starts:
    an unwritable or misspelt output path should stop a stage at once, not after an hour of training."""
    for output in outputs:
        folder = Path(output).parent
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))


def error_line(exc: BaseException) -> str | None:
    """The one line a stage prints for a PipelineError, an OS error (full disk, unwritable folder, ...) or an
    MLflow sqlite store that cannot be written; None for anything else (a bug: its traceback is shown)."""
    if isinstance(exc, PipelineError):
        return f"error: {exc}"
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else "output"
        fix = OS_ERROR_FIXES.get(exc.errno, "check the path, the free disk space and the permissions")
        return f"error: {where}: {exc.strerror or exc}; {fix}"
    problem = next((p for p in SQLITE_WRITE_ERRORS if p in str(exc)), None)
    if problem:  # MLflow wraps sqlite's error in its own exception
        from pipeline.tracking import tracking_uri

        return (f"error: {tracking_uri()}: the MLflow store cannot be written ({problem}); free disk space, or "
                "set MLFLOW_TRACKING_URI to a store on another disk, or PIPELINE_TRACKING=0")
    return None


def exit_code(body: Callable[[], int | None]) -> int:
    """Call ``body``; its return value (None = 0) is the exit code, and a PipelineError, an OS error or a full
    MLflow store prints one line (error_line) and gives 2. Anything else is a bug: its traceback is shown."""
    try:
        return body() or 0
    except Exception as exc:
        line = error_line(exc)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 2


def run(main: Callable[[], int | None]) -> None:
    """Set up logging, call ``main`` through :func:`exit_code` and exit with its code."""
    logging.basicConfig(level=os.environ.get("PIPELINE_LOG", "INFO"), format="%(levelname)s %(name)s: %(message)s")
    sys.exit(exit_code(main))
