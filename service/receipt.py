"""Generation receipts: what a certified model said, in a form anyone can replay.

A receipt binds one generation to the chain: the chain and application ids, the registry
entry's certificate, the weights' and tokenizer's BLAKE3, the guest module's BLAKE3 and the
engine settings that decide its bits, the seed with what it was derived from, every sampling
parameter, the prompt and the output (token ids, their hash, the text, the stop reason). Its
body is a canonical value (chain/encoding.py: only maps, lists, strings, integers, None) and
its hash is ``hash_value("receipt", body)``; floats are written as Python's shortest
round-trip text (``repr``), u64 seeds as decimal strings, hashes and ids as lowercase hex. The
file format is in docs/receipts.md.

:func:`verify_receipt` checks a receipt against a network directory (its own, or a copy):
the certificate against the committee, the entry against certified state, the seed against
its inputs, then verifies the recorded tokens as a claim on either engine (the verdict of a full
replay, at prefill speed) and compares the text and stop reason.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import blake3

from edgechain.chain.certificate import Certificate, verify_certificate
from edgechain.chain.encoding import hash_value
from edgechain.contract.generation_request import decode_parameters, sampling_parameters
from edgechain.contract.generation_request import parameters as request_parameters
from edgechain.contract.registry import APPLICATION_NAME, CertifiedModel
from edgechain.contract.story_book import token_ids_hash
from edgechain.errors import (
    CertificateError,
    EdgechainError,
    InvalidParameter,
    InvalidReceipt,
    ReceiptMismatch,
)
from edgechain.files import RECEIPT_MAX_BYTES, read_regular, write_atomically
from edgechain.service.engine.base import Engine
from edgechain.service.query import GenerateQuery, seed_parameters
from edgechain.service.query_stream import QueryStream
from edgechain.service.records import PreparedQuery, stop_reason_name
from edgechain.service.seed import SEED_DOMAIN, derive_seed

if TYPE_CHECKING:
    from edgechain.chain.network import Chain, Network
    from edgechain.contract.registry import ModelRegistryService
    from edgechain.service.runtime import ModelService

__all__ = [
    "ENGINE_SETTINGS",
    "FORMAT",
    "OpenNetwork",
    "Receipt",
    "Verification",
    "build_receipt",
    "receipt_json",
    "receipt_of",
    "engine_identity",
    "query_from_parameters",
    "query_parameters",
    "token_ids_hash",
    "verify_receipt",
]

#: The ``format`` of a receipt file (docs/receipts.md).
FORMAT = "edgechain-receipt/v1"
#: Hash domains (chain/encoding.py ``domain_tag``).
RECEIPT_DOMAIN = "receipt"

#: The engine settings the output's bits depend on (docs/determinism.md): both engines run
#: the same crate with these, so a receipt made on one replays on the other.
ENGINE_SETTINGS: dict[str, Any] = {
    "float": "f32",
    "fma": False,
    "math": "libm",
    "matvec_lanes": 32,
    "relaxed_simd": False,
}

_U64_MAX = 2**64 - 1


def _guest_blake3(engine: Engine | None) -> str | None:
    """BLAKE3 of the wasm guest this machine runs (the engine's, else the packaged one);
    None when there is none (a native-only install)."""
    from edgechain.service.engine.wasm import locate_guest

    try:
        path = locate_guest(getattr(engine, "guest_path", None))
        stat = path.stat()
        return _file_blake3(str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    except (EdgechainError, OSError):
        return None


@functools.lru_cache(maxsize=8)
def _file_blake3(path: str, size: int, mtime_ns: int, inode: int) -> str:
    # Keyed by the file's identity: a node hashes its guest once, not once per receipt.
    return blake3.blake3(Path(path).read_bytes()).hexdigest()


def engine_identity(engine: Engine | None) -> dict[str, Any]:
    """The ``engine`` part of a receipt: the guest module and the settings. Not which backend
    ran: both give the same bits, and a receipt's hash must not depend on it (validators on
    different engines compare receipt hashes, service/oracle.py)."""
    return {
        "guest_blake3": _guest_blake3(engine),
        "settings": dict(ENGINE_SETTINGS),
    }


def _seed_inputs(source: str, messages: bool = False) -> list[str]:
    """The receipt fields a derived seed is computed from (service/seed.py), in its order
    (``messages`` for a query of messages: GenerateQuery.seed_query)."""
    if source != "derived":
        return []
    return [
        "chain_id",
        "certificate.block_hash",
        "application_id",
        "model.name",
        "model.version",
        "prompt",
        *(["messages"] if messages else []),
        *(f"parameters.{name}" for name in sorted(seed_parameters())),
    ]


@dataclass(frozen=True)
class Receipt:
    """A receipt's body (a canonical value) and the hash its file states."""

    body: dict[str, Any]
    #: The hash the file states (a receipt built here states its own).
    stated_hash: str = field(default="")

    def __post_init__(self) -> None:
        if not self.stated_hash:
            object.__setattr__(self, "stated_hash", self.hash)

    @property
    def hash(self) -> str:
        """The receipt's own hash (hex), computed over its canonical encoding."""
        return hash_value(RECEIPT_DOMAIN, self.body).hex()

    def to_json(self) -> dict[str, Any]:
        """The file's JSON object: format, hash, receipt (docs/receipts.md)."""
        return {"format": FORMAT, "hash": self.hash, "receipt": self.body}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the file (through a temporary name, so a reader never sees half of it)."""
        write_atomically(path, self.dumps().encode("utf-8"), "receipt", InvalidReceipt)

    @classmethod
    def from_json(cls, data: Any) -> Receipt:
        """Parse a receipt file's JSON object; InvalidReceipt naming the first bad field."""
        if not isinstance(data, dict):
            raise InvalidReceipt("a receipt is a JSON object")
        if data.get("format") != FORMAT:
            raise InvalidReceipt(f"format: expected {FORMAT!r}, got {data.get('format')!r}")
        stated = data.get("hash")
        if not _is_hex(stated, 32):
            raise InvalidReceipt("hash: expected 64 hex digits")
        body = data.get("receipt")
        if not isinstance(body, dict):
            raise InvalidReceipt("receipt: expected an object")
        _check_schema(body)
        return cls(body, stated)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Receipt:
        raw = read_regular(path, "receipt", InvalidReceipt, RECEIPT_MAX_BYTES)
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InvalidReceipt(f"receipt {path} is not JSON: {err}") from None
        return cls.from_json(data)

    # --- typed views of the body --------------------------------------------------------------

    @property
    def seed(self) -> int:
        return int(self.body["seed"]["value"])

    @property
    def token_ids(self) -> list[int]:
        return list(self.body["output"]["token_ids"])

    @property
    def text(self) -> str:
        return self.body["output"]["text"]

    def query(self) -> GenerateQuery:
        """The generate query the receipt records, with its seed (what a replay runs)."""
        try:
            return query_from_parameters(
                self.body["model"]["name"],
                self.body["model"]["version"],
                self.body["prompt"],
                self.body["parameters"],
                self.seed,
                messages=self.body.get("messages"),
            )
        except InvalidParameter as err:
            raise InvalidReceipt(f"parameters: {err}") from None


