"""The model registry's operations and their validation rules.

- names: ``^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`` (e.g. ``stories260K``)
- versions: ``^[A-Za-z0-9][A-Za-z0-9._+-]{0,31}$`` (e.g. ``1``, ``1.0.0``)
- format: ``llama2c``, or ``gguf`` (one GGUF file: its tokenizer ref is its weights ref)
- hashes: BLAKE3, 64 lowercase hex digits
- sizes: integers, 0 < size <= 2 GiB (``MAX_FILE_SIZE``; the fetcher's cap is the same constant)
- URLs: 1 to 8 per file, http or https with a host, at most 2048 characters, no whitespace;
  0 to 8 for a file stored as blobs
- chunks (a file stored as on-chain blobs, docs/blobs.md): 1 to ``MAX_CHUNKS`` pairs
  ``[blob id, size]`` whose sizes add up to the file's size, each blob published (certified)
  before the manifest that names it
- description: at most 1024 characters; license: at most 128 characters
- text: every string is valid Unicode text that encodes as UTF-8 (no lone surrogates, which is
  what undecodable command-line bytes become in Python); checked when an operation is built,
  raising InvalidText (exit 3) before anything is hashed, encoded or proposed
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from edgechain.chain.application import NamedOperation
from edgechain.errors import InvalidText, OperationRejected

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,31}$")
HASH_PATTERN = re.compile(r"^[0-9a-f]{64}$")
FORMATS = ("llama2c", "gguf")
#: The largest file a model may register, and the fetcher's default cap (service/fetch.py). The
#: wasm guest's memory is capped at 3 GiB (service/engine/wasm.py) and must hold the KV cache and
#: activations besides the weights, so a larger checkpoint could be certified but never served.
#: A registered file's fetch cap is its certified size (the fetcher's ``expected_size``).
MAX_FILE_SIZE = 2 * 1024**3
MAX_URLS = 8
_BAD_URL_CHARACTER = re.compile(r"[\s\x00-\x1f\x7f]")
MAX_URL_LENGTH = 2048
MAX_DESCRIPTION = 1024
MAX_LICENSE = 128
#: Chunks a file stored as blobs may have (2 GiB in 1 MB blobs needs 2148).
MAX_CHUNKS = 4096


def check_utf8(what: str, value: object) -> None:
    """InvalidText unless every string in ``value`` (a string, a sequence of them, or anything
    else, which the operation's validation judges) encodes as UTF-8.

    Undecodable bytes in argv reach Python as lone surrogates (U+DC80..U+DCFF); JSON can carry
    lone surrogates too. Neither can be encoded, hashed or stored, so they stop here, by name.
    """
    items = value if isinstance(value, list | tuple) else (value,)
    for item in items:
        if not isinstance(item, str):
            continue
        try:
            item.encode("utf-8")
        except UnicodeEncodeError as err:
            bad = item[err.start]
            described = (
                f"the undecodable byte 0x{ord(bad) - 0xDC00:02x}"
                if 0xDC80 <= ord(bad) <= 0xDCFF
                else f"the lone surrogate U+{ord(bad):04X}"
            )
            raise InvalidText(
                f"{what} is not valid UTF-8 text: {described} at character {err.start}"
            ) from None


@dataclass(frozen=True)
class FileRef:
    """A file the service will fetch: its BLAKE3 hash (hex), its size in bytes, where to get it."""

    blake3: str
    size: int
    urls: tuple[str, ...]
    #: The manifest of a file stored as blobs: (blob id, size) per chunk, in file order.
    chunks: tuple[tuple[bytes, int], ...] = ()

    def __post_init__(self) -> None:
        check_utf8("file hash", self.blake3)
        check_utf8("file URL", self.urls)

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "blake3": self.blake3,
            "size": self.size,
            "urls": list(self.urls),
        }
        if self.chunks:  # absent for URL-only files: their payload (and hashes) stay as they were
            payload["chunks"] = [[blob, size] for blob, size in self.chunks]
        return payload

    def to_json(self) -> dict[str, Any]:
        """The file as JSON: ``{"blake3", "size", "urls"}``, and ``"chunks"`` as
        ``[{"blob": hex, "size"}]`` for a blob-stored file."""
        value: dict[str, Any] = {"blake3": self.blake3, "size": self.size, "urls": list(self.urls)}
        if self.chunks:
            value["chunks"] = [{"blob": blob.hex(), "size": size} for blob, size in self.chunks]
        return value

    @classmethod
    def from_payload(cls, value: Any, what: str) -> FileRef:
        fields = _exact_map(value, what, {"blake3", "size", "urls"}, {"chunks"})
        urls = fields["urls"]
        if not isinstance(urls, list):
            raise OperationRejected(f"{what}.urls must be a list of URLs")
        chunks = fields.get("chunks", [])
        if not isinstance(chunks, list) or not all(
            isinstance(c, list) and len(c) == 2 for c in chunks
        ):
            raise OperationRejected(f"{what}.chunks must be a list of [blob id, size] pairs")
        return cls(fields["blake3"], fields["size"], tuple(urls), tuple(map(tuple, chunks)))

    def validate(self, what: str) -> None:
        if not isinstance(self.blake3, str) or not HASH_PATTERN.fullmatch(self.blake3):
            raise OperationRejected(f"{what}.blake3 must be 64 lowercase hex digits")
        size = self.size
        if not isinstance(size, int) or isinstance(size, bool):
            raise OperationRejected(f"{what}.size must be an integer")
        if not 0 < size <= MAX_FILE_SIZE:
            raise OperationRejected(
                f"{what}.size {size} must be > 0 and <= {MAX_FILE_SIZE >> 30} GiB ({MAX_FILE_SIZE})"
            )
        fewest = 0 if self.chunks else 1
        if not fewest <= len(self.urls) <= MAX_URLS:
            raise OperationRejected(
                f"{what}.urls needs {fewest} to {MAX_URLS} URLs, got {len(self.urls)}"
            )
        for url in self.urls:
            _validate_url(url, what)
        self._validate_chunks(what)

    def _validate_chunks(self, what: str) -> None:
        if not self.chunks:
            return
        if len(self.chunks) > MAX_CHUNKS:
            raise OperationRejected(f"{what}.chunks: at most {MAX_CHUNKS}, got {len(self.chunks)}")
        for index, (blob, size) in enumerate(self.chunks):
            if not (isinstance(blob, bytes) and len(blob) == 32):
                raise OperationRejected(f"{what}.chunks[{index}]: the blob id is not 32 bytes")
            if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
                raise OperationRejected(f"{what}.chunks[{index}]: the size must be > 0")
        total = sum(size for _, size in self.chunks)
        if total != self.size:
            raise OperationRejected(
                f"{what}.chunks add up to {total} bytes, not the file's size {self.size}"
            )


def _validate_url(url: Any, what: str) -> None:
    if not isinstance(url, str):
        raise OperationRejected(f"{what}.urls: {url!r} is not a string")
    if len(url) > MAX_URL_LENGTH:
        raise OperationRejected(f"{what}.urls: URL longer than {MAX_URL_LENGTH} characters")
    if _BAD_URL_CHARACTER.search(url):
        raise OperationRejected(f"{what}.urls: {url!r} contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a port outside 0..65535 or not a number)
    except ValueError:
        raise OperationRejected(f"{what}.urls: {url!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise OperationRejected(f"{what}.urls: {url!r} is not an http or https URL")
    if not host:
        raise OperationRejected(f"{what}.urls: {url!r} has no host")


def _exact_map(value: Any, what: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise OperationRejected(f"{what} must be a map")
    missing = required - value.keys()
    if missing:
        raise OperationRejected(f"{what} is missing {', '.join(sorted(missing))}")
    unknown = value.keys() - required - optional
    if unknown:
        raise OperationRejected(f"{what} has unknown fields {', '.join(sorted(unknown))}")
    return value


def _validate_name(name: Any) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise OperationRejected(
            f"model name {name!r} must match {NAME_PATTERN.pattern} "
            "(letters, digits, . _ -; at most 64 characters)"
        )


def _validate_version(version: Any) -> None:
    if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
        raise OperationRejected(
            f"model version {version!r} must match {VERSION_PATTERN.pattern} "
            "(letters, digits, . _ + -; at most 32 characters)"
        )


@dataclass(frozen=True)
class RegisterModel(NamedOperation):
    """Register a model (name, version) whose weights and tokenizer have the given hashes.
    ``format``: "llama2c", or "gguf" (``tokenizer`` is then the weights' own ref)."""

    name: str
    version: str
    weights: FileRef
    tokenizer: FileRef
    format: str = "llama2c"
    description: str | None = None
    license: str | None = None

    def __post_init__(self) -> None:
        check_utf8("model name", self.name)
        check_utf8("model version", self.version)
        for field_name in ("format", "description", "license"):
            check_utf8(field_name, getattr(self, field_name))

    def to_payload(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "format": self.format,
            "weights": self.weights.to_payload(),
            "tokenizer": self.tokenizer.to_payload(),
            "description": self.description,
            "license": self.license,
        }

    @classmethod
    def from_payload(cls, payload: Any) -> RegisterModel:
        fields = _exact_map(
            payload,
            "RegisterModel",
            {"name", "version", "format", "weights", "tokenizer"},
            {"description", "license"},
        )
        return cls(
            name=fields["name"],
            version=fields["version"],
            format=fields["format"],
            weights=FileRef.from_payload(fields["weights"], "weights"),
            tokenizer=FileRef.from_payload(fields["tokenizer"], "tokenizer"),
            description=fields.get("description"),
            license=fields.get("license"),
        )

    def validate(self) -> None:
        """Raise :class:`OperationRejected` with the first rule this operation breaks."""
        _validate_name(self.name)
        _validate_version(self.version)
        if self.format not in FORMATS:
            raise OperationRejected(
                f"model format {self.format!r} is not supported (supported: {', '.join(FORMATS)})"
            )
        self.weights.validate("weights")
        self.tokenizer.validate("tokenizer")
        # A GGUF file carries its tokenizer: the entry names the one file twice, so services,
        # receipts and caches treat it as they treat any model (one download: same hash).
        if self.format == "gguf" and self.tokenizer != self.weights:
            raise OperationRejected(
                "a gguf model's tokenizer is its weights file: the two references must be equal"
            )
        for field_name, value, limit in (
            ("description", self.description, MAX_DESCRIPTION),
            ("license", self.license, MAX_LICENSE),
        ):
            if value is None:
                continue
            if not isinstance(value, str):
                raise OperationRejected(f"{field_name} must be a string")
            if len(value) > limit:
                raise OperationRejected(f"{field_name} is longer than {limit} characters")


@dataclass(frozen=True)
class RetireModel(NamedOperation):
    """Retire a registered (name, version): services stop serving it."""

    name: str
    version: str

    def __post_init__(self) -> None:
        check_utf8("model name", self.name)
        check_utf8("model version", self.version)

    def to_payload(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version}

    @classmethod
    def from_payload(cls, payload: Any) -> RetireModel:
        fields = _exact_map(payload, "RetireModel", {"name", "version"}, set())
        return cls(fields["name"], fields["version"])

    def validate(self) -> None:
        _validate_name(self.name)
        _validate_version(self.version)
