"""What the node accepts from a browser: requests addressed to it, from pages it served.

A web page on any site can make a browser send requests to a node on loopback: a form or a
``text/plain`` fetch (CSRF), or a page whose DNS name was re-pointed at 127.0.0.1 (DNS
rebinding). The node therefore refuses, with a typed JSON error (``RequestRefused``):

- a ``Host`` that is not one of its own names with its own port (403): loopback names
  (``localhost``, ``127.0.0.1``, ``[::1]``), plus the ``--host`` it was told to listen on (for a
  wildcard address, the machine's host name);
- an ``Origin``, when present, that is not one of those hosts with that port (403), for every
  request and every websocket upgrade (refused before the handshake);
- a ``POST`` (any method with a body) whose ``Content-Type`` is not JSON (415):
  ``application/json`` or GraphQL-over-HTTP's ``application/graphql-response+json`` /
  ``application/graphql+json``. A browser cannot send those cross-origin without a CORS
  preflight, which the node never approves;
- a body over :data:`MAX_BODY_BYTES` (413), whether it declares its length or is chunked (the
  body is read, up to the cap, before the application sees the request).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from edgechain.errors import RequestRefused
from edgechain.node.typed_errors import error_payload

__all__ = ["JSON_MEDIA_TYPES", "MAX_BODY_BYTES", "GuardMiddleware", "RequestGuard"]

#: Media types a POST may carry.
JSON_MEDIA_TYPES = frozenset(
    {"application/json", "application/graphql-response+json", "application/graphql+json"}
)

#: The largest request body the node reads (a GraphQL request is a few KiB).
MAX_BODY_BYTES = 1 << 20

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused, and the HTTP status that says so."""

    status: int
    error: RequestRefused


@dataclass(frozen=True)
class RequestGuard:
    """The node's own names (lower case, IPv6 without brackets) and port."""

    port: int
    hosts: frozenset[str] = _LOOPBACK_NAMES

    @classmethod
    def for_listening(cls, host: str, port: int) -> RequestGuard:
        """The guard of a node listening on ``host:port`` (``serve --host``/``--port``)."""
        bound = host.strip().strip("[]").lower()
        names = set(_LOOPBACK_NAMES)
        if bound in _WILDCARDS:
            names.add(socket.gethostname().lower())
        else:
            names.add(bound)
        return cls(port, frozenset(names))

    def refusal(self, scope: Scope) -> Refusal | None:
        """Why ``scope`` (an ASGI http or websocket scope) is refused, or None to let it in."""
        headers = _headers(scope)
        host = headers.get("host")
        if host is None:
            return _refuse(403, "the request has no Host header")
        if not self._is_own(*_split_host(host, default_port=80)):
            return _refuse(
                403,
                f"Host {host!r} is not this node ({self._described()}); "
                "refused as a possible DNS rebinding",
            )
        origin = headers.get("origin")
        if origin is not None and not self._own_origin(origin):
            return _refuse(
                403, f"Origin {origin!r} is not this node ({self._described()}); cross-site "
                "requests are refused",
            )
        if scope["type"] == "http" and scope["method"] not in _SAFE_METHODS:
            declared = headers.get("content-type", "")
            media_type = declared.split(";", 1)[0].strip().lower()
            if media_type not in JSON_MEDIA_TYPES:
                shown = media_type or "none"
                return _refuse(
                    415,
                    f"a {scope['method']} must be application/json (got {shown}); "
                    "form and text/plain bodies are refused",
                )
            length = headers.get("content-length", "0")
            if length.isdigit() and int(length) > MAX_BODY_BYTES:
                return _refuse(413, f"the request body is over {MAX_BODY_BYTES} bytes")
        return None

    def _is_own(self, name: str | None, port: int | None) -> bool:
        return name is not None and name in self.hosts and port == self.port

    def _own_origin(self, origin: str) -> bool:
        try:
            parts = urlsplit(origin.strip())
            port = parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or parts.hostname is None:
            return False
        if port is None:
            port = _DEFAULT_PORTS[parts.scheme]
        return self._is_own(parts.hostname.lower(), port)

    def _described(self) -> str:
        names = ", ".join(f"[{h}]" if ":" in h else h for h in sorted(self.hosts))
        return f"{names} on port {self.port}"


class GuardMiddleware:
    """ASGI middleware: ``app`` behind ``guard``. A refused request gets a JSON error (a
    websocket, a close before the handshake, which the server answers with 403); a body over
    MAX_BODY_BYTES gets 413."""

    def __init__(self, app: App, guard: RequestGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self.guard.refusal(scope)
        if refusal is None and scope["type"] == "http":
            body, complete = await _read_body(receive)
            if not complete:
                await _send_error(
                    send, _refuse(413, f"the request body is over {MAX_BODY_BYTES} bytes")
                )
                return
            await self.app(scope, _replayed(body, receive), send)
        elif refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await _send_error(send, refusal)


async def _read_body(receive: Receive) -> tuple[list[Message], bool]:
    """The request's body messages, read up to :data:`MAX_BODY_BYTES`; False when the body
    (chunked, or longer than it declared) goes past the cap."""
    messages: list[Message] = []
    seen = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":  # the client went away: the app sees it too
            return messages, True
        seen += len(message.get("body", b""))
        if seen > MAX_BODY_BYTES:
            return messages, False
        if not message.get("more_body", False):
            return messages, True


def _replayed(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that first hands out ``messages`` (the body already read), then waits on the
    connection (for its disconnect)."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _send_error(send: Send, refusal: Refusal) -> None:
    payload = error_payload(refusal.error)
    extensions = {"code": payload["code"], "exitCode": payload["exitCode"]}
    body = json.dumps({"errors": [{"message": payload["message"], "extensions": extensions}]})
    data = body.encode()
    await send(
        {
            "type": "http.response.start",
            "status": refusal.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def _refuse(status: int, message: str) -> Refusal:
    return Refusal(status, RequestRefused(message))


def _headers(scope: Scope) -> dict[str, str]:
    # Two different Host (or Origin) headers leave a value no check accepts: refused.
    seen: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name in seen and name in ("host", "origin") and seen[name] != value:
            value = "\x00conflicting"
        seen[name] = value
    return seen


def _split_host(value: str, default_port: int) -> tuple[str | None, int | None]:
    """``(name, port)`` of a Host header value; (None, None) if it does not parse."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        if rest and not rest.startswith(":"):
            return None, None
        port_text = rest[1:]
    else:
        name, _, port_text = value.partition(":")
        if ":" in port_text:
            return None, None
    if not name:
        return None, None
    if not port_text:
        return name, default_port
    if not port_text.isdigit() or len(port_text) > 5:
        return None, None
    return name, int(port_text)
