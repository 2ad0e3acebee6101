"""The memo of signatures made in this process (chain/signatures.py) never accepts what a full
verification would refuse."""

from __future__ import annotations

from edgechain.chain import signatures
from edgechain.chain.keys import generate_key, public_bytes


def test_a_signature_made_here_verifies_and_nothing_else_does() -> None:
    key, other = generate_key(), generate_key()
    public = public_bytes(key)
    signature = signatures.sign(key, public, b"message")
    assert signatures.verify(key.public_key(), public, signature, b"message")
    assert not signatures.verify(key.public_key(), public, signature, b"messagf")
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert not signatures.verify(key.public_key(), public, flipped, b"message")
    assert not signatures.verify(other.public_key(), public_bytes(other), signature, b"message")
    assert not signatures.verify(key.public_key(), public, b"short", b"message")


def test_a_signature_made_elsewhere_is_verified_in_full() -> None:
    key = generate_key()
    signature = key.sign(b"made by another process")  # not through signatures.sign
    assert signatures.verify(
        key.public_key(), public_bytes(key), signature, b"made by another process"
    )
