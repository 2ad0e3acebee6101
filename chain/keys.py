"""Ed25519 key files: one hex-encoded private key per file, readable by the owner only."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edgechain.errors import InputError


def generate_key() -> Ed25519PrivateKey:
    """A fresh ed25519 private key."""
    return Ed25519PrivateKey.generate()


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key of ``key``."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def save_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write ``key`` to ``path`` (mode 0600), refusing to overwrite an existing key."""
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(raw.hex() + "\n")


def load_key(path: Path) -> Ed25519PrivateKey:
    """Read a key written by :func:`save_key`."""
    try:
        raw = bytes.fromhex(path.read_text().strip())
        return Ed25519PrivateKey.from_private_bytes(raw)
    except FileNotFoundError as exc:
        raise InputError(f"key file not found: {path}") from exc
    except ValueError as exc:
        raise InputError(f"malformed key file: {path}") from exc
    except OSError as exc:
        raise InputError(f"cannot read key file {path} ({exc.strerror or exc})") from exc
