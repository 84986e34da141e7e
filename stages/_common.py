"""What every stage script shares: ``--params FILE``, logging, one-line errors and exit code 2."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable

from pipeline.errors import PipelineError


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return p


def run(main: Callable[[], None]) -> None:
    """Call ``main``; a PipelineError (or an OS error such as a full disk) exits 2 with one line."""
    logging.basicConfig(level=os.environ.get("PIPELINE_LOG", "INFO"), format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        where = exc.filename or "output"
        print(f"error: {where}: {exc.strerror or exc}; free disk space or fix the folder's permissions",
              file=sys.stderr)
        sys.exit(2)
