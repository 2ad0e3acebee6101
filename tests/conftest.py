"""Fixtures shared by the tests in this directory (the plugin's come from edgechain.testing)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgechain.service.fetch import Fetcher
from edgechain.testing.models import ModelFiles
from edgechain.testing.weight_server import WeightServer


@pytest.fixture
def stories_server(stories260k: ModelFiles) -> Iterator[WeightServer]:
    """A WeightServer of the stories260K directory itself (stories260K.bin, tok512.bin)."""
    with WeightServer(stories260k.directory) as server:
        yield server


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    """A Fetcher with the default policy."""
    with Fetcher() as fetcher:
        yield fetcher
