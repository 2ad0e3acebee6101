"""A loopback HTTP server for weights, with fault injection, for examples and tests.

::

    with WeightServer("../shared/models/stories260K") as srv:
        url = srv.url("stories260K.bin")
        srv.inject("stories260K.bin", Fault(corrupt_offset=100))  # the next GETs are corrupted
        corrupted = httpx.get(url).content
        assert corrupted != Path("../shared/models/stories260K/stories260K.bin").read_bytes()
        assert srv.request_count("stories260K.bin") == 1

It serves the files of a directory (read on each request, so a test may change them) or a
mapping of name -> bytes, on 127.0.0.1 at a free port, from a daemon thread. Only GET. Every
response closes its connection, which keeps shutdown prompt and makes truncation faults real.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["Fault", "WeightServer"]

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Fault:
    """How to misbehave when serving one path. Fields combine; the defaults are harmless.

    - ``status``: answer with this HTTP status and a short text body instead of the file.
    - ``redirect_to``: answer 302 with this Location (a path such as ``"/other.bin"`` or a URL).
    - ``corrupt_offset``: flip every bit of the byte at this offset.
    - ``truncate_to``: send only this many bytes of the body, then close the connection. The
      Content-Length still announces the full size (unless ``chunked``), as a dying server would.
    - ``extra_bytes``: append this many junk bytes (an oversized body); Content-Length counts them.
    - ``chunked``: send the body with chunked transfer encoding and no Content-Length.
    - ``delay``: sleep this many seconds before the status line (a slow server).
    - ``chunk_delay``: sleep this many seconds before each chunk (a slow body).
    - ``chunk_size``: bytes per chunk (default 64 KiB); 1 with a ``chunk_delay`` drips the body.
    - ``times``: apply the fault to this many requests only, then serve normally (None: always).
    """

    status: int | None = None
    redirect_to: str | None = None
    corrupt_offset: int | None = None
    truncate_to: int | None = None
    extra_bytes: int = 0
    chunked: bool = False
    delay: float = 0.0
    chunk_delay: float = 0.0
    chunk_size: int = _CHUNK
    times: int | None = None


class WeightServer:
    """Serves ``source`` (a directory or a name -> bytes mapping) over HTTP on loopback.

    Start with :meth:`start` or a ``with`` block; :meth:`url` builds a URL for a name;
    :meth:`inject` sets a :class:`Fault` for a name; :meth:`request_count` counts GETs of a name
    (faulty ones included).
    """

    def __init__(self, source: str | Path | Mapping[str, bytes], *, host: str = "127.0.0.1"):
        if isinstance(source, Mapping):
            self._files: dict[str, bytes] | None = {
                name.lstrip("/"): bytes(data) for name, data in source.items()
            }
            self._directory: Path | None = None
        else:
            self._files = None
            self._directory = Path(source).resolve()
            if not self._directory.is_dir():
                raise NotADirectoryError(str(self._directory))
        self._host = host
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}
        self._fault_uses: Counter[str] = Counter()
        self._requests: Counter[str] = Counter()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> WeightServer:
        """Bind a free port and serve from a daemon thread."""
        if self._server is not None:
            return self
        server = ThreadingHTTPServer((self._host, 0), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> WeightServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- addresses -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        return f"http://{self._host}:{self.port}"

    def url(self, name: str) -> str:
        """The URL serving ``name``."""
        return f"{self.base_url}/{urllib.parse.quote(name.lstrip('/'))}"

    # --- test knobs ----------------------------------------------------------------------------

    def inject(self, name: str, fault: Fault | None) -> None:
        """Misbehave on ``name`` as ``fault`` says (None: behave again)."""
        key = name.lstrip("/")
        with self._lock:
            if fault is None:
                self._faults.pop(key, None)
            else:
                self._faults[key] = fault
            self._fault_uses.pop(key, None)

    def put(self, name: str, data: bytes) -> None:
        """Serve ``data`` as ``name`` (mapping-backed servers only)."""
        if self._files is None:
            raise TypeError("put() needs a server built from a mapping")
        with self._lock:
            self._files[name.lstrip("/")] = bytes(data)

    def request_count(self, name: str | None = None) -> int:
        """GET requests received for ``name`` (None: for every name)."""
        with self._lock:
            if name is None:
                return sum(self._requests.values())
            return self._requests[name.lstrip("/")]

    def reset_counts(self) -> None:
        """Forget the request counts."""
        with self._lock:
            self._requests.clear()

    # --- serving (called from handler threads) -------------------------------------------------

    def _begin(self, name: str) -> Fault | None:
        """Count a request for ``name`` and return the fault to apply to it, if any."""
        with self._lock:
            self._requests[name] += 1
            fault = self._faults.get(name)
            if fault is None:
                return None
            if fault.times is not None and self._fault_uses[name] >= fault.times:
                return None
            self._fault_uses[name] += 1
            return fault

    def _body(self, name: str) -> bytes | None:
        if self._files is not None:
            with self._lock:
                return self._files.get(name)
        assert self._directory is not None
        path = (self._directory / name).resolve()
        if not path.is_relative_to(self._directory) or not path.is_file():
            return None
        return path.read_bytes()


def _make_handler(server: WeightServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "edgechain-weight-server"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # tests stay quiet

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.close_connection = True
            name = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
            fault = server._begin(name) or Fault()
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status is not None:
                self._send_text(fault.status, f"injected status {fault.status}\n")
                return
            if fault.redirect_to is not None:
                self.send_response(HTTPStatus.FOUND)
                self.send_header("Location", fault.redirect_to)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                return
            body = server._body(name)
            if body is None:
                self._send_text(HTTPStatus.NOT_FOUND, f"no such file: {name}\n")
                return
            self._send_body(body, fault)

        def _send_text(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _send_body(self, body: bytes, fault: Fault) -> None:
            if fault.corrupt_offset is not None and 0 <= fault.corrupt_offset < len(body):
                mutable = bytearray(body)
                mutable[fault.corrupt_offset] ^= 0xFF
                body = bytes(mutable)
            if fault.extra_bytes:
                body = body + b"\xa5" * fault.extra_bytes
            announced = len(body)
            if fault.truncate_to is not None:
                body = body[: fault.truncate_to]
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            if fault.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(announced))
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for chunk in _chunks(body, fault.chunk_size):
                    if fault.chunk_delay:
                        time.sleep(fault.chunk_delay)
                    if fault.chunked:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    else:
                        self.wfile.write(chunk)
                    self.wfile.flush()
                # A truncated chunked body ends without its terminating chunk, as a dying
                # server's would.
                if fault.chunked and fault.truncate_to is None:
                    self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (too large, timed out): expected in tests

    return Handler


def _chunks(data: bytes, size: int = _CHUNK) -> Iterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), max(size, 1)):
        yield bytes(view[start : start + max(size, 1)])
