"""Applications users write: publish a project's module, create applications, call and query them.

The client's half of :mod:`edgechain.chain.modules` (what the chain records) and
:mod:`edgechain.sdk` (what a project is): reading a project's files, checking them before
anything is proposed (they must load as the validators will load them), publishing them as
blobs (resumably: blobs already on chain are skipped), creating an application with JSON
parameters and argument checked against the ABI, and the operations and queries that follow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgechain.blob_publishing import BLOCK_OVERHEAD
from edgechain.chain.blobs import APPLICATION_NAME as BLOBS
from edgechain.chain.blobs import PublishDataBlob, blob_id
from edgechain.chain.block import Operation
from edgechain.chain.certificate import Certificate
from edgechain.chain.modules import (
    APPLICATION_NAME as APPLICATIONS,
)
from edgechain.chain.modules import (
    MAX_MODULE_FILES,
    CreateApplication,
    CreatedApplication,
    PublishModule,
    UseApplication,
    check_module_path,
    created_application_id,
    load_module,
    module_id,
)
from edgechain.errors import InputError, InvalidParameter, OperationRejected, UsageError
from edgechain.files import read_regular
from edgechain.sdk.abi import encode
from edgechain.sdk.loader import SdkModule, inspect_module

if TYPE_CHECKING:
    from edgechain.chain.network import Chain
    from edgechain.client import Client

__all__ = [
    "CreatedApp",
    "PublishedModule",
    "create_application",
    "find_application",
    "module_files",
    "publish_module",
]

#: A project file larger than this is refused before it is read (a module is source code).
MAX_SOURCE_BYTES = 1 << 20


@dataclass(frozen=True)
class PublishedModule:
    """A module certified on chain: its id, its files, and the blocks the publish needed."""

    module_id: bytes
    files: tuple[tuple[str, bytes, int], ...]
    blocks: int
    unchanged: bool


@dataclass(frozen=True)
class CreatedApp:
    """An application created from a module, with the certificate of the creating block."""

    application_id: bytes
    module_id: bytes
    certificate: Certificate


def module_files(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """The Python files of the project at ``path`` (its package directory), by relative path.

    Tests (``tests/``), caches and hidden files are not part of the module."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory (give the project's package directory)")
    sources: dict[str, bytes] = {}
    for file in sorted(root.rglob("*.py")):
        relative = file.relative_to(root).as_posix()
        parts = relative.split("/")
        if parts[0] == "tests" or any(p.startswith(".") or p == "__pycache__" for p in parts):
            continue
        try:
            check_module_path(relative)
        except OperationRejected as exc:
            raise InputError(f"{root}: {exc}") from None
        if not file.is_file():
            raise InputError(f"{file}: not a regular file")
        if file.stat().st_size > MAX_SOURCE_BYTES:
            raise InputError(f"{file}: over {MAX_SOURCE_BYTES} bytes; a module holds source code")
        sources[relative] = read_regular(file, None, InputError, MAX_SOURCE_BYTES)
    if "__init__.py" not in sources:
        raise InputError(f"{root}: no __init__.py (is this an application's package?)")
    if len(sources) > MAX_MODULE_FILES:
        raise InputError(f"{root}: {len(sources)} files, over {MAX_MODULE_FILES} per module")
    return sources


def file_list(sources: dict[str, bytes]) -> tuple[tuple[str, bytes, int], ...]:
    return tuple((path, blob_id(data), len(data)) for path, data in sorted(sources.items()))


def publish_module(client: Client, path: str | os.PathLike[str]) -> PublishedModule:
    """Check the project at ``path`` loads as validators will load it, then publish its files
    as blobs and certify its module. A re-run resumes (or does nothing, ``unchanged``)."""
    sources = module_files(path)
    files = file_list(sources)
    module = module_id(files)
    inspect_module(module, sources)
    chain = client.chain
    apps = chain.application(APPLICATIONS)
    if apps.module_files(module) is not None:
        return PublishedModule(module, files, 0, unchanged=True)
    blobs_service = chain.application(BLOBS)
    todo = [f for f in files if blobs_service.published(f[1]) is None]
    policy = client.network.policy
    for path_, _, size in todo:
        policy.check("maximum_blob_size", size, f"module file {path_} is {size} bytes")
    per_block = policy.blobs_per_block(BLOCK_OVERHEAD)
    blocks = 0
    by_blob = {blob: sources[p] for p, blob, _ in files}
    for start in range(0, len(todo), per_block):
        group = todo[start : start + per_block]
        operations = [PublishDataBlob(blob, size).operation(chain.id) for _, blob, size in group]
        chain.propose(operations, blobs={blob: by_blob[blob] for _, blob, _ in group})
        blocks += 1
    chain.execute(chain.app_id(APPLICATIONS), PublishModule(files))
    return PublishedModule(module, files, blocks + 1, unchanged=False)


def _loaded(client: Client, module: bytes, chain: Chain | None = None) -> SdkModule:
    files = (chain or client.chain).application(APPLICATIONS).module_files(module)
    if files is None:
        raise UsageError(f"module {module.hex()[:16]} is not published on this chain")
    loaded = load_module(module, files)
    assert isinstance(loaded, SdkModule)
    return loaded