def query_parameters(query: GenerateQuery) -> dict[str, Any]:
    """Every sampling parameter of ``query`` in canonical encoding
    (contract/generation_request.py: floats as ``repr`` text)."""
    return query.encoded_parameters()


def query_from_parameters(
    model: str,
    version: str,
    prompt: str,
    parameters: dict[str, Any],
    seed: int | None,
    *,
    messages: list[dict[str, str]] | None = None,
) -> GenerateQuery:
    """The query :func:`query_parameters` describes, with its ``messages`` (a receipt's, in
    canonical encoding) when it has them (InvalidParameter if a value is bad)."""
    return GenerateQuery(
        model=model,
        version=version,
        prompt=prompt,
        messages=messages,
        seed=seed,
        **decode_parameters(parameters),
    )


def build_receipt(stream: QueryStream) -> Receipt:
    """The receipt of a finished query stream (run it to its end first)."""
    record, prepared = stream.record, stream.prepared
    if record is None or prepared is None:
        raise ValueError("a receipt is built from a query stream that has finished")
    return receipt_of(prepared, stream.engine, record.token_ids, record.text, record.stop_reason)


def receipt_of(
    prepared: PreparedQuery,
    engine: Engine | None,
    token_ids: Sequence[int],
    text: str,
    stop_reason: str,
) -> Receipt:
    """The receipt of ``prepared``'s generation, whose output (ids, text, stop reason's name)
    was generated or verified (``ModelService.verify``) on ``engine``."""
    model, query = prepared.model, prepared.query
    entry = model.entry
    ids = list(token_ids)
    body = {
        "chain_id": model.chain_id.hex(),
        "application_id": model.app_id.hex(),
        "model": {"name": entry.name, "version": entry.version},
        "certificate": model.certificate.to_json(),
        "weights_blake3": entry.weights.blake3,
        "tokenizer_blake3": entry.tokenizer.blake3,
        "engine": engine_identity(engine),
        "seed": {
            "value": str(prepared.seed),
            "source": prepared.seed_source,
            "derivation": SEED_DOMAIN if prepared.seed_source == "derived" else None,
            "inputs": _seed_inputs(prepared.seed_source, query.messages is not None),
        },
        "parameters": query_parameters(query),
        "prompt": query.prompt,
        "output": {
            "token_ids": ids,
            "token_ids_blake3": token_ids_hash(ids),
            "text": text,
            "stop_reason": stop_reason,
        },
    }
    if query.messages is not None:
        # Only a query of messages has the field: a prompt's receipt is what it always was.
        body["messages"] = request_parameters()["messages"].encode(query.messages)
    return Receipt(body)


