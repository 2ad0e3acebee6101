"""Fixtures shared by the tests in this directory (the plugin's come from edgechain.testing)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from network_cli_helpers import make_network, serve_copies
from service_helpers import publish_stories

from edgechain.client import Client
from edgechain.service.cache import ContentCache
from edgechain.service.fetch import Fetcher
from edgechain.testing.models import ModelFiles
from edgechain.testing.pytest_plugin import PublishModel, ServedModel
from edgechain.testing.weight_server import WeightServer

if TYPE_CHECKING:
    from serve_helpers import NodeProcess


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


@pytest.fixture
def served(
    stories260k: ModelFiles, weight_server: WeightServer, weight_server_dir: Path
) -> WeightServer:
    """The plugin's weight server, serving copies of stories260K.bin and tok512.bin."""
    serve_copies(stories260k, weight_server_dir)
    return weight_server


@pytest.fixture
def stories_net(tmp_path: Path, served: WeightServer, stories260k: ModelFiles) -> Path:
    """A network directory with stories260K published (served over loopback by ``served``),
    closed again so that CLI subprocesses and nodes open it themselves."""
    path = make_network(tmp_path / "net")
    with Client.open(path) as client:
        publish_stories(client, served.base_url)
    return path


@pytest.fixture
def cache(tmp_path: Path) -> ContentCache:
    """An empty ContentCache in ``tmp_path / "cache"``."""
    return ContentCache(tmp_path / "cache")


@pytest.fixture
def published(publish_model: PublishModel, stories260k: ModelFiles) -> ServedModel:
    """stories260K published on the plugin's network, served by the plugin's weight server."""
    return publish_model("stories260K", stories260k.weights, stories260k.tokenizer)


@pytest.fixture(scope="module")
def network_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new 4-validator network for the test module's node (closed: the node opens it)."""
    return make_network(tmp_path_factory.mktemp("node") / "net")


@pytest.fixture(scope="module")
def node(network_dir: Path) -> Iterator[NodeProcess]:
    """`edgechain serve` on ``network_dir``, nothing published (a module that needs models
    overrides this fixture)."""
    from serve_helpers import running_node  # finds stories260K on import

    with running_node(network_dir) as node:
        yield node
