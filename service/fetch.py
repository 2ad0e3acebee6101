"""Fetch bytes over HTTP and verify their BLAKE3 hash before anyone sees them.

The service fetches model weights from URLs written on chain, so every URL is untrusted input.
:class:`Fetcher` (an :class:`httpx.Client` configured by a :class:`FetchPolicy`) enforces:

- http and https only, and only hosts on the policy's allow-list (loopback by default). The check
  is on the URL's host name, before any connection or DNS lookup; every redirect target is
  checked again. Proxy settings from the environment are ignored, so loopback means loopback.
- a size limit: the smaller of the policy's ``max_bytes`` and the expected size. A Content-Length
  over the limit fails before the body is read; a body that grows past it is aborted mid-stream.
- connect and read timeouts per network operation, an overall deadline per URL, and a minimum
  transfer rate (a stall rule: fewer than ``min_rate_bytes`` in any ``min_rate_window`` seconds
  fails), so a host that drips a byte now and then cannot hold a download for long.
- a bounded number of redirects.

The body is streamed and hashed as it arrives; bytes are returned only once the whole body is in
and its BLAKE3 digest equals the expected one. Every download takes an optional ``progress``
callback (``progress(done_bytes, total_bytes_or_None)`` per piece received) and an optional
``cancel`` event, checked per piece: set, the download stops with
:class:`~edgechain.errors.Cancelled`. :meth:`Fetcher.download_to` streams into a file, so a
download of any size never sits in memory. Every failure is a
:class:`~edgechain.errors.FetchError` (with ``url`` and ``reason``) or a
:class:`~edgechain.errors.HashMismatch` (with ``url``, ``expected`` and ``actual``).

Example::

    with Fetcher(FetchPolicy(max_bytes=100 << 20)) as fetcher:
        data = fetcher.fetch_any(urls, expected_blake3=digest, expected_size=size)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import BinaryIO

import blake3
import httpx

from edgechain.contract.operations import MAX_FILE_SIZE
from edgechain.errors import (
    Cancelled,
    FetchError,
    HashMismatch,
    InputError,
    InvalidParameter,
    ServiceError,
)

__all__ = [
    "DEFAULT_ALLOWED_HOSTS",
    "FetchPolicy",
    "FetchProgress",
    "FetchReason",
    "Fetcher",
    "fetch_url",
    "fetch_any",
    "normalize_blake3_hex",
]

#: Hosts a default policy allows: the loopback interface only.
DEFAULT_ALLOWED_HOSTS: frozenset[str] = frozenset({"127.0.0.1", "::1", "localhost"})

#: Called as ``progress(done_bytes, total_bytes)`` as a body arrives (total None: unknown).
FetchProgress = Callable[[int, "int | None"], None]

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_HEX_DIGITS = frozenset("0123456789abcdef")


class FetchReason(StrEnum):
    """Why a fetch failed; the value of :attr:`FetchError.reason`."""

    BAD_URL = "bad url"
    SCHEME_NOT_ALLOWED = "scheme not allowed"
    HOST_NOT_ALLOWED = "host not allowed"
    CONNECTION_FAILED = "connection failed"
    TIMED_OUT = "timed out"
    HTTP_STATUS = "http status"
    TOO_MANY_REDIRECTS = "too many redirects"
    TOO_LARGE = "too large"
    TOO_SLOW = "too slow"
    TRUNCATED = "truncated"
    NETWORK = "network error"
    NO_URLS = "no urls"


@dataclass(frozen=True)
class FetchPolicy:
    """What a :class:`Fetcher` may fetch, and how long and how much it may take.

    ``allowed_hosts`` holds host names or IP literals compared case-insensitively with the URL's
    host (no wildcards, no DNS resolution); IPv6 literals are written without brackets.
    ``max_bytes`` caps any single body. Timeouts are in seconds: ``connect_timeout`` and
    ``read_timeout`` bound each network operation (a read timeout fires when the server sends
    nothing for that long); ``total_timeout`` bounds one URL's whole download, redirects
    included (None: no bound). The stall rule fails a download that receives fewer than
    ``min_rate_bytes`` in any ``min_rate_window`` seconds (0 bytes: no rule), so a server
    trickling bytes fails in seconds, not at the total deadline.
    """

    allowed_hosts: frozenset[str] = DEFAULT_ALLOWED_HOSTS
    allowed_schemes: frozenset[str] = frozenset({"http", "https"})
    max_bytes: int = MAX_FILE_SIZE
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    total_timeout: float | None = 600.0
    min_rate_bytes: int = 64 << 10
    min_rate_window: float = 20.0
    max_redirects: int = 3
    user_agent: str = "edgechain-fetch/0.1"
    allowed_hosts_normalized: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_bytes < 0:
            raise InvalidParameter(f"max_bytes must be >= 0, got {self.max_bytes}")
        if self.min_rate_bytes < 0 or self.min_rate_window <= 0:
            raise InvalidParameter(
                f"need min_rate_bytes >= 0 and min_rate_window > 0, got {self.min_rate_bytes} "
                f"bytes per {self.min_rate_window} s"
            )
        if self.max_redirects < 0:
            raise InvalidParameter(f"max_redirects must be >= 0, got {self.max_redirects}")
        hosts = frozenset(h.strip().lower().strip("[]") for h in self.allowed_hosts)
        object.__setattr__(self, "allowed_hosts_normalized", hosts)

    def with_hosts(self, *hosts: str) -> FetchPolicy:
        """A copy of this policy that also allows ``hosts``."""
        return replace(self, allowed_hosts=self.allowed_hosts | frozenset(hosts))

    def check_url(self, url: str | httpx.URL) -> httpx.URL:
        """Parse ``url`` and return it if the policy allows it, else raise :class:`FetchError`.

        Purely syntactic: no connection and no DNS lookup happen here.
        """
        parsed, violation = self._inspect(url)
        if violation is not None:
            raise _fail(str(url), *violation)
        assert parsed is not None
        return parsed

    def _inspect(
        self, url: str | httpx.URL
    ) -> tuple[httpx.URL | None, tuple[FetchReason, str] | None]:
        try:
            parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            return None, (FetchReason.BAD_URL, str(exc))
        if parsed.scheme not in self.allowed_schemes:
            allowed = ", ".join(sorted(self.allowed_schemes))
            scheme = parsed.scheme or "(none)"
            return None, (FetchReason.SCHEME_NOT_ALLOWED, f"scheme {scheme!r} (allowed: {allowed})")
        host = parsed.host.lower()
        if not host:
            return None, (FetchReason.BAD_URL, "no host")
        if host not in self.allowed_hosts_normalized:
            allowed = ", ".join(sorted(self.allowed_hosts_normalized))
            return None, (FetchReason.HOST_NOT_ALLOWED, f"host {host!r} (allowed: {allowed})")
        return parsed, None


def normalize_blake3_hex(digest: str) -> str:
    """Return ``digest`` as 64 lowercase hex digits, or raise :class:`InputError`."""
    lowered = digest.strip().lower() if isinstance(digest, str) else ""
    if len(lowered) != 64 or not set(lowered) <= _HEX_DIGITS:
        raise InputError(f"not a BLAKE3 digest (64 hex digits): {digest!r}")
    return lowered


def _fail(url: str, reason: FetchReason, detail: str) -> FetchError:
    return FetchError(f"fetch {url} failed: {reason.value}: {detail}", url=url, reason=reason)


class _Deadline:
    def __init__(self, seconds: float | None) -> None:
        self._end = None if seconds is None else time.monotonic() + seconds
        self.seconds = seconds

    def expired(self) -> bool:
        return self._end is not None and time.monotonic() > self._end


class _RateFloor:
    """The stall rule: at least ``min_bytes`` in every ``window`` seconds of a body."""

    def __init__(self, min_bytes: int, window: float) -> None:
        self.min_bytes = min_bytes
        self.window = window
        self._start = time.monotonic()
        self._start_bytes = 0

    def too_slow(self, received: int) -> str | None:
        """A description of the violation once a window closed short of the floor, else None."""
        if self.min_bytes <= 0:
            return None
        now = time.monotonic()
        if now - self._start < self.window:
            return None
        got = received - self._start_bytes
        if got < self.min_bytes:
            return (
                f"{got} bytes in {now - self._start:.1f} s, below the minimum rate of "
                f"{self.min_bytes} bytes per {self.window:g} s"
            )
        self._start, self._start_bytes = now, received
        return None


@dataclass
class _Transfer:
    """Where one download's body goes and who hears about it."""

    sink: Callable[[bytes], object]
    progress: FetchProgress | None = None
    cancel: threading.Event | None = None


