"""The inference engine: one interface, two backends (wasm guest, native module).

`load_files` reads the weights straight into the engine (one copy in memory); `load` takes
bytes the caller already holds.

engine = open_engine("wasm")            # or "native"
with engine.load_files("model.bin", "tokenizer.bin") as model:   # or load(bytes, bytes)
    generation = model.generate("Once upon a time", GenerationParams(temperature=0))
    for token in generation:
        print(token.text, end="")
"""

from __future__ import annotations

from typing import Any

from edgechain.errors import InvalidParameter
from edgechain.service.engine.base import (
    ChatMessage,
    Engine,
    Generation,
    GenerationParams,
    LoadedModel,
    ModelInfo,
    PromptOrMessages,
    StopReason,
    Token,
)

ENGINE_KINDS = ("wasm", "native")

__all__ = [
    "ENGINE_KINDS",
    "ChatMessage",
    "Engine",
    "Generation",
    "GenerationParams",
    "LoadedModel",
    "ModelInfo",
    "PromptOrMessages",
    "StopReason",
    "Token",
    "open_engine",
]


def open_engine(kind: str = "wasm", **options: Any) -> Engine:
    """An engine of the given kind: "wasm" (default; options: guest_path, cache_dir,
    memory_limit, timeout) or "native" (options: timeout, threads)."""
    if kind == "wasm":
        from edgechain.service.engine.wasm import WasmEngine

        return WasmEngine(**options)
    if kind == "native":
        from edgechain.service.engine.native import NativeEngine

        return NativeEngine(**options)
    raise InvalidParameter(f"unknown engine {kind!r}: choose one of {', '.join(ENGINE_KINDS)}")