def receipt_json(stream: QueryStream) -> dict[str, Any] | None:
    """The receipt file's JSON for a finished stream, or None for a stream that no
    :class:`~edgechain.service.runtime.ModelService` started (it knows no certified query)."""
    if getattr(stream, "prepared", None) is None or getattr(stream, "record", None) is None:
        return None
    return build_receipt(stream).to_json()


# --- schema ------------------------------------------------------------------------------------


def _is_hex(value: Any, size: int) -> bool:
    if not isinstance(value, str) or len(value) != 2 * size or value != value.lower():
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def _hex32(value: Any) -> bool:
    return _is_hex(value, 32)


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _u64_text(value: Any) -> bool:
    return (
        isinstance(value, str)
        and value.isdigit()
        and value == str(int(value))
        and int(value) <= _U64_MAX
    )


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _ints(value: Any) -> bool:
    return isinstance(value, list) and all(_int(v) and 0 <= v < 2**31 for v in value)


_SCHEMA: dict[str, Any] = {
    "chain_id": _hex32,
    "application_id": _hex32,
    "model": {"name": _text, "version": _text},
    "certificate": lambda v: isinstance(v, dict),
    "weights_blake3": _hex32,
    "tokenizer_blake3": _hex32,
    "engine": {
        "guest_blake3": lambda v: v is None or _hex32(v),
        "settings": lambda v: isinstance(v, dict),
    },
    "seed": {
        "value": _u64_text,
        "source": lambda v: v in ("derived", "query"),
        "derivation": lambda v: v is None or isinstance(v, str),
        "inputs": _texts,
    },
    "parameters": {
        name: spec.is_canonical
        for name, spec in request_parameters().items()
        if name in sampling_parameters()
    },
    "prompt": _text,
    "messages": request_parameters()["messages"].is_canonical,
    "output": {
        "token_ids": _ints,
        "token_ids_blake3": _hex32,
        "text": _text,
        "stop_reason": _text,
    },
}


#: Fields only some receipts have (``messages``: a query of messages).
_OPTIONAL = frozenset({"messages"})


def _check_schema(body: dict[str, Any], schema: dict[str, Any] = _SCHEMA, at: str = "") -> None:
    extra = sorted(set(body) - set(schema))
    if extra:
        raise InvalidReceipt(f"{at}{extra[0]}: not a receipt field")
    for name, rule in schema.items():
        path = f"{at}{name}"
        if name not in body:
            if not at and name in _OPTIONAL:
                continue
            raise InvalidReceipt(f"{path}: missing")
        value = body[name]
        if isinstance(rule, dict):
            if not isinstance(value, dict):
                raise InvalidReceipt(f"{path}: expected an object")
            _check_schema(value, rule, path + ".")
        elif not rule(value):
            raise InvalidReceipt(f"{path}: malformed value {value!r}"[:200])


# --- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """What :func:`verify_receipt` established."""

    receipt_hash: str
    model: str
    version: str
    tokens: int
    engine: str
    certificate_height: int
    signers: list[str]
    seconds: float


