"""Publish checks every URL it is about to certify: each one must serve exactly the hashed bytes.

A URL written on chain is where every other machine's service will fetch the model from. A URL
that serves nothing (a typo, a server not started) would be certified anyway and the publisher's
own service would keep answering from its local cache, so the mistake shows only elsewhere.
:func:`check_urls` downloads each URL under the client's fetch policy (the same allow-list, size
cap and stall rules a service applies), streams the body through BLAKE3 without keeping it, and
compares digest and size with the file that was hashed. ``--no-check-urls`` skips it, for hosts
that are not up yet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgechain.contract.operations import FileRef
from edgechain.errors import FetchError, HashMismatch
from edgechain.service.fetch import Fetcher, FetchPolicy

__all__ = ["UrlCheck", "check_urls"]

#: Why a URL failed its check is followed by what to do about it.
_HINT = "publish checks every URL it certifies; --no-check-urls skips this for a host not up yet"


@dataclass(frozen=True)
class UrlCheck:
    """One URL that served the hashed bytes: which file it serves, and how many bytes."""

    what: str  # "weights" or "tokenizer"
    url: str
    size: int


class _Discard:
    """A binary sink: the checked body is hashed as it streams and never kept."""

    def write(self, data: bytes) -> int:
        return len(data)


def check_urls(
    files: Sequence[tuple[str, FileRef]],
    policy: FetchPolicy,
    *,
    already_checked: frozenset[str] = frozenset(),
    progress: Callable[[str, int, int | None], None] | None = None,
) -> list[UrlCheck]:
    """Download every URL of each ``(what, FileRef)`` and check it serves the ref's bytes.

    ``already_checked`` names URLs whose bytes were just hashed (a publish from a URL): they
    are reported, not fetched again. Raises :class:`FetchError` (unreachable, refused host,
    too large, ...) or :class:`HashMismatch` (other bytes), naming the file and the URL.
    """
    checks: list[UrlCheck] = []
    with Fetcher(policy) as fetcher:
        for what, ref in files:
            for url in ref.urls:
                if url not in already_checked:
                    _check_one(fetcher, what, url, ref, progress)
                checks.append(UrlCheck(what, url, ref.size))
    return checks


def _check_one(
    fetcher: Fetcher,
    what: str,
    url: str,
    ref: FileRef,
    progress: Callable[[str, int, int | None], None] | None,
) -> None:
    on_piece = None
    if progress is not None:
        label = f"checking {what} URL"
        on_piece = lambda done, total: progress(label, done, total)  # noqa: E731
    try:
        _, digest = fetcher.download_to(
            url,
            _Discard(),  # type: ignore[arg-type]
            expected_size=ref.size,
            progress=on_piece,
        )
    except FetchError as exc:
        raise FetchError(f"{what}: {exc} ({_HINT})", url=url, reason=exc.reason) from None
    if digest != ref.blake3:
        raise HashMismatch(
            f"{what} URL {url} serves other bytes: BLAKE3 {digest[:16]}..., not the "
            f"{ref.blake3[:16]}... being published ({_HINT})",
            url=url,
            expected=ref.blake3,
            actual=digest,
        )
