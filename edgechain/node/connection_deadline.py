"""uvicorn's HTTP/1.1 protocol with a deadline for each request's head (request line and headers).

uvicorn times out an idle keep-alive connection only after a response, and any byte received
cancels that timer, so a client that opens a connection and sends its headers a byte at a time
(a slow-header, "slowloris", client) holds a connection forever. Here every request head must be
complete within :data:`REQUEST_HEAD_TIMEOUT_S` seconds of the connection opening (or of the
previous response): otherwise the connection is closed. A request whose head arrived (a long SSE
stream, a websocket upgrade) is never cut by it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["REQUEST_HEAD_TIMEOUT_S", "head_deadline_protocol"]

#: Seconds a client has to send a request's line and headers.
REQUEST_HEAD_TIMEOUT_S = 10.0


def head_deadline_protocol(timeout_s: float = REQUEST_HEAD_TIMEOUT_S) -> type[asyncio.Protocol]:
    """An H11Protocol class closing connections whose request head takes over ``timeout_s``."""

    class HeadDeadlineProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _scope_when_armed: Any = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
            super().connection_made(transport)  # type: ignore[arg-type]
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # A pipelined request may already be running: its head is complete.
            if self.cycle is None or self.cycle.response_complete:
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            # uvicorn sets a new scope for each request head it parses (upgrades included).
            self._scope_when_armed = self.scope
            self._deadline = self.loop.call_later(timeout_s, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if self.scope is self._scope_when_armed and not self.transport.is_closing():
                self.transport.close()

    return HeadDeadlineProtocol