class OpenNetwork(Protocol):
    """What :func:`verify_receipt` needs of an open network: the wiring layer's client is one."""

    @property
    def network(self) -> Network: ...

    @property
    def chain(self) -> Chain: ...

    @property
    def registry(self) -> ModelRegistryService: ...

    @property
    def service(self) -> ModelService: ...


def verify_receipt(receipt: Receipt, net: OpenNetwork) -> Verification:
    """Check ``receipt`` against the open network ``net``, then replay it on ``net``'s
    service engine (weights from its cache, else fetched by their certified hash).

    Raises CertificateError (exit 4) when the certificate or the certified entry does not
    hold; ReceiptMismatch (exit 7) naming the field, or the first token that differs; the
    service's errors (fetch, hash) when the weights cannot be had.
    """
    started = time.perf_counter()
    body = receipt.body
    certificate = _check_certificate(receipt, net)
    model = _check_entry(receipt, net, certificate)
    _check_seed(receipt)
    if token_ids_hash(receipt.token_ids) != body["output"]["token_ids_blake3"]:
        raise ReceiptMismatch("output.token_ids_blake3: not the hash of output.token_ids")
    _check_engine(receipt, net.service.engine)
    _check_output(receipt, net, model)
    # Last: every field above matched its own check; any other change shows here.
    if receipt.stated_hash != receipt.hash:
        raise ReceiptMismatch(
            f"hash: the receipt's contents hash to {receipt.hash}, it states "
            f"{receipt.stated_hash} (a field was changed after it was made)"
        )
    return Verification(
        receipt_hash=receipt.hash,
        model=body["model"]["name"],
        version=body["model"]["version"],
        tokens=len(receipt.token_ids),
        engine=net.service.engine.kind,
        certificate_height=certificate.height,
        signers=certificate.signers,
        seconds=time.perf_counter() - started,
    )


def _check_certificate(receipt: Receipt, net: OpenNetwork) -> Certificate:
    body = receipt.body
    certificate = Certificate.from_json(body["certificate"])
    verify_certificate(certificate, net.network.committee)
    chain = net.chain
    if certificate.chain_id.hex() != body["chain_id"]:
        raise CertificateError("chain_id: the certificate is for another chain")
    if chain.id.hex() != body["chain_id"]:
        raise CertificateError(
            f"chain_id: the receipt is for chain {body['chain_id']}, this network's is "
            f"{chain.id.hex()}"
        )
    if chain.app_id(APPLICATION_NAME).hex() != body["application_id"]:
        raise CertificateError(
            "application_id: not the model registry's application id on this chain"
        )
    blocks = list(chain.blocks(certificate.height, certificate.height + 1))
    if not blocks:
        raise CertificateError(
            f"certificate.height: this network has no block at height {certificate.height}"
        )
    stored = blocks[0]
    if stored.block_hash != certificate.block_hash:
        raise CertificateError(
            f"certificate.block_hash: block {certificate.height} of this chain is "
            f"{stored.block_hash.hex()}, not {certificate.block_hash.hex()}"
        )
    return certificate


def _check_entry(receipt: Receipt, net: OpenNetwork, certificate: Certificate) -> CertifiedModel:
    body = receipt.body
    name, version = body["model"]["name"], body["model"]["version"]
    matches = [
        m
        for m in net.registry.list_models(include_retired=True)
        if (m.entry.name, m.entry.version) == (name, version)
    ]
    if not matches:
        raise CertificateError(f"model: {name} version {version} is not registered on this chain")
    model = matches[0]
    entry = model.entry
    if entry.registered_height != certificate.height:
        raise CertificateError(
            f"certificate.height: {name} version {version} was registered at height "
            f"{entry.registered_height}, not {certificate.height}"
        )
    for what, ref in (("weights", entry.weights), ("tokenizer", entry.tokenizer)):
        if ref.blake3 != body[f"{what}_blake3"]:
            raise CertificateError(
                f"{what}_blake3: the chain certified {ref.blake3} for {name} version {version}"
            )
    return model


