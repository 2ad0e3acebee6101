"""How the node reports a failure: the EdgechainError class name as a stable code, and its message.

The same shape serves GraphQL (``extensions``) and the SSE ``error`` event, so a client handles
``ModelNotFound`` the same way whichever door it came through. Anything that is not an
EdgechainError is a bug: it is reported as ``InternalError`` and logged with its traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from edgechain.errors import EdgechainError

__all__ = ["INTERNAL_ERROR", "error_payload", "log"]

INTERNAL_ERROR = "InternalError"

log = logging.getLogger("edgechain.node")


def error_payload(err: BaseException) -> dict[str, Any]:
    """``{"code", "message", "exitCode"}`` for ``err`` (logged if it is not a user error)."""
    if isinstance(err, EdgechainError):
        return {"code": type(err).__name__, "message": str(err), "exitCode": err.exit_code}
    log.error("internal error while serving a request", exc_info=err)
    return {"code": INTERNAL_ERROR, "message": f"internal error: {err!r}", "exitCode": 1}
