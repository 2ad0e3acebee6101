"""The ABI's error codes and their Python exceptions: one table for both backends."""

from __future__ import annotations

from edgechain import errors

#: ABI error code (rust_guest/ABI.md) -> the edgechain.errors class raised for it.
ERROR_CLASSES: dict[int, type[errors.EdgechainError]] = {
    -1: errors.InvalidParameter,  # InvalidArgument
    -2: errors.InvalidCheckpoint,
    -3: errors.InvalidTokenizer,
    -4: errors.VocabMismatch,
    -5: errors.PromptTooLong,
    -6: errors.ContextFull,
    -7: errors.EngineInternalError,  # InvalidHandle: a host bug, not the user's doing
    -8: errors.InvalidText,  # InvalidUtf8
    -9: errors.EngineInternalError,  # Internal (a candle error)
    -10: errors.UnsupportedModel,
    -11: errors.ChatTemplateError,
}


def error_from_code(code: int, message: str) -> errors.EdgechainError:
    """The exception for an ABI error code, keeping the engine's message."""
    cls = ERROR_CLASSES.get(code, errors.EngineInternalError)
    text = message.strip() or f"engine error code {code}"
    if code not in ERROR_CLASSES:
        text = f"engine error code {code}: {text}"
    return cls(text)