def _check_seed(receipt: Receipt) -> None:
    body = receipt.body
    seed = body["seed"]
    expected = _seed_inputs(seed["source"], "messages" in body)
    if seed["inputs"] != expected:
        raise ReceiptMismatch(f"seed.inputs: a {seed['source']} seed has inputs {expected}")
    derivation = SEED_DOMAIN if seed["source"] == "derived" else None
    if seed["derivation"] != derivation:
        raise ReceiptMismatch(f"seed.derivation: expected {derivation!r}")
    if seed["source"] != "derived":
        return
    query = receipt.query()
    derived = derive_seed(
        body["chain_id"],
        body["certificate"]["block_hash"],
        body["application_id"],
        query.seed_query(body["model"]["version"]),
    )
    if derived != receipt.seed:
        raise ReceiptMismatch(
            f"seed.value: its inputs derive {derived}, the receipt says {receipt.seed}"
        )


def _check_engine(receipt: Receipt, engine: Engine) -> None:
    stated = receipt.body["engine"]
    if stated["settings"] != ENGINE_SETTINGS:
        raise ReceiptMismatch(
            f"engine.settings: the receipt's {stated['settings']} are not this engine's "
            f"{ENGINE_SETTINGS}"
        )
    local = _guest_blake3(engine)
    if stated["guest_blake3"] is not None and local is not None and stated["guest_blake3"] != local:
        raise ReceiptMismatch(
            f"engine.guest_blake3: the receipt was made by guest module {stated['guest_blake3']}, "
            f"this machine has {local}: not the same program"
        )


def _prepared(receipt: Receipt, model: CertifiedModel) -> PreparedQuery:
    query = receipt.query()
    seed = receipt.seed
    return PreparedQuery(
        query,
        model,
        seed,
        receipt.body["seed"]["source"],
        query.params(seed),
        time.perf_counter(),
    )


def _check_output(receipt: Receipt, net: OpenNetwork, model: CertifiedModel) -> None:
    """The receipt's output is its query's generation: its token ids verified as a claim
    (``ModelService.verify``, at prefill speed, the verdict of a full replay), then its text
    and stop reason against the verified ones. Only a receipt that fails is replayed, to name
    the first token that differs and its text."""
    output = receipt.body["output"]
    verdict = net.service.verify(_prepared(receipt, model), receipt.token_ids)
    if (
        verdict.valid
        and verdict.text == output["text"]
        and stop_reason_name(verdict.stop_reason) == output["stop_reason"]
    ):
        return
    replay = _replay(receipt, net, model)
    _compare_tokens(receipt, replay)
    _compare_text(receipt, replay)
    assert replay.record is not None
    if replay.record.stop_reason != output["stop_reason"]:
        raise ReceiptMismatch(
            f"output.stop_reason: the receipt says {output['stop_reason']!r}, "
            f"the replay stopped with {replay.record.stop_reason!r}"
        )
    raise ReceiptMismatch("output: the verification and the replay disagree (engine fault)")


def _replay(receipt: Receipt, net: OpenNetwork, model: CertifiedModel) -> QueryStream:
    # The receipt's tokens as hints: a false receipt replays as the honest generation, which
    # the comparisons then report.
    stream = net.service.start(_prepared(receipt, model), hint=receipt.token_ids)
    stream.collect()
    return stream


def _compare_tokens(receipt: Receipt, replay: QueryStream) -> None:
    claimed, replayed = receipt.token_ids, replay.token_ids
    for position in range(max(len(claimed), len(replayed))):
        mine = claimed[position] if position < len(claimed) else None
        theirs = replayed[position] if position < len(replayed) else None
        if mine == theirs:
            continue
        said = "no token" if mine is None else f"id {mine}"
        got = "stopped" if theirs is None else f"id {theirs} ({replay.token_texts[position]!r})"
        raise ReceiptMismatch(f"token {position}: the receipt has {said}, the replay {got}")


def _compare_text(receipt: Receipt, replay: QueryStream) -> None:
    text = receipt.text
    assert replay.record is not None
    if text == replay.record.text:
        return
    at = 0
    for position, piece in enumerate(replay.token_texts):
        if text[at : at + len(piece)] != piece:
            raise ReceiptMismatch(
                f"token {position}: the receipt's text has {text[at : at + len(piece)]!r}, "
                f"the replay's token {replay.token_ids[position]} is {piece!r}"
            )
        at += len(piece)
    raise ReceiptMismatch(
        f"output.text: differs from the replay after its last token (token "
        f"{len(replay.token_texts)}): {text[at:]!r} vs {replay.record.text[at:]!r}"
    )
