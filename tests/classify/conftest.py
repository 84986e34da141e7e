"""Shared fixtures for the classifier tests: one torch thread, a tiny cache of 16 px shapes."""
from __future__ import annotations

import pytest
import torch

from tests.classify.fakes import write_cache


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests run on 2 cores; one torch thread keeps them fast and deterministic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def toy_cache(tmp_path):
    return write_cache(tmp_path / "data" / "toy")