class Fetcher:
    """Downloads and verifies bytes under a :class:`FetchPolicy`; safe to share between threads.

    Use as a context manager or call :meth:`close`. ``transport`` replaces httpx's network
    transport (tests pass :class:`httpx.MockTransport`).
    """

    def __init__(
        self,
        policy: FetchPolicy | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.policy = policy or FetchPolicy()
        timeout = httpx.Timeout(
            connect=self.policy.connect_timeout,
            read=self.policy.read_timeout,
            write=self.policy.read_timeout,
            pool=self.policy.connect_timeout,
        )
        # Redirects are followed by hand so that every hop is checked against the policy;
        # trust_env=False so an HTTP(S)_PROXY variable cannot route "loopback" elsewhere.
        self._client = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            transport=transport,
            headers={"user-agent": self.policy.user_agent, "accept-encoding": "identity"},
        )

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._client.close()

    def fetch(
        self,
        url: str,
        *,
        expected_blake3: str,
        expected_size: int | None = None,
        progress: FetchProgress | None = None,
        cancel: threading.Event | None = None,
    ) -> bytes:
        """Download ``url`` and return its body if its BLAKE3 digest is ``expected_blake3``.

        ``expected_size`` (bytes), when given, also bounds the download: a longer body fails
        as too large, a shorter one as truncated. Raises :class:`FetchError`,
        :class:`HashMismatch` or (``cancel`` set) :class:`Cancelled`; never returns bytes that
        were not verified.
        """
        expected = normalize_blake3_hex(expected_blake3)
        chunks: list[bytes] = []
        _, actual = self._get(url, expected_size, _Transfer(chunks.append, progress, cancel))
        data = b"".join(chunks)
        if actual != expected:
            raise HashMismatch(
                f"fetch {url}: BLAKE3 mismatch: expected {expected}, got {actual}"
                f" ({len(data)} bytes discarded)",
                url=url,
                expected=expected,
                actual=actual,
            )
        return data

    def download(self, url: str) -> tuple[bytes, str]:
        """Download ``url`` under the policy with no expected hash: ``(body, blake3 hex)``.

        For a publisher hashing a file it is about to register: the same host checks,
        redirects, size cap and deadline as :meth:`fetch`, the digest computed as bytes arrive.
        Raises :class:`FetchError`.
        """
        chunks: list[bytes] = []
        _, digest = self._get(url, None, _Transfer(chunks.append))
        return b"".join(chunks), digest

    def download_to(
        self,
        url: str,
        out: BinaryIO,
        *,
        expected_size: int | None = None,
        progress: FetchProgress | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[int, str]:
        """:meth:`download`, streamed into the binary file ``out``: ``(size, blake3 hex)``.

        ``expected_size``, when given, bounds the body as :meth:`fetch` does. Memory stays
        bounded whatever the size. On a failure ``out`` holds part of a body (or of a body
        before a redirect's), so the caller discards it.
        """

        def write(chunk: bytes) -> None:
            out.write(chunk)

        return self._get(url, expected_size, _Transfer(write, progress, cancel))

    def _get(self, url: str, expected_size: int | None, transfer: _Transfer) -> tuple[int, str]:
        """Follow redirects under the policy; the body goes to ``transfer``: (size, hex digest)."""
        if expected_size is not None and expected_size < 0:
            raise InvalidParameter(f"expected_size must be >= 0, got {expected_size}")
        limit = self.policy.max_bytes
        if expected_size is not None:
            if expected_size > limit:
                raise _fail(
                    url,
                    FetchReason.TOO_LARGE,
                    f"expected size {expected_size} bytes exceeds the cap of {limit} bytes",
                )
            limit = expected_size
        deadline = _Deadline(self.policy.total_timeout)
        target = self.policy.check_url(url)
        redirects = 0
        while True:
            try:
                outcome = self._download(url, target, limit, expected_size, deadline, transfer)
            except httpx.TimeoutException as exc:
                raise _fail(
                    url, FetchReason.TIMED_OUT, _describe_timeout(exc, self.policy)
                ) from None
            except httpx.ConnectError as exc:
                raise _fail(url, FetchReason.CONNECTION_FAILED, f"{target}: {exc}") from None
            except httpx.RemoteProtocolError as exc:
                raise _fail(url, FetchReason.TRUNCATED, f"connection closed early: {exc}") from None
            except httpx.TransportError as exc:
                raise _fail(url, FetchReason.NETWORK, f"{type(exc).__name__}: {exc}") from None
            if not isinstance(outcome, httpx.URL):
                return outcome
            redirects += 1
            if redirects > self.policy.max_redirects:
                raise _fail(
                    url,
                    FetchReason.TOO_MANY_REDIRECTS,
                    f"more than {self.policy.max_redirects} (last to {outcome})",
                )
            parsed, violation = self.policy._inspect(outcome)
            if violation is not None:
                reason, detail = violation
                raise _fail(url, reason, f"redirect to {outcome}: {detail}")
            assert parsed is not None
            target = parsed

    def fetch_any(
        self,
        urls: Sequence[str],
        *,
        expected_blake3: str,
        expected_size: int | None = None,
        progress: FetchProgress | None = None,
        cancel: threading.Event | None = None,
    ) -> bytes:
        """Try each of ``urls`` in order; return the first body that verifies.

        If none does, raise one error listing every URL's failure: a :class:`HashMismatch`
        if every URL served wrong bytes, else a :class:`FetchError` (``failures`` holds each).
        A set ``cancel`` stops at once with :class:`Cancelled`.
        """
        if isinstance(urls, str):
            urls = [urls]
        if not urls:
            raise FetchError("fetch failed: no URLs to try", reason=FetchReason.NO_URLS)
        failures: list[ServiceError] = []
        for url in urls:
            try:
                return self.fetch(
                    url,
                    expected_blake3=expected_blake3,
                    expected_size=expected_size,
                    progress=progress,
                    cancel=cancel,
                )
            except (FetchError, HashMismatch) as exc:
                failures.append(exc)
        if len(failures) == 1:
            raise failures[0]
        summary = "; ".join(str(f) for f in failures)
        message = f"all {len(failures)} URLs failed: {summary}"
        if all(isinstance(f, HashMismatch) for f in failures):
            mismatch = HashMismatch(message, expected=normalize_blake3_hex(expected_blake3))
            raise mismatch
        raise FetchError(message, failures=tuple(failures))

    def _download(
        self,
        url: str,
        target: httpx.URL,
        limit: int,
        expected_size: int | None,
        deadline: _Deadline,
        transfer: _Transfer,
    ) -> httpx.URL | tuple[int, str]:
        """One request: a redirect target, or (size, hex digest) of the body it sent on."""
        with self._client.stream("GET", target) as response:
            if response.status_code in _REDIRECT_STATUSES:
                location = response.headers.get("location")
                if not location:
                    raise _fail(
                        url, FetchReason.HTTP_STATUS, f"{response.status_code} without Location"
                    )
                try:
                    return target.join(location)
                except httpx.InvalidURL as exc:
                    raise _fail(
                        url, FetchReason.BAD_URL, f"redirect to {location!r}: {exc}"
                    ) from None
            if response.status_code != 200:
                raise _fail(
                    url,
                    FetchReason.HTTP_STATUS,
                    f"{response.status_code} {response.reason_phrase} from {target}",
                )
            declared = _content_length(response)
            if declared is not None:
                if declared > limit:
                    raise _fail(
                        url,
                        FetchReason.TOO_LARGE,
                        f"Content-Length {declared} exceeds the limit of {limit} bytes",
                    )
                if expected_size is not None and declared < expected_size:
                    raise _fail(
                        url,
                        FetchReason.TRUNCATED,
                        f"Content-Length {declared} is less than the expected {expected_size}",
                    )
            hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
            received = 0
            total = expected_size if expected_size is not None else declared
            floor = _RateFloor(self.policy.min_rate_bytes, self.policy.min_rate_window)
            # Pieces as they arrive (no re-chunking), so the limit, deadline, stall rule and
            # cancellation act promptly.
            for chunk in response.iter_bytes():
                if transfer.cancel is not None and transfer.cancel.is_set():
                    raise Cancelled(f"fetch {url} cancelled: nobody waits for it any more")
                received += len(chunk)
                if received > limit:
                    raise _fail(
                        url,
                        FetchReason.TOO_LARGE,
                        f"body exceeds the limit of {limit} bytes",
                    )
                if deadline.expired():
                    raise _fail(
                        url,
                        FetchReason.TIMED_OUT,
                        f"download took longer than {deadline.seconds} s",
                    )
                if (slow := floor.too_slow(received)) is not None:
                    raise _fail(url, FetchReason.TOO_SLOW, slow)
                hasher.update(chunk)
                transfer.sink(chunk)
                if transfer.progress is not None:
                    transfer.progress(received, total)
            if expected_size is not None and received < expected_size:
                raise _fail(
                    url,
                    FetchReason.TRUNCATED,
                    f"got {received} bytes, expected {expected_size}",
                )
            return received, hasher.hexdigest()


def _content_length(response: httpx.Response) -> int | None:
    """The declared body length, when it describes the bytes we will read (no encoding)."""
    if response.headers.get("content-encoding", "identity").lower() != "identity":
        return None
    value = response.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _describe_timeout(exc: httpx.TimeoutException, policy: FetchPolicy) -> str:
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return f"no connection within {policy.connect_timeout} s"
    if isinstance(exc, httpx.ReadTimeout):
        return f"no data for {policy.read_timeout} s"
    return f"{type(exc).__name__}: {exc}"


def fetch_url(
    url: str,
    *,
    expected_blake3: str,
    expected_size: int | None = None,
    policy: FetchPolicy | None = None,
) -> bytes:
    """Fetch one URL with a one-off :class:`Fetcher`; see :meth:`Fetcher.fetch` (the errors are
    its own: :meth:`Fetcher.fetch_any` raises a lone URL's failure as it is)."""
    return fetch_any(
        [url], expected_blake3=expected_blake3, expected_size=expected_size, policy=policy
    )


def fetch_any(
    urls: Sequence[str],
    *,
    expected_blake3: str,
    expected_size: int | None = None,
    policy: FetchPolicy | None = None,
) -> bytes:
    """Fetch the first of ``urls`` that verifies, with a one-off :class:`Fetcher`."""
    with Fetcher(policy) as fetcher:
        return fetcher.fetch_any(urls, expected_blake3=expected_blake3, expected_size=expected_size)
