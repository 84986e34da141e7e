"""Fixtures of the generate tests: a toy ingest cache and an untrained generator checkpoint."""
from __future__ import annotations

import pytest

from gen_toy import write_toy_cache, write_toy_checkpoint


@pytest.fixture(autouse=True)
def _no_tracking(monkeypatch):
    """No MLflow in the generate tests (one torch thread comes from tests/conftest.py)."""
    monkeypatch.setenv("PIPELINE_TRACKING", "0")


@pytest.fixture
def toy_data(tmp_path):
    return write_toy_cache(tmp_path / "data" / "toy")


@pytest.fixture
def toy_checkpoint(tmp_path):
    return write_toy_checkpoint(tmp_path / "models" / "toy" / "cdcgan" / "best.pt")
