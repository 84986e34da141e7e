"""Shared fixtures for the classifier tests: one torch thread, a tiny cache of 16 px shapes."""
from __future__ import annotations

import pytest

from tests.classify.fakes import write_cache


@pytest.fixture
def toy_cache(tmp_path):
    return write_cache(tmp_path / "data" / "toy")
