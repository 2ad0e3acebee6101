"""Ed25519 signing and verification, with a memo of the signatures this process made.

The validators are mock nodes inside one process: a proposal signed by the chain owner is
checked by every validator, and each vote by the proposer, although this very process made
those signatures a moment before. A signature made here is valid by construction and ed25519
verification is a pure function, so :func:`verify` answers True for one of them without
recomputing it: same result, no curve arithmetic. Anything else (a signature read from storage
in another process, a ``bad-signature`` validator's random bytes, a tampered byte) is verified
in full.
"""

from __future__ import annotations

import threading

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["sign", "verify"]

_MADE_HERE_MAX = 8192  # signatures remembered (about 1.5 MB); the oldest are forgotten first
_made_here: dict[tuple[bytes, bytes], bytes] = {}  # (public key, signature) -> message
_lock = threading.Lock()


def sign(key: Ed25519PrivateKey, public: bytes, message: bytes) -> bytes:
    """``key``'s signature of ``message`` (``public``: its raw public key), remembered as valid."""
    signature = key.sign(message)
    with _lock:
        if len(_made_here) >= _MADE_HERE_MAX:
            del _made_here[next(iter(_made_here))]
        _made_here[(public, signature)] = message
    return signature


def verify(key: Ed25519PublicKey, public: bytes, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is ``key``'s (raw: ``public``) valid signature of ``message``."""
    if _made_here.get((public, signature)) == message:
        return True
    try:
        key.verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
