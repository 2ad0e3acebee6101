"""The GraphQL schema of the model-registry application, over :class:`~edgechain.client.Client`.

Queries read certified state (``models``, ``model``, ``blocks``) or run the service
(``generate``); mutations propose blocks (``publishModel``, ``retireModel``). A failure is a
GraphQL error whose ``extensions.code`` is the EdgechainError class name (``ModelNotFound``,
``OperationRejected``, ...) and whose message is the error's one-line message.

Hashes, ids and keys are lower-case hex strings. Sizes and seeds are ``U64``, written as decimal
strings (GraphQL's ``Int`` is 32-bit, and JavaScript rounds JSON numbers past 2^53); heights and
token counts are ``Int``. The ``generate`` arguments are derived from
:class:`~edgechain.service.query.GenerateQuery` (one argument per field, camelCase).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import typing
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import asdict
from typing import Annotated, Any, NewType, TypeVar

import strawberry
from graphql import GraphQLError
from strawberry.scalars import JSON
from strawberry.schema.config import StrawberryConfig
from strawberry.types import Info

from edgechain.chain.application import application_id, known_application_kinds
from edgechain.chain.certificate import Certificate, CertifiedBlock
from edgechain.client import Client
from edgechain.contract.operations import FileRef, RegisterModel
from edgechain.contract.registry import CertifiedModel
from edgechain.errors import ModelNotFound
from edgechain.node.blob_schema import BlobRef
from edgechain.node.gate import ClientGate
from edgechain.node.limits import schema_extensions
from edgechain.node.resolvers import call, check_block_range, gate, propose, typed, typed_error
from edgechain.node.streaming import Generations, run_generation
from edgechain.service import records
from edgechain.service.query import GenerateQuery
from edgechain.service.query import defaults as query_defaults
from edgechain.service.query import parameters as query_parameters
from edgechain.service.records import GenerationRecord

__all__ = [
    "REGISTRY_SCHEMA",
    "application_schema",
    "registry_context",
    "with_generate_arguments",
]

T = TypeVar("T")

U64 = NewType("U64", int)
_U64_MAX = 2**64 - 1


class InvalidU64(ValueError):
    """A U64 argument that is not one: the user's error, reported to them, not logged."""


def _parse_u64(value: Any) -> int:
    """An unsigned 64-bit integer from a JSON number or a decimal string."""
    if isinstance(value, bool):
        raise InvalidU64(f"expected an unsigned 64-bit integer, got {value!r}")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= _U64_MAX:
        raise InvalidU64(f"expected an unsigned 64-bit integer, got {value!r}")
    return value


def _serialize_u64(value: Any) -> str:
    return str(int(value))


_U64_SCALAR = strawberry.scalar(
    name="U64",
    description="An unsigned 64-bit integer, as a decimal string (JSON numbers lose precision "
    "past 2^53 in JavaScript); a decimal string or a JSON number is accepted as input",
    serialize=_serialize_u64,
    parse_value=_parse_u64,
)


def registry_context(client_gate: ClientGate, generations: Generations) -> dict[str, Any]:
    """The execution context the resolvers expect."""
    return {"gate": client_gate, "generations": generations}


# --- output types ----------------------------------------------------------------------------


@strawberry.type(description="A file the service fetches: BLAKE3 hash, size in bytes, URLs.")
class FileInfo:
    blake3: str
    size: U64
    urls: list[str]
    chunks: list[BlobRef] = strawberry.field(description="the manifest of a file stored as blobs")

    @classmethod
    def of(cls, ref: FileRef) -> FileInfo:
        return cls(
            blake3=ref.blake3, size=U64(ref.size), urls=list(ref.urls), chunks=BlobRef.chunks(ref)
        )


# The registry entry's fields (and property) that GraphQL shows unchanged: the others are
# hex, files or the certificate's.
_ENTRY_FIELDS_AS_THEY_ARE = (
    "name",
    "version",
    "format",
    "description",
    "license",
    "retired",
    "registered_height",
    "retired_height",
)


