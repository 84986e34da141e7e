"""Fixtures of the generate tests: a toy ingest cache and an untrained generator checkpoint."""
from __future__ import annotations

import pytest
import torch

from gen_toy import write_toy_cache, write_toy_checkpoint


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """One torch thread per test keeps the 2-core runs fast and the bytes deterministic; no MLflow."""
    monkeypatch.setenv("PIPELINE_TRACKING", "0")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def toy_data(tmp_path):
    return write_toy_cache(tmp_path / "data" / "toy")


@pytest.fixture
def toy_checkpoint(tmp_path):
    return write_toy_checkpoint(tmp_path / "models" / "toy" / "cdcgan" / "best.pt")
