"""The browser page served on GET at an application's URL: a self-contained query console.

It replaces GraphiQL, whose JavaScript comes from a CDN: this page (``console.html``) carries
its own script and style, so it works on a machine with no internet access. It posts GraphQL
queries to the page's own URL and streams generations from ``<url>/generate`` (SSE).
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path

__all__ = ["console_page"]

_TEMPLATE = Path(__file__).with_name("console.html")


@cache
def _template() -> str:
    return _TEMPLATE.read_text(encoding="utf-8")


def console_page(title: str, chain_id: str, application_id: str) -> str:
    """The console's HTML for one application."""
    page = _template()
    for marker, value in (
        ("__TITLE__", title),
        ("__CHAIN_ID__", chain_id),
        ("__APPLICATION_ID__", application_id),
    ):
        page = page.replace(marker, html.escape(value))
    return page
