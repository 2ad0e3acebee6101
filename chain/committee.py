"""The committee: validators' names and public keys, and Linera's voting thresholds.

All validators weigh the same. With N validators:

    validity = ceil(N / 3)            at least one honest validator is among any `validity` of them
    quorum   = ceil((N + validity) / 2)
    tolerated faults f = N - quorum   offline or Byzantine validators the chain survives
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgechain.chain import signatures
from edgechain.chain.encoding import hash_value
from edgechain.errors import UsageError

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


def validity_threshold(n: int) -> int:
    """ceil(n / 3): the smallest set of validators that surely contains an honest one."""
    _check_size(n)
    return -(-n // 3)


def quorum_threshold(n: int) -> int:
    """ceil((n + validity) / 2): the number of signatures a certificate needs."""
    _check_size(n)
    return -(-(n + validity_threshold(n)) // 2)


def tolerated_faults(n: int) -> int:
    """n - quorum: how many validators may fail while blocks still commit."""
    return n - quorum_threshold(n)


def _check_size(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise UsageError(f"a committee needs at least 1 validator, got {n!r}")


def validator_name(index: int) -> str:
    """The name of the validator at 0-based ``index``: v1, v2, ..."""
    return f"v{index + 1}"


@dataclass(frozen=True)
class ValidatorInfo:
    """A committee member: its name (v1, v2, ...) and its raw 32-byte ed25519 public key."""

    name: str
    public_key: bytes


@dataclass(frozen=True)
class Committee:
    """The validators that certify blocks; everything a third party needs to check certificates."""

    members: tuple[ValidatorInfo, ...]
    _keys: dict[str, Ed25519PublicKey] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _raw: dict[str, bytes] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [m.name for m in self.members]
        if not names:
            raise UsageError("a committee needs at least 1 validator")
        if len(set(names)) != len(names):
            raise UsageError(f"duplicate validator names in committee: {names}")
        for member in self.members:
            if len(member.public_key) != PUBLIC_KEY_SIZE:
                raise UsageError(f"validator {member.name}: public key is not 32 bytes")
            # Parsing a key costs about as much as a verification: do it once per committee.
            self._keys[member.name] = Ed25519PublicKey.from_public_bytes(member.public_key)
            self._raw[member.name] = member.public_key

    @classmethod
    def from_public_keys(cls, public_keys: list[bytes]) -> Committee:
        """A committee v1..vN from raw public keys, in order."""
        return cls(
            tuple(ValidatorInfo(validator_name(i), bytes(k)) for i, k in enumerate(public_keys))
        )

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def validity(self) -> int:
        return validity_threshold(self.size)

    @property
    def quorum(self) -> int:
        return quorum_threshold(self.size)

    @property
    def tolerated_faults(self) -> int:
        return self.size - self.quorum

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def __contains__(self, name: object) -> bool:
        return name in self._keys

    def index_of(self, name: str) -> int:
        return self.names.index(name)

    def verify(self, name: str, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` is validator ``name``'s valid signature of ``message``."""
        key = self._keys.get(name)
        if key is None or len(signature) != SIGNATURE_SIZE:
            return False
        return signatures.verify(key, self._raw[name], signature, message)

    def to_value(self) -> list[list[object]]:
        """The canonical value of the committee: ``[[name, public_key], ...]`` in order."""
        return [[m.name, m.public_key] for m in self.members]

    def hash(self) -> bytes:
        """BLAKE3 of the committee (domain ``committee``); chain ids commit to it."""
        return hash_value("committee", self.to_value())

    def to_json(self) -> list[dict[str, str]]:
        return [{"name": m.name, "public_key": m.public_key.hex()} for m in self.members]

    @classmethod
    def from_json(cls, data: list[dict[str, str]]) -> Committee:
        try:
            return cls(
                tuple(ValidatorInfo(d["name"], bytes.fromhex(d["public_key"])) for d in data)
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"malformed committee description: {exc}") from exc