@strawberry.type(description="A registered model version, read from certified state.")
class Model:
    name: str
    version: str
    format: str
    description: str | None
    license: str | None
    retired: bool
    registered_height: int
    retired_height: int | None
    registered_by: str = strawberry.field(description="public key (hex) that registered it")
    weights: FileInfo
    tokenizer: FileInfo
    chain_id: str
    application_id: str
    height: int = strawberry.field(description="height of the block that made the entry current")
    block_hash: str = strawberry.field(description="hash of that block")
    signers: list[str] = strawberry.field(description="validators that certified that block")

    @classmethod
    def of(cls, model: CertifiedModel) -> Model:
        entry = model.entry
        return cls(
            **{name: getattr(entry, name) for name in _ENTRY_FIELDS_AS_THEY_ARE},
            registered_by=entry.registered_by.hex(),
            weights=FileInfo.of(entry.weights),
            tokenizer=FileInfo.of(entry.tokenizer),
            chain_id=model.chain_id.hex(),
            application_id=model.app_id.hex(),
            height=model.height,
            block_hash=model.block_hash.hex(),
            signers=model.certificate.signers,
        )


@strawberry.type(description="A certificate: a quorum of validator signatures on a block.")
class CertificateInfo:
    chain_id: str
    height: int
    block_hash: str
    state_hash: str
    signers: list[str]

    @classmethod
    def of(cls, certificate: Certificate) -> CertificateInfo:
        return cls(
            chain_id=certificate.chain_id.hex(),
            height=certificate.height,
            block_hash=certificate.block_hash.hex(),
            state_hash=certificate.state_hash.hex(),
            signers=certificate.signers,
        )


@strawberry.type(description="One operation of a block, summarised.")
class OperationSummary:
    application_id: str
    application: str | None = strawberry.field(description="the application's kind, if known")
    name: str
    summary: str


@strawberry.type(description="A certified block of the registry's chain.")
class BlockInfo:
    height: int
    hash: str
    previous_hash: str | None
    timestamp: dt.datetime
    signer: str = strawberry.field(description="public key (hex) of the chain owner who proposed")
    state_hash: str
    operations: list[OperationSummary]
    signers: list[str] = strawberry.field(description="validators whose votes certified it")
    blobs: list[BlobRef] = strawberry.field(description="the blobs the block publishes")

    @classmethod
    def of(cls, certified: CertifiedBlock) -> BlockInfo:
        block = certified.block
        kinds = {application_id(block.chain_id, k): k for k in known_application_kinds()}
        return cls(
            height=block.height,
            hash=certified.block_hash.hex(),
            previous_hash=None if block.previous_hash is None else block.previous_hash.hex(),
            timestamp=dt.datetime.fromtimestamp(block.timestamp_us / 1e6, tz=dt.UTC),
            signer=block.signer.hex(),
            state_hash=block.state_hash.hex(),
            operations=[
                OperationSummary(
                    application_id=op.app_id.hex(),
                    application=kinds.get(op.app_id),
                    name=op.name,
                    summary=_summarise(op.name, op.payload),
                )
                for op in block.operations
            ],
            signers=certified.certificate.signers,
            blobs=BlobRef.published_by(block),
        )


def _summarise(name: str, payload: Any) -> str:
    if isinstance(payload, dict) and "name" in payload and "version" in payload:
        return f"{name} {payload['name']} version {payload['version']}"
    return name


def _graphql_type(record: type, description: str) -> Any:
    """A GraphQL object type with ``record``'s fields (a dataclass of plain values), so the
    two cannot drift."""
    hints = typing.get_type_hints(record)
    fields = [(f.name, hints[f.name]) for f in dataclasses.fields(record)]
    declared = dataclasses.make_dataclass(record.__name__, fields)
    return strawberry.type(declared, description=description)


Timings = _graphql_type(records.Timings, "Where a query's time went, in seconds.")


@strawberry.type(description="The final record of a generate query.")
class GenerationResult:
    prompt: str = strawberry.field(description="the prompt, as the engine read it")
    text: str = strawberry.field(
        description="the generated text, prompt excluded (the whole story is prompt + text)"
    )
    stop_reason: str
    input_tokens: int
    output_tokens: int
    seed: U64
    seed_source: str = strawberry.field(description='"query" or "derived"')
    model: Model
    timings: Timings
    receipt: JSON | None = strawberry.field(
        default=None,
        description="the generation's receipt file (format, hash, receipt; docs/receipts.md): "
        "`edgechain receipt verify` replays it",
    )

    @classmethod
    def of(cls, record: GenerationRecord, receipt: Any = None) -> GenerationResult:
        return cls(
            receipt=receipt,
            prompt=record.prompt,
            text=record.text,
            stop_reason=record.stop_reason,
            input_tokens=record.input_tokens,
            output_tokens=record.output_tokens,
            seed=U64(record.seed),
            seed_source=record.seed_source,
            model=Model.of(record.model),
            timings=Timings(**asdict(record.timings)),
        )


