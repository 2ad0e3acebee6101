"""How the commands print results: JSON on stdout (``--json``), certified models and
certificates as text. The JSON of a certified model is
:meth:`~edgechain.contract.registry.CertifiedModel.to_json`, as the node serves it."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from edgechain.chain.certificate import Certificate
from edgechain.chain.committee import Committee
from edgechain.contract.registry import CertifiedModel


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout (bytes as hex)."""
    json.dump(value, sys.stdout, indent=2, default=_json_default)
    sys.stdout.write("\n")


def print_result(json_output: bool, value: Any, lines: Iterable[str]) -> int:
    """A command's result on stdout: ``value`` as JSON with ``--json`` (``json_output``), else
    the text ``lines`` (a generator only runs without ``--json``); the exit code, 0."""
    if json_output:
        print_json(value)
    else:
        for line in lines:
            print(line)
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def certificate_line(certificate: Certificate, committee: Committee) -> str:
    """``height 3, block 5f…, signed by v1, v2, v3 (quorum 3 of 4)``."""
    return (
        f"height {certificate.height}, block {certificate.block_hash.hex()}, signed by "
        f"{', '.join(certificate.signers)} (quorum {committee.quorum} of "
        f"{len(committee.members)})"
    )


def model_lines(model: CertifiedModel, committee: Committee) -> list[str]:
    """A certified entry as indented text lines (hashes in full: users compare them)."""
    entry = model.entry
    lines = [f"{entry.name} version {entry.version} ({entry.format})"]
    if entry.description:
        lines.append(f"  description  {entry.description}")
    if entry.license:
        lines.append(f"  license      {entry.license}")
    for what, file in (("weights", entry.weights), ("tokenizer", entry.tokenizer)):
        lines.append(f"  {what:<12} blake3 {file.blake3}  {file.size:,} bytes")
        if file.chunks:
            blobs = len(file.chunks)
            lines.append(f"  {'':<12} stored on chain as {blobs} blob{'s' * (blobs != 1)}")
        lines.extend(f"  {'':<12} {url}" for url in file.urls)
    status = f"retired at height {entry.retired_height}" if entry.retired else "active"
    lines.append(f"  status       {status} (registered at height {entry.registered_height})")
    lines.append(f"  certificate  {certificate_line(model.certificate, committee)}")
    return lines
