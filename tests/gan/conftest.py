"""Shared fixtures for the GAN tests: tiny 16 px shape data sets written as ingest caches."""
from __future__ import annotations

import pytest

from gan_toy import tiny_gan_section, write_cache, write_params


@pytest.fixture
def toy_data(tmp_path):
    return write_cache(tmp_path / "data" / "toy")


@pytest.fixture
def toy_params(tmp_path):
    def make(**train_overrides):
        return write_params(tmp_path / "params.yaml", tiny_gan_section(**train_overrides))
    return make