# --- input types -----------------------------------------------------------------------------


@strawberry.input(description="A file to register: its BLAKE3 hash (hex), size and URLs.")
class FileInput:
    blake3: str
    size: U64
    urls: list[str]

    def to_ref(self) -> FileRef:
        return FileRef(self.blake3, int(self.size), tuple(self.urls))


@strawberry.input(description="One message of a dialogue: its role and its text.")
class MessageInput:
    role: str = strawberry.field(description="system, user, assistant or tool")
    content: str


_GRAPHQL_TYPES: dict[str, Any] = {
    "text": str,
    "int": int,
    "float": float,
    "u64": U64,
    "texts": list[str],
    "messages": list[MessageInput],
}


def _generate_arguments() -> list[inspect.Parameter]:
    """One GraphQL argument per :class:`GenerateQuery` field: its type, default and help.

    Strawberry reads a resolver's arguments from its signature, so the resolvers below get
    this one (see :func:`with_generate_arguments`) instead of a hand-written list.
    """
    defaults = query_defaults()
    arguments = []
    for name, spec in query_parameters().items():
        kind: Any = _GRAPHQL_TYPES[spec.kind]
        default = defaults.get(name, inspect.Parameter.empty)
        if default is None:
            kind = kind | None
        description = spec.describe(None, show_value=False)
        arguments.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[kind, strawberry.argument(description=description)],
            )
        )
    return arguments


def with_generate_arguments(resolver: Callable[..., Any]) -> Callable[..., Any]:
    """``resolver(self, info, query)`` as a resolver taking the generate arguments: strawberry
    sees one argument per :class:`GenerateQuery` field (the signature set here); the resolver
    gets the query they make, a bad value being a typed GraphQL error before it runs."""
    if inspect.isasyncgenfunction(resolver):

        async def resolve(self: Any, info: Info, **fields: Any) -> Any:
            async for item in resolver(self, info, _generate_query(fields)):
                yield item

    else:

        async def resolve(self: Any, info: Info, **fields: Any) -> Any:
            return await resolver(self, info, _generate_query(fields))

    head = [
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("info", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Info),
    ]
    returns = inspect.signature(resolver).return_annotation
    resolve.__name__ = resolver.__name__
    resolve.__qualname__ = resolver.__qualname__
    resolve.__module__ = resolver.__module__
    resolve.__doc__ = resolver.__doc__
    resolve.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        head + _generate_arguments(), return_annotation=returns
    )
    return resolve


def _generate_query(fields: dict[str, Any]) -> GenerateQuery:
    """The query of a resolver's arguments; a bad value is a typed GraphQL error."""
    if fields.get("messages") is not None:
        fields["messages"] = [{"role": m.role, "content": m.content} for m in fields["messages"]]
    try:
        return GenerateQuery(**fields)
    except Exception as err:
        raise typed_error(err) from err


async def _final_record(info: Info, query: GenerateQuery) -> GenerationResult:
    """Run ``query`` like the SSE endpoint does (so cancelling this request cancels it)."""
    events = run_generation(gate(info), query, info.context["generations"])
    async with aclosing(events):
        async for event in events:
            if event.record is not None:
                return GenerationResult.of(event.record, event.receipt)
            if event.error is not None:
                raise event.error
    raise AssertionError("a generation ends with a record or an error")


# --- root types ------------------------------------------------------------------------------


@strawberry.type
class Query:
    @strawberry.field(description="Every registered model version (retired ones too, unless told).")
    async def models(self, info: Info, include_retired: bool = True) -> list[Model]:
        models = await call(info, lambda c: c.models(include_retired=include_retired))
        return [Model.of(m) for m in models]

    @strawberry.field(description="A model by name: its latest active version, or the version.")
    async def model(self, info: Info, name: str, version: str | None = None) -> Model:
        return Model.of(await call(info, lambda c: c.model(name, version)))

    @strawberry.field(description="Certified blocks from height start up to (excluding) end.")
    async def blocks(self, info: Info, start: int = 0, end: int | None = None) -> list[BlockInfo]:
        check_block_range("blocks", start, end)
        blocks = await call(info, lambda c: list(c.blocks(start, end)))
        return [BlockInfo.of(b) for b in blocks]

    @strawberry.field(
        description="Run a generate query to its end and return the record (the SSE endpoint "
        "streams the tokens instead)."
    )
    @with_generate_arguments
    async def generate(self, info: Info, query: GenerateQuery) -> GenerationResult:
        return await typed(_final_record(info, query))

    # --- Linera compatibility: examples/llm's query shape, `{ prompt(prompt: "...") }` ---------

    @strawberry.field(
        description="Linera examples/llm's query: the text generated for prompt (prompt "
        "excluded) with generate's defaults and the derived seed, by model (default: the "
        "most recently registered active model)."
    )
    async def prompt(self, info: Info, prompt: str, model: str | None = None) -> str:
        if model is None:
            model, version = await call(info, _latest_active_model)
        else:
            version = None
        query = GenerateQuery(model=model, prompt=prompt, version=version)
        return (await typed(_final_record(info, query))).text


