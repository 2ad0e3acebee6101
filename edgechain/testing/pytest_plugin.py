"""pytest fixtures for testing code against a local edgechain network.

Installed with the package (entry point ``pytest11: edgechain``), so any project's tests can use
them without imports (the types they use come from ``edgechain``)::

    from edgechain import GenerateQuery

    def test_my_model(edgechain_network, publish_model, stories260k, service_client):
        publish_model("stories260K", stories260k.weights, stories260k.tokenizer)
        record = service_client.generate(
            GenerateQuery(model="stories260K", prompt="Once upon a time", temperature=0)
        ).collect()
        assert record.prompt == "Once upon a time"
        assert record.text.startswith(", there was a little girl")

Fixtures (function-scoped, but for ``stories260k``: each test gets a fresh network in its
``tmp_path``; the service runs the wasm guest, or the native module with
``pytest --edgechain-engine native``):

``edgechain_network``
    a :class:`~edgechain.client.Client` on a new 4-validator network.
``edgechain_fetch_policy``
    the :class:`~edgechain.service.fetch.FetchPolicy` of the fixtures' clients (``None``: the
    default); override it in a test module for another.
``weight_server``
    a running :class:`~edgechain.testing.weight_server.WeightServer` serving an (initially
    empty) directory, ``weight_server_dir``; files dropped there are served at once.
``publish_model``
    ``publish_model(name, weights, tokenizer, version="1", **options) -> ServedModel``:
    copies two local files into the weight server's directory, publishes them with their
    loopback URLs (not fetched to check them: they serve the copies; ``check_urls=True``
    does) and returns the certified entry (``.certificate`` is its certificate) with
    where it is served: ``.weights_url``/``.tokenizer_url`` and the served copies
    ``.weights_file``/``.tokenizer_file``.
``tamper_model``
    ``tamper_model(model, file="weights", offset=0)``: from now on the weight server serves
    ``model``'s weights (or ``"tokenizer"``) with the byte at ``offset`` flipped, so they no
    longer match the certified BLAKE3 hash. The content cache answers from the verified bytes
    it already holds, without fetching: a tamper test must fetch through a service with an
    empty cache (``empty_cache_client()``, or a network that never ran the model).
``empty_cache_client``
    ``empty_cache_client() -> Client``: another :class:`~edgechain.client.Client` on the
    test's network (as of the call) whose content cache is a new, empty directory
    (``.cache_dir``) and whose service has loaded no model: its first ``generate`` of a model
    fetches and verifies the files.
``stories260k``
    :class:`~edgechain.testing.models.ModelFiles` of the stories260K pair (session-scoped),
    found by :func:`edgechain.testing.models.stories260k`: ``$EDGECHAIN_MODELS_DIR`` (the
    directory holding the files, or its parent), else ``<repo>/../shared/models/stories260K``.
    A test using it fails, with the places it looked, when the files are absent.
``add_block``
    ``add_block(*operations, signer=None) -> Certificate``: a block of registry operations
    (``RegisterModel``, ``RetireModel``) certified on the network's chain.
``service_client``
    the registry's service of the network (a
    :class:`~edgechain.service.runtime.ModelService`): ``service_client.generate(query)``.
``mint_story``
    ``mint_story(query, oracle_budget_s=None) -> MintedStory``: a story minted on the story book
    (validators re-execute its generation, on wasm and native in turn); ``.receipt`` is its
    receipt.
``verify_receipt``
    ``verify_receipt(receipt) -> Verification``: replays a receipt (a
    :class:`~edgechain.service.receipt.Receipt`, or its file's path or JSON) against the
    network; raises ReceiptMismatch naming the field or the first diverging token.
``edgechain_application``
    ``edgechain_application(path, parameters=None, argument=None) -> ApplicationHandle``:
    publishes the application project at ``path`` (edgechain.sdk) and creates it on the test's
    network; the handle's ``call(operation)`` proposes ``{"Name": {fields}}`` and returns the
    response, ``query(graphql, variables=None)`` returns the service's ``data`` (mutations'
    operations proposed afterwards; GraphQL errors raise InvalidQuery).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import pytest

from edgechain.chain.certificate import Certificate
from edgechain.client import Client
from edgechain.contract.registry import APPLICATION_NAME, CertifiedModel
from edgechain.service.engine import ENGINE_KINDS, open_engine
from edgechain.service.fetch import FetchPolicy
from edgechain.service.runtime import ModelService
from edgechain.testing import models
from edgechain.testing.models import ModelFiles
from edgechain.testing.weight_server import HostFault, WeightServer

__all__ = ["ModelFiles", "ServedModel"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("edgechain")
    group.addoption(
        "--edgechain-engine",
        choices=ENGINE_KINDS,
        default="wasm",
        help="engine of the edgechain fixtures' service (default wasm)",
    )


@pytest.fixture
def edgechain_fetch_policy() -> FetchPolicy | None:
    """The fetch policy of the fixtures' clients: None, the default. A test module overrides
    this fixture for another (e.g. short timeouts, for tests of stalled downloads)."""
    return None


@pytest.fixture
def edgechain_network(
    tmp_path: Path, request: pytest.FixtureRequest, edgechain_fetch_policy: FetchPolicy | None
) -> Iterator[Client]:
    """A Client on a fresh 4-validator network in ``tmp_path / "edgechain-net"``."""
    kind = request.config.getoption("--edgechain-engine")
    # The wasm engine is opened on the service's first use, so chain-only tests never need it.
    engine = None if kind == "wasm" else open_engine(kind)
    with Client.up(
        tmp_path / "edgechain-net", validators=4, engine=engine, fetch_policy=edgechain_fetch_policy
    ) as client:
        yield client


@pytest.fixture
def weight_server_dir(tmp_path: Path) -> Path:
    """The directory the ``weight_server`` fixture serves (empty at first)."""
    directory = tmp_path / "served"
    directory.mkdir()
    return directory


@pytest.fixture
def weight_server(weight_server_dir: Path) -> Iterator[WeightServer]:
    """A WeightServer on loopback serving ``weight_server_dir``."""
    with WeightServer(weight_server_dir) as server:
        yield server


@dataclass(frozen=True, eq=False)
class ServedModel(CertifiedModel):
    """A model the ``publish_model`` fixture published: the certified entry, and where the
    fixture's weight server serves its two files.

    It equals the :class:`CertifiedModel` it extends (``client.model(name) == served``): where
    the files are served is not part of what was certified.
    """

    weights_url: str
    tokenizer_url: str
    weights_file: Path  # the served copy, in ``weight_server_dir``
    tokenizer_file: Path

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CertifiedModel):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in fields(CertifiedModel))

    __hash__ = CertifiedModel.__hash__


PublishModel = Callable[..., ServedModel]


@pytest.fixture
def publish_model(
    edgechain_network: Client, weight_server: WeightServer, weight_server_dir: Path
) -> PublishModel:
    """``publish_model(name, weights, tokenizer, version="1", **options) -> ServedModel``.

    Serves copies of the two local files from ``weight_server`` and publishes them (``options``
    go to :meth:`Client.publish_model`, e.g. ``description``); returns the certified entry with
    the files' URLs and served copies.
    """

    def publish(
        name: str,
        weights: str | os.PathLike[str],
        tokenizer: str | os.PathLike[str],
        version: str = "1",
        **options: Any,
    ) -> ServedModel:
        urls, served_files = [], []
        for source in (Path(weights), Path(tokenizer)):
            served = weight_server_dir / f"{name}-{version}-{source.name}"
            shutil.copyfile(source, served)
            served_files.append(served)
            urls.append(weight_server.url(served.name))
        # The URLs serve the copies just made: publish need not fetch them to check, and a
        # test's count of the server's requests stays the service's own.
        options.setdefault("check_urls", False)
        published = edgechain_network.publish_model(
            name,
            weights=weights,
            tokenizer=tokenizer,
            version=version,
            weights_urls=[urls[0]],
            tokenizer_urls=[urls[1]],
            **options,
        )
        model = published.model
        return ServedModel(
            **{f.name: getattr(model, f.name) for f in fields(model)},
            weights_url=urls[0],
            tokenizer_url=urls[1],
            weights_file=served_files[0],
            tokenizer_file=served_files[1],
        )

    return publish


TamperModel = Callable[..., None]


@pytest.fixture
def tamper_model(weight_server: WeightServer) -> TamperModel:
    """``tamper_model(model, file="weights", offset=0)``: serve ``model``'s file (a
    :class:`ServedModel`) with the byte at ``offset`` flipped from now on.

    The content cache answers from verified bytes it holds without fetching, so the tampered
    bytes are only seen by a service with an empty cache (``empty_cache_client``).
    """

    def tamper(
        model: ServedModel, file: Literal["weights", "tokenizer"] = "weights", offset: int = 0
    ) -> None:
        if file not in ("weights", "tokenizer"):
            raise ValueError(f'file must be "weights" or "tokenizer", got {file!r}')
        served: Path = getattr(model, f"{file}_file")
        weight_server.inject(served.name, HostFault(corrupt_offset=offset))

    return tamper


EmptyCacheClient = Callable[[], Client]


@pytest.fixture
def empty_cache_client(
    edgechain_network: Client,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    edgechain_fetch_policy: FetchPolicy | None,
) -> Iterator[EmptyCacheClient]:
    """``empty_cache_client() -> Client``: another Client on the test's network, as of now,
    with its own new, empty content cache and no model loaded (its first ``generate`` of a
    model fetches the files and checks their hashes). Closed when the test ends."""
    kind = request.config.getoption("--edgechain-engine")
    opened: list[Client] = []

    def open_client() -> Client:
        engine = None if kind == "wasm" else open_engine(kind)
        cache_dir = tmp_path / f"empty-cache-{len(opened)}"
        cache_dir.mkdir()
        client = Client.open(
            edgechain_network.network.path,
            engine=engine,
            cache_dir=cache_dir,
            fetch_policy=edgechain_fetch_policy,
        )
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


@pytest.fixture(scope="session")
def stories260k(request: pytest.FixtureRequest) -> ModelFiles:
    """The stories260K checkpoint and tokenizer (fails, saying where it looked, if absent)."""
    try:
        return models.stories260k((Path(str(request.config.rootpath)),))
    except FileNotFoundError as err:
        pytest.fail(str(err), pytrace=False)


AddBlock = Callable[..., Certificate]


@pytest.fixture
def add_block(edgechain_network: Client) -> AddBlock:
    """``add_block(*operations, signer=None) -> Certificate`` on the registry application."""

    def add(*operations: Any, signer: Any = None) -> Certificate:
        chain = edgechain_network.chain  # looked up per call, never cached
        return chain.execute(chain.app_id(APPLICATION_NAME), *operations, signer=signer)

    return add


@pytest.fixture
def service_client(edgechain_network: Client) -> ModelService:
    """The network's registry service, to run ``generate`` queries."""
    return edgechain_network.service


