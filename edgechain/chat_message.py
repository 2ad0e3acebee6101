"""One message of a dialogue: the record the generation request carries (``contract/``, its
``messages``) and the engine renders with the model's chat template (``service/engine/``).

Shared by every layer, like ``edgechain.errors``, so the request and the engine name the same
type without the engine importing the contract: it names no other edgechain module."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChatMessage:
    """One message: its ``role`` (system, user, assistant, tool; a request allows those, the
    engine renders whatever the template knows) and its text."""

    role: str
    content: str

    def to_json(self) -> dict[str, str]:
        """The canonical encoding: ``{"role", "content"}`` (requests, receipts, the ABI)."""
        return {"role": self.role, "content": self.content}
