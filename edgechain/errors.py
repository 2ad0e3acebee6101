"""The one exception hierarchy of edgechain.

Every failure a user can cause raises a subclass of :class:`EdgechainError`. Its ``str()`` is a
one-line message a user understands, and ``exit_code`` is what the CLI exits with. The CLI prints
``error: <message>`` and never a traceback for these.

Exit codes (documented in the README):

    0  success
    1  internal error (a bug: reported with a traceback)
    2  usage error (bad flag or parameter value)
    3  input error (missing, truncated or malformed file; bad hash; non-UTF-8 text)
    4  chain error (no quorum, certificate that does not verify, tampered storage)
    5  contract rejected the operation
    6  service error (model not found or retired, fetch failed, hash mismatch)
    7  generation error (prompt too long, context full, guest trap, timeout)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EdgechainError(Exception):
    """Base class: a failure the user can cause and fix."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- usage and input -------------------------------------------------------------------------


class UsageError(EdgechainError):
    """A bad command-line flag or parameter value (temperature < 0, top_p outside (0, 1], ...)."""

    exit_code = 2


class InvalidParameter(UsageError):
    """A generation or configuration parameter outside its allowed range."""


class RequestRefused(UsageError):
    """The node refuses an HTTP request for its Host, Origin, media type or size (a page on
    another site, DNS rebinding, a form post)."""


class InvalidQuery(UsageError):
    """A GraphQL document that does not parse or does not validate against the schema."""


class LimitExceeded(UsageError):
    """A GraphQL request over one of the node's limits (size, depth, aliases, generations)."""


class InputError(EdgechainError):
    """A file or text the user supplied cannot be used."""

    exit_code = 3


class InvalidCheckpoint(InputError):
    """A llama2.c checkpoint that is missing, truncated or whose header does not match its size."""


class CheckpointTooLarge(InvalidCheckpoint):
    """A checkpoint whose header declares more than the wasm guest can hold (wasm32 addresses
    4 GiB; the engine's memory limit may be lower): refused before its weights are read."""


class UnsupportedModel(InvalidCheckpoint):
    """A well-formed model file the engine does not run (a GGUF architecture, tensor type or
    tokenizer model it does not support): refused from its header, naming what."""


class ChatTemplateError(InputError):
    """A model's chat template that does not parse or render (a syntax error, or its own
    ``raise_exception``), or a chat of messages on a model that has no template."""


class InvalidTokenizer(InputError):
    """A tokenizer.bin that is missing, truncated or malformed."""


class VocabMismatch(InputError):
    """A tokenizer whose vocabulary size differs from the model's."""


class InvalidText(InputError):
    """Text input that is not valid UTF-8."""


class InvalidEncoding(InputError):
    """A value with no canonical encoding, or bytes that are not a canonical encoding."""


class InvalidReceipt(InputError):
    """A receipt file that is not a well-formed receipt, or whose hash does not match its
    contents (service/receipt.py)."""


# --- chain -------------------------------------------------------------------------------------


class ChainError(EdgechainError):
    """The chain could not certify, verify or store a block."""

    exit_code = 4


class QuorumNotReached(ChainError):
    """Too few validators signed; the message names which failed and how."""


class CertificateError(ChainError):
    """A certificate that does not verify against the committee."""


class StorageCorrupted(ChainError):
    """Damaged storage: a stored chain that fails re-verification (the message names the first
    bad height), a damaged database or network file, a damaged content cache entry."""


class BlobCorrupted(StorageCorrupted):
    """A stored blob whose bytes do not match its id; ``blob`` is the id."""

    def __init__(self, message: str, *, blob: bytes) -> None:
        super().__init__(message)
        self.blob = blob


class NetworkNotFound(ChainError):
    """No network exists in the given directory."""


# --- contract ----------------------------------------------------------------------------------


class ContractError(EdgechainError):
    """The contract rejected an operation; nothing was committed."""

    exit_code = 5


class OperationRejected(ContractError):
    """An operation that fails the contract's validation."""


class OracleBudgetExceeded(ContractError):
    """A block's oracle calls (a story's generation) would run past the per-block budget."""


class Unauthorized(ContractError):
    """An operation signed by someone other than the chain owner."""


class ResourceLimitExceeded(ContractError):
    """A block, blob or oracle call past a limit of the network's resource policy
    (chain/policy.py); ``limit`` is the policy field, ``value`` what was asked, ``allowance``
    what the policy allows."""

    def __init__(self, message: str, *, limit: str, value: int, allowance: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value
        self.allowance = allowance


# --- service -----------------------------------------------------------------------------------


class ServiceError(EdgechainError):
    """A service query failed before generation."""

    exit_code = 6


class ModelNotFound(ServiceError):
    """No model of that name (and version) is registered in certified state."""

    @classmethod
    def unknown_name(cls, name: str, known: Iterable[str]) -> ModelNotFound:
        """The error for ``name``, naming the close match and the registered names."""
        names = sorted(set(known))
        message = f"no model named {name} in certified state"
        if not names:
            return cls(f"{message}; none is registered yet (publish one: edgechain model publish)")
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return cls(f"{message}{hint} (registered: {', '.join(names)})")

    @classmethod
    def unknown_version(cls, name: str, version: str, known: Iterable[str]) -> ModelNotFound:
        """The error for ``version`` of ``name``, naming the registered versions."""
        versions = sorted(set(known))
        message = f"no model {name} version {version} in certified state"
        if not versions:
            return cls.unknown_name(name, ())
        return cls(f"{message} (versions of {name}: {', '.join(versions)})")


class ModelRetired(ServiceError):
    """The model was retired on chain."""


class FetchError(ServiceError):
    """Fetching bytes failed: host not allowed, unreachable, too slow, too large, bad status.

    ``url`` is the URL that failed (None when several did: see ``failures``), ``reason`` a short
    machine-readable cause (``edgechain.service.fetch.FetchReason``), ``failures`` the errors of
    every URL tried when a fetch with several URLs failed on all of them.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        reason: str | None = None,
        failures: tuple[ServiceError, ...] = (),
    ) -> None:
        super().__init__(message)
        self.url = url
        self.reason = reason
        self.failures = failures


class HashMismatch(ServiceError):
    """Fetched bytes whose BLAKE3 hash differs from the certified one; nothing was kept."""

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        expected: str | None = None,
        actual: str | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.expected = expected
        self.actual = actual


class BlobUnavailable(ServiceError):
    """No reachable validator holds a blob a model's manifest names."""


# --- generation --------------------------------------------------------------------------------


class GenerationError(EdgechainError):
    """Generation failed."""

    exit_code = 7


class PromptTooLong(GenerationError):
    """The prompt's tokens do not fit in the model's context."""


class ContextFull(GenerationError):
    """The model's context is full; no more tokens can be generated."""


class GuestTrap(GenerationError):
    """The Wasm guest trapped; the runtime keeps serving other queries."""


class Timeout(GenerationError):
    """A query ran past its wall-clock budget."""


class Cancelled(GenerationError):
    """The caller cancelled a generation."""


class ReceiptMismatch(GenerationError):
    """A receipt that disagrees with itself, its seed's inputs, this machine's guest, or its
    replay: names the field, or the first token that differs (service/receipt.py)."""


class EngineUnavailable(GenerationError):
    """The chosen engine is not built (no wasm guest, no native module); the message says how."""


class EngineInternalError(GenerationError):
    """The engine failed in a way the user did not cause (a candle error, an unknown handle)."""