@pytest.fixture
def mint_story(edgechain_network: Client) -> Callable[..., Any]:
    """``mint_story(query, oracle_budget_s=None) -> MintedStory`` on the network's story book."""
    return edgechain_network.mint_story


@pytest.fixture
def verify_receipt(edgechain_network: Client) -> Callable[[Any], Any]:
    """``verify_receipt(receipt)``: replay a receipt (object, file path or JSON) on the network."""
    from edgechain.service.receipt import Receipt
    from edgechain.service.receipt import verify_receipt as verify

    def check(receipt: Any) -> Any:
        if isinstance(receipt, str | os.PathLike):
            receipt = Receipt.load(receipt)
        elif isinstance(receipt, dict):
            receipt = Receipt.from_json(receipt)
        return verify(receipt, edgechain_network)

    return check


@dataclass(frozen=True)
class ApplicationHandle:
    """A created application on the test's network (the ``edgechain_application`` fixture)."""

    client: Client
    application_id: bytes
    module_id: bytes

    def call(self, operation: Any) -> Any:
        """Propose ``operation`` (``{"Name": {fields}}``); its response."""
        response, _ = self.client.call_application(self.application_id, operation)
        return response

    def query(self, graphql: str, variables: dict[str, Any] | None = None) -> Any:
        """The service's ``data`` for a GraphQL request (InvalidQuery on errors)."""
        from edgechain.errors import InvalidQuery

        body = self.client.query_application(
            self.application_id, {"query": graphql, "variables": variables}
        )
        if "errors" in body:
            raise InvalidQuery("; ".join(error["message"] for error in body["errors"]))
        return body["data"]


@pytest.fixture
def edgechain_application(edgechain_network: Client) -> Callable[..., ApplicationHandle]:
    def create(
        path: str | os.PathLike[str], parameters: Any = None, argument: Any = None
    ) -> ApplicationHandle:
        module = edgechain_network.publish_module(path).module_id
        created = edgechain_network.create_application(module, parameters, argument)
        return ApplicationHandle(edgechain_network, created.application_id, module)

    return create
