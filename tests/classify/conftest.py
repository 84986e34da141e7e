"""Shared fixtures for the classifier tests: one torch thread, a tiny cache of 16 px shapes, a tiny ACGAN."""
from __future__ import annotations

import pytest

from tests.classify.fakes import train_tiny_acgan, write_cache


@pytest.fixture
def toy_cache(tmp_path):
    return write_cache(tmp_path / "data" / "toy")


@pytest.fixture(scope="session")
def acgan_checkpoint(tmp_path_factory):
    """models/acgan/best.pt of an ACGAN trained 2 epochs on the toy cache (a few seconds, once per session)."""
    root = tmp_path_factory.mktemp("acgan")
    return train_tiny_acgan(root, write_cache(root / "data" / "toy"))
