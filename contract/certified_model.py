"""A model entry read from certified state, with the block and certificate behind it: what the
registry's service answers (contract/registry.py) and what the client, the node, receipts and
the service's queries carry.

It lives beside the registry application, not in it: the application uses only the SDK, while
checking a certificate against a committee is the chain's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgechain.chain.certificate import Certificate, verify_certificate
from edgechain.chain.committee import Committee
from edgechain.errors import CertificateError

if TYPE_CHECKING:
    from edgechain.contract.registry import ModelEntry

__all__ = ["CertifiedModel"]


@dataclass(frozen=True)
class CertifiedModel:
    """A model entry read from certified state, with the block and certificate behind it.

    ``height``/``block_hash``/``certificate`` are those of the block that made the entry current
    (its registration, or its retirement). A service derives seeds from ``chain_id``,
    ``block_hash`` and ``app_id``.
    """

    entry: ModelEntry
    chain_id: bytes
    app_id: bytes
    height: int
    block_hash: bytes
    certificate: Certificate

    def verify(self, committee: Committee) -> None:
        """Check the certificate against ``committee`` and that it certifies ``block_hash``."""
        verify_certificate(self.certificate, committee)
        if (self.certificate.block_hash, self.certificate.height, self.certificate.chain_id) != (
            self.block_hash,
            self.height,
            self.chain_id,
        ):
            raise CertificateError(
                f"the certificate does not certify model {self.entry.name} at height {self.height}"
            )

    def to_json(self) -> dict[str, Any]:
        """The one JSON shape of a certified model (the CLI's ``--json``, the node's SSE
        ``done`` record; GraphQL's ``Model`` has the same fields, camelCase, with ``height``
        for ``certificate_height`` and ``retired`` for ``status``): the entry, files as
        ``FileRef.to_json``, and the certificate that made it current."""
        entry = self.entry
        return {
            "name": entry.name,
            "version": entry.version,
            "format": entry.format,
            "description": entry.description,
            "license": entry.license,
            "weights": entry.weights.to_json(),
            "tokenizer": entry.tokenizer.to_json(),
            "registered_height": entry.registered_height,
            "registered_by": entry.registered_by.hex(),
            "retired_height": entry.retired_height,
            "status": "retired" if entry.retired else "active",
            "chain_id": self.chain_id.hex(),
            "application_id": self.app_id.hex(),
            "certificate_height": self.height,
            "block_hash": self.block_hash.hex(),
            "signers": list(self.certificate.signers),
        }
