"""Run the node: bind the port first (a clear error if it is taken), then serve with uvicorn."""

from __future__ import annotations

import copy
import errno
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, TextIO

import uvicorn

from edgechain.client import Client
from edgechain.errors import UsageError
from edgechain.node.app import build_app
from edgechain.node.directory import served_applications
from edgechain.node.gate import ClientGate
from edgechain.node.request_guard import RequestGuard

__all__ = ["bind_listening_socket", "serve"]

#: How long a shutdown waits for open requests (SSE streams included) before closing them.
GRACEFUL_SHUTDOWN_S = 3

#: How long after SIGINT/SIGTERM the process ends, whatever is still in flight. Storage is
#: transactional (SQLite) and the cache writes by rename, so ending mid-write loses nothing.
HARD_STOP_S = 7.0


class _NodeServer(uvicorn.Server):
    """uvicorn's server, but a SIGINT/SIGTERM is a normal stop (exit 0), not re-raised, and it
    first ends the running generations so their streams close before the graceful timeout."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            # A download or a worker thread stuck in a read must not keep the node alive.
            timer = threading.Timer(HARD_STOP_S, _hard_stop)
            timer.daemon = True
            timer.start()
        self._on_exit()
        super().handle_exit(sig, frame)
        # uvicorn re-raises captured signals after its graceful shutdown, which would turn Ctrl+C
        # into a KeyboardInterrupt and SIGTERM into death by signal.
        self._captured_signals.clear()


def _hard_stop() -> None:
    print("edgechain node: requests still in flight at the stop deadline; exiting", file=sys.stderr)
    sys.stderr.flush()
    os._exit(0)


def bind_listening_socket(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``; UsageError (one line) if that is impossible."""
    if not 0 <= port <= 65535:
        raise UsageError(f"port must be in [0, 65535], got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Lets a restarted node reuse a port left in TIME_WAIT; on Linux it does not let two
        # servers listen on the same port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is already in use") from None
        raise UsageError(f"cannot listen on {host} port {port}: {err.strerror or err}") from None
    except BaseException:
        sock.close()
        raise
    return sock


class _DroppedConnectionNoise(logging.Filter):
    """Drops asyncio's warning about writes to a connection the client has closed: a token
    sent in the moment before the server notices a dropped websocket is not a failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "socket.send() raised exception."


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, less its start-up chatter and disconnect noise: warnings and errors
    on stderr, and the access log (one line per request, on stdout) unless the server turns
    it off."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["uvicorn.error"]["level"] = "WARNING"
    config["filters"] = {"dropped_connection": {"()": _DroppedConnectionNoise}}
    config["loggers"]["asyncio"] = {"filters": ["dropped_connection"]}
    return config


def serve(
    client: Client, host: str, port: int, out: TextIO = sys.stdout, access_log: bool = True
) -> None:
    """Serve ``client``'s network on ``host:port`` until interrupted; closes the client.

    Prints one line with the URLs once the port is bound (requests made from then on wait in
    the listen queue until the server takes them), then a line per request unless not
    ``access_log``. Requests must name the node as their Host (see
    :mod:`edgechain.node.request_guard`). After SIGINT/SIGTERM the process exits within
    :data:`HARD_STOP_S` seconds, whatever is still running.
    """
    try:
        sock = bind_listening_socket(host, port)
    except BaseException:
        client.close()
        raise
    with sock:
        gate = ClientGate(client)
        try:
            bound_port = sock.getsockname()[1]
            app = build_app(gate, RequestGuard.for_listening(host, bound_port))
            shown_host = f"[{host}]" if ":" in host else host
            base = f"http://{shown_host}:{bound_port}"
            apps = ", ".join(
                f"{app.kind}: {base}{app.path}" for app in served_applications(client, client.chain)
            )
            print(
                f"edgechain node serving {client.network.path} at {base}/ ({apps})",
                file=out,
                flush=True,
            )
            config = uvicorn.Config(
                app,
                log_config=_log_config(),
                log_level=None,
                access_log=access_log,
                lifespan="on",
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            )
            _NodeServer(config, on_exit=app.state.generations.stop_all).run(sockets=[sock])
        finally:
            gate.close()
