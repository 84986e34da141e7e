"""A real headless browser for the page tests: Debian's Chromium driven by Playwright's Python package.

The set-up installs what is missing: ``apt-get install -y chromium`` when /usr/bin/chromium is absent
(as root), and ``pip install playwright`` when the package is missing (Playwright's own browser
download is never used). Where neither can be installed the tests are skipped with the reason.
"""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = Path(os.environ.get("PIPELINE_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium tries to reach Google's hosts at every start.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _install_chromium() -> str | None:
    """None when /usr/bin/chromium is there (installing it if need be), else why it is not."""
    if CHROMIUM.exists():
        return None
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return (f"{CHROMIUM} is missing and apt-get cannot be run here as root; install Debian's browser: "
                "sudo apt-get install -y chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    tail = ""
    for cmd in (["apt-get", "install", "-y", "-q", "chromium"], ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "chromium"]):
        try:
            result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(cmd)} failed: {exc}"
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
        tail = tail[0]
        if cmd[1] == "install" and CHROMIUM.exists():
            return None
    return f"apt-get install -y chromium did not install {CHROMIUM}: {tail}"


def _import_playwright() -> str | None:
    try:
        importlib.import_module("playwright.sync_api")
        return None
    except ImportError:
        pass
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "playwright"], capture_output=True,
                            text=True, timeout=900)
    importlib.invalidate_caches()
    try:
        importlib.import_module("playwright.sync_api")
        return None
    except ImportError:
        return f"pip install playwright failed: {(result.stderr or result.stdout).strip()[-300:]}"


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """A Playwright Browser on Debian's Chromium, shared by the session's page tests."""
    reason = _install_chromium() or _import_playwright()
    if reason:
        pytest.skip(f"no browser for the page tests: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
