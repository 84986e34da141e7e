"""`make run` runs dvc.yaml's `python -m stages...` commands with the project's environment, not the system python."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_puts_the_venv_first_on_path() -> None:
    out = subprocess.run(["make", "-s", "--no-print-directory", "-f", str(REPO / "Makefile"), "-p", "-n", "clean"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    path_line = next(line for line in out.splitlines() if line.startswith("PATH :="))
    first = path_line.split(":=", 1)[1].strip().split(":")[0]
    assert Path(first).resolve() == (REPO / ".venv" / "bin").resolve()  # .venv may be a symlink
