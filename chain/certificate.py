"""Votes and certificates, and their verification by anyone holding the committee's public keys.

A validator votes by signing ``domain_tag("vote") || encode([chain_id, height, block_hash,
state_hash])``. A certificate is a quorum of such votes from distinct committee members on the
same (chain, height, block hash, state hash).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgechain.chain.block import Block
from edgechain.chain.committee import Committee
from edgechain.chain.encoding import EncodingError, decode, domain_tag, encode
from edgechain.errors import CertificateError


def vote_message(chain_id: bytes, height: int, block_hash: bytes, state_hash: bytes) -> bytes:
    """The bytes a validator signs to vote for a block and the state it produces."""
    return domain_tag("vote") + encode([chain_id, height, block_hash, state_hash])


@dataclass(frozen=True)
class Vote:
    """One validator's signed vote."""

    validator: str
    chain_id: bytes
    height: int
    block_hash: bytes
    state_hash: bytes
    signature: bytes

    def message(self) -> bytes:
        return vote_message(self.chain_id, self.height, self.block_hash, self.state_hash)

    def is_valid(self, committee: Committee) -> bool:
        return self.validator in committee and committee.verify(
            self.validator, self.signature, self.message()
        )


@dataclass(frozen=True)
class Certificate:
    """A quorum of validator signatures on (chain id, height, block hash, state hash)."""

    chain_id: bytes
    height: int
    block_hash: bytes
    state_hash: bytes
    signatures: tuple[tuple[str, bytes], ...]  # (validator name, signature), committee order

    @property
    def signers(self) -> list[str]:
        return [name for name, _ in self.signatures]

    def to_value(self) -> list[Any]:
        return [
            self.chain_id,
            self.height,
            self.block_hash,
            self.state_hash,
            [[name, sig] for name, sig in self.signatures],
        ]

    def encode(self) -> bytes:
        return encode(self.to_value())

    @classmethod
    def decode(cls, data: bytes) -> Certificate:
        value = decode(data)
        try:
            chain_id, height, block_hash, state_hash, sigs = value
            signatures = tuple((str(name), bytes(sig)) for name, sig in sigs)
        except (TypeError, ValueError) as exc:
            raise EncodingError("malformed certificate") from exc
        if not all(isinstance(x, bytes) for x in (chain_id, block_hash, state_hash)):
            raise EncodingError("malformed certificate")
        if not isinstance(height, int) or not all(isinstance(n, str) for n, _ in sigs):
            raise EncodingError("malformed certificate")
        return cls(chain_id, height, block_hash, state_hash, signatures)

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id.hex(),
            "height": self.height,
            "block_hash": self.block_hash.hex(),
            "state_hash": self.state_hash.hex(),
            "signatures": [{"validator": n, "signature": s.hex()} for n, s in self.signatures],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Certificate:
        try:
            return cls(
                bytes.fromhex(data["chain_id"]),
                int(data["height"]),
                bytes.fromhex(data["block_hash"]),
                bytes.fromhex(data["state_hash"]),
                tuple((s["validator"], bytes.fromhex(s["signature"])) for s in data["signatures"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CertificateError(f"malformed certificate: {exc}") from exc


def verify_certificate(
    certificate: Certificate, committee: Committee, block: Block | None = None
) -> None:
    """Check ``certificate`` against ``committee`` (and ``block`` if given); raise if it fails.

    Needs nothing but the committee's public keys. Every listed signature must be valid, from a
    distinct committee member, and there must be at least a quorum of them. With ``block``, the
    certificate must also be for that block and the state hash the block claims.
    """
    names = certificate.signers
    if len(set(names)) != len(names):
        raise CertificateError(f"certificate at height {certificate.height} repeats a signer")
    if len(names) < committee.quorum:
        raise CertificateError(
            f"certificate at height {certificate.height} has {len(names)} signatures, "
            f"quorum is {committee.quorum}"
        )
    message = vote_message(
        certificate.chain_id, certificate.height, certificate.block_hash, certificate.state_hash
    )
    for name, signature in certificate.signatures:
        if name not in committee:
            raise CertificateError(f"certificate signer {name!r} is not in the committee")
        if not committee.verify(name, signature, message):
            raise CertificateError(
                f"certificate at height {certificate.height}: invalid signature from {name}"
            )
    if block is not None:
        if block.hash() != certificate.block_hash:
            raise CertificateError(
                f"certificate at height {certificate.height} is for another block"
            )
        if (block.chain_id, block.height, block.state_hash) != (
            certificate.chain_id,
            certificate.height,
            certificate.state_hash,
        ):
            raise CertificateError(
                f"certificate at height {certificate.height} disagrees with the block's "
                "chain, height or state hash"
            )


@dataclass(frozen=True)
class CertifiedBlock:
    """A committed block with its owner signature and certificate (what `chain show` lists)."""

    block: Block
    block_hash: bytes
    owner_signature: bytes
    certificate: Certificate

    @property
    def height(self) -> int:
        return self.block.height