def parse_json(text: str | None, what: str) -> Any:
    """A JSON command-line argument (None: null)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidParameter(f"{what}: not JSON ({exc.msg} at character {exc.pos})") from None


def create_application(
    client: Client, module: bytes, parameters: Any = None, argument: Any = None
) -> CreatedApp:
    """Create an application from ``module`` with ``parameters`` and instantiation ``argument``
    (JSON-like values, checked against the module's ABI: InvalidParameter names the field)."""
    from edgechain.sdk.abi import decode

    abi = _loaded(client, module).contract_class.abi
    params = encode(decode(abi.parameters, parameters, "parameters"))
    arg = encode(decode(abi.instantiation_argument, argument, "argument"))
    chain = client.chain
    certificate = chain.execute(chain.app_id(APPLICATIONS), CreateApplication(module, params, arg))
    # The creating operation is the block's first (index 0) at the height it was certified.
    app_id = created_application_id(module, chain.id, certificate.height, 0)
    return CreatedApp(app_id, module, certificate)


def applications(client: Client, chain: Chain | None = None) -> list[CreatedApplication]:
    """The applications ``chain`` (default: the client's) knows: created there, or learnt from
    a message (chain/modules.py)."""
    return (chain or client.chain).application(APPLICATIONS).applications()


def find_application(
    client: Client, text: str, chain: Chain | None = None, elsewhere: bool = False
) -> CreatedApplication:
    """The created application ``text`` names: its id or a unique prefix of it, on ``chain``
    (default: the client's), or if ``elsewhere`` on the chain that created it."""
    text = text.strip().lower()
    here = chain or client.chain
    found = [a for a in applications(client, here) if a.app_id.hex().startswith(text)]
    if not found and text:
        created = [
            (c, a)
            for c in client.network.chains()
            if c.id != here.id
            for a in applications(client, c)
            if a.height >= 0 and a.app_id.hex().startswith(text)
        ]
        if elsewhere and len(created) == 1:
            return created[0][1]
        if created:
            names = ", ".join(repr(c.name) for c, _ in created)
            raise UsageError(
                f"application {text!r} is not on chain {here.name!r} yet (created on {names}): "
                "its first operation there (`edgechain app call`) or message brings it"
            )
    if len(found) == 1 and text:
        return found[0]
    if not found:
        raise UsageError(f"no application {text!r} on this chain (`edgechain app list`)")
    raise UsageError(f"application prefix {text!r} names {len(found)} applications")


def call_application(
    client: Client, app: CreatedApplication, operation: Any, chain: Chain | None = None
) -> tuple[Any, Certificate]:
    """Propose a block with ``operation`` (``{"Name": {fields}}``); its response, certificate.
    An application created on another chain is brought to this one by the same block
    (``UseApplication``: its description, which validators check against its creator's block)."""
    chain = chain or client.chain
    if any(a.app_id == app.app_id for a in applications(client, chain)):
        abi = _loaded(client, app.module, chain).contract_class.abi
        return _propose(chain, app.app_id, [abi.operation_from_json(operation)])
    creator = _creator(client, app)
    abi = _loaded(client, app.module, creator).contract_class.abi
    op = abi.operation_from_json(operation)
    return _propose(chain, app.app_id, [op], first=_use_operation(creator, app, chain))


def _creator(client: Client, app: CreatedApplication) -> Chain:
    for chain in client.network.chains():
        if any(a.app_id == app.app_id and a.height >= 0 for a in applications(client, chain)):
            return chain
    raise UsageError(f"no chain here created application {app.app_id.hex()[:16]}")


def _use_operation(creator: Chain, app: CreatedApplication, chain: Chain) -> Operation:
    operations = creator.block(app.height).block.operations
    index = next(
        i
        for i in range(len(operations))
        if created_application_id(app.module, creator.id, app.height, i) == app.app_id
    )
    files = creator.application(APPLICATIONS).module_files(app.module)
    assert files is not None  # the creator's state records the module it created from
    use = UseApplication(app.app_id, creator.id, app.height, index, tuple(files), app.parameters)
    return Operation(chain.app_id(APPLICATIONS), use.operation_name, use.to_payload())


def _propose(
    chain: Chain, app_id: bytes, operations: Sequence[Any], first: Operation | None = None
) -> tuple[Any, Certificate]:
    ops = [Operation(app_id, type(op).__name__, encode(op)) for op in operations]
    if first is not None:
        ops.insert(0, first)
    certificate = chain.propose(ops)
    responses = chain.last_responses
    return (responses[-1] if responses else None), certificate


def service_of(client: Client, app: CreatedApplication, chain: Chain | None = None) -> Any:
    """The application's service over certified state, with the client as its host."""
    chain = chain or client.chain
    context = chain.service_context(app.app_id)
    return _loaded(client, app.module, chain).service(
        context, app.parameters, host=_Host(client)
    )


def query_application(
    client: Client, app: CreatedApplication, request: dict[str, Any], chain: Chain | None = None
) -> dict[str, Any]:
    """Answer a GraphQL request on the application's service; operations its mutations
    scheduled are then proposed in one block (as ``linera service`` does)."""
    chain = chain or client.chain
    service = service_of(client, app, chain)
    body = service.handle_query(request)
    scheduled = service.runtime.scheduled
    if scheduled and "errors" not in body:
        _, certificate = _propose(chain, app.app_id, scheduled)
        body["certificate"] = {"height": certificate.height, "signers": certificate.signers}
    return body


class _Host:
    """What a service may ask of the client: certified models, generation, verified fetches."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def models(self) -> list[Any]:
        return self._client.models(include_retired=False)

    def generate_text(self, model: str, prompt: str, **parameters: Any) -> Any:
        from edgechain.service.query import GenerateQuery

        query = GenerateQuery(model=model, prompt=prompt, **parameters)
        return self._client.generate(query).collect()

    def fetch(self, url: str, expected_blake3: str) -> bytes:
        from edgechain.service.fetch import Fetcher

        with Fetcher(self._client.fetch_policy) as fetcher:
            return fetcher.fetch(url, expected_blake3=expected_blake3)