def _latest_active_model(client: Client) -> tuple[str, str]:
    """The name and version of the most recently registered active model."""
    active = client.models(include_retired=False)
    if not active:
        raise ModelNotFound("no active model is registered; publish one first")
    latest = max(active, key=lambda m: m.entry.registered_height)
    return latest.entry.name, latest.entry.version


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Register a model version; returns it once certified.")
    async def publish_model(
        self,
        info: Info,
        name: str,
        weights: FileInput,
        tokenizer: FileInput | None = None,
        version: str = "1",
        description: str | None = None,
        license: str | None = None,
        format: Annotated[
            str,
            strawberry.argument(
                description='"llama2c", or "gguf": one file holds weights and tokenizer (give '
                "no tokenizer)"
            ),
        ] = "llama2c",
    ) -> Model:
        # A GGUF file is its own tokenizer (contract/operations.py checks the two refs agree).
        weights_ref = weights.to_ref()
        tokenizer_ref = weights_ref if tokenizer is None else tokenizer.to_ref()
        published = await propose(
            info,
            lambda c: c.register_model(
                RegisterModel(
                    name=name,
                    version=version,
                    weights=weights_ref,
                    tokenizer=tokenizer_ref,
                    description=description,
                    license=license,
                    format=format,
                )
            ),
        )
        return Model.of(published.model)

    @strawberry.mutation(description="Retire a model version; returns the block's certificate.")
    async def retire_model(self, info: Info, name: str, version: str) -> CertificateInfo:
        return CertificateInfo.of(await propose(info, lambda c: c.retire_model(name, version)))


@strawberry.type(description="One generated token (text is empty while a UTF-8 character is "
                 "incomplete; it comes with the token that completes it).")
class TokenUpdate:
    id: int
    text: str


GenerationUpdate = Annotated[TokenUpdate | GenerationResult, strawberry.union("GenerationUpdate")]


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Stream a generate query (graphql-transport-ws): a TokenUpdate per token, "
        "then the GenerationResult. Unsubscribing cancels the generation."
    )
    @with_generate_arguments
    async def generate(
        self, info: Info, query: GenerateQuery
    ) -> AsyncGenerator[GenerationUpdate, None]:
        events = run_generation(gate(info), query, info.context["generations"])
        # Unsubscribing closes this generator, which closes the run, which cancels it.
        async with aclosing(events):
            async for event in events:
                if event.token is not None:
                    yield TokenUpdate(id=event.token.id, text=event.token.text)
                elif event.record is not None:
                    yield GenerationResult.of(event.record, event.receipt)
                elif event.error is not None:
                    raise typed_error(event.error)


class _RegistrySchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        # Syntax, validation and typed errors are the user's, already reported to them: log only
        # what escaped the resolvers' typing (a bug).
        bugs = [
            e
            for e in errors
            if e.original_error is not None
            and not isinstance(e.original_error, GraphQLError | InvalidU64)
        ]
        if bugs:
            super().process_errors(bugs, execution_context)


def application_schema(
    query: type, mutation: type | None = None, subscription: type | None = None
) -> strawberry.Schema:
    """A schema of the node: U64 as the decimal-string scalar, the node's limits, bugs alone
    logged (the registry's, the story book's, the chain-level one)."""
    return _RegistrySchema(
        query=query,
        mutation=mutation,
        subscription=subscription,
        config=StrawberryConfig(scalar_map={U64: _U64_SCALAR}),
        extensions=schema_extensions(),
    )


REGISTRY_SCHEMA = application_schema(Query, Mutation, Subscription)
