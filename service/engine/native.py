"""The native backend: the same Rust engine built as the pyo3 module ``edgechain_native``.

Same interface and errors as the wasm backend. A wall-clock budget is checked between tokens
(native code cannot be interrupted mid-token, unlike the guest).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, TypeVar, cast

from edgechain.errors import (
    EngineInternalError,
    EngineUnavailable,
    InvalidCheckpoint,
    InvalidParameter,
    InvalidTokenizer,
)
from edgechain.service.engine.base import (
    Engine,
    LoadedModel,
    ModelInfo,
    SessionStart,
    Step,
    VerifierStart,
    batch_steps,
    count_setting,
)
from edgechain.service.engine.codes import error_from_code
from edgechain.service.engine.files import (
    TOKENIZER_MAX_BYTES,
    is_gguf,
    open_input,
    tokenizer_for,
    unchanged_checkpoint,
)

_T = TypeVar("_T")


def import_native() -> ModuleType:
    """The edgechain_native module, or EngineUnavailable saying how to build it."""
    try:
        return importlib.import_module("edgechain_native")
    except ImportError as err:
        raise EngineUnavailable(
            f"native engine module edgechain_native is not installed ({err}): "
            "build it with scripts/build_native.sh"
        ) from None


#: Environment variable giving the native engine's default thread count.
THREADS_ENV = "EDGECHAIN_THREADS"
#: The most threads a model may use (the module's own limit).
MAX_THREADS = 256


def resolve_threads(threads: int | None) -> int | None:
    """The thread count to open models with: ``threads`` if given, else ``$EDGECHAIN_THREADS``,
    else None (the module's default: the cores). InvalidParameter for anything but an integer
    in 1..MAX_THREADS."""
    return count_setting(threads, THREADS_ENV, "threads", MAX_THREADS)


class NativeEngine(Engine):
    """Loads models with edgechain_native. ``timeout``: default budget per generation (s);
    ``threads``: how many threads split each matrix product's rows (default
    ``$EDGECHAIN_THREADS``, else the cores; the output is the same bits for any count)."""

    kind = "native"

    def __init__(self, timeout: float | None = None, threads: int | None = None) -> None:
        super().__init__(timeout)
        self.threads = resolve_threads(threads)
        self._native = import_native()

    def load(self, checkpoint: bytes, tokenizer: bytes) -> NativeModel:
        """Parse the checkpoint and tokenizer into a native model."""
        native, threads = self._native, self.threads
        model = _guarded(
            native, lambda: native.Model(bytes(checkpoint), bytes(tokenizer), threads=threads)
        )
        return NativeModel(self._native, model, self.timeout)

    def load_files(
        self, checkpoint: str | os.PathLike[str], tokenizer: str | os.PathLike[str] | None
    ) -> NativeModel:
        """Read the checkpoint file in Rust straight into the weights (one copy of them in the
        process). See :meth:`Engine.load_files`."""
        native = self._native
        with open_input(checkpoint, "checkpoint", InvalidCheckpoint) as f:
            gguf = is_gguf(f)
        if gguf or not hasattr(native.Model, "from_files"):  # GGUF: parsed in memory
            return cast(NativeModel, super().load_files(checkpoint, tokenizer))
        if tokenizer is None:
            tokenizer_for(False, None)  # the one error for a missing tokenizer.bin
        # Opened here for the same missing-file errors as the other backend, and to detect a
        # checkpoint replaced or modified while Rust reads it by its path.
        with unchanged_checkpoint(checkpoint, by_path=True):
            open_input(tokenizer, "tokenizer", InvalidTokenizer, TOKENIZER_MAX_BYTES).close()
            threads = self.threads
            model = _guarded(
                native,
                lambda: native.Model.from_files(
                    os.fspath(checkpoint), os.fspath(tokenizer), threads=threads
                ),
            )
        return NativeModel(native, model, self.timeout)


def _guarded(native: ModuleType, call: Callable[[], _T]) -> _T:
    """Run ``call``, turning the module's EngineError(code, message) into edgechain.errors."""
    try:
        return call()
    except native.EngineError as err:
        code, message = _code_and_message(err)
        raise error_from_code(code, message) from None


def _code_and_message(err: BaseException) -> tuple[int, str]:
    args = err.args
    if len(args) >= 2 and isinstance(args[0], int):
        return args[0], str(args[1])
    return -9, " ".join(str(a) for a in args)


class NativeModel(LoadedModel):
    """A model held by edgechain_native."""

    def __init__(self, native: ModuleType, model: Any, timeout: float | None) -> None:
        self._native = native
        self._model: Any = model
        self._timeout = timeout
        self._lock = threading.RLock()
        self.info = ModelInfo.from_dict(self._call(lambda m: dict(m.info())))
        #: How many threads split the model's matrix products.
        self.threads = int(model.threads)

    def _call(self, fn: Callable[[Any], _T]) -> _T:
        with self._lock:
            model = self._model
            if model is None:
                raise EngineInternalError("model is closed")
            return _guarded(self._native, lambda: fn(model))

    def _encode(self, text: str, data: bytes, bos: bool, eos: bool) -> list[int]:
        return [int(i) for i in self._call(lambda m: m.encode(text, bos, eos))]

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        id_list = [int(i) for i in ids]
        if any(not 0 <= i < 2**32 for i in id_list):
            raise InvalidParameter("token ids must be in [0, 2^32)")
        return bytes(self._call(lambda m: m.decode(id_list)))

    def _position_logits(self, ids: list[int]) -> bytes:
        return bytes(self._call(lambda m: m.logits(ids, every_position=True)))

    def _render_chat(self, messages: str, add_generation_prompt: bool) -> str:
        return str(self._call(lambda m: m.render_chat(messages, add_generation_prompt)))

    def _start(self, start: SessionStart) -> _NativeSession:
        prompt, params_json = start.prompt, start.params_json
        if start.messages:
            return _NativeSession(self, self._call(lambda m: m.start_messages(prompt, params_json)))
        if start.chat:
            return _NativeSession(self, self._call(lambda m: m.start_chat(prompt, params_json)))
        return _NativeSession(self, self._call(lambda m: m.start(prompt, params_json)))

    def _start_verifier(self, start: VerifierStart) -> _NativeVerifier:
        ids = list(start.claimed)
        verifier = self._call(
            lambda m: m.verify_start(start.prompt, start.params_json, ids, start.messages)
        )
        return _NativeVerifier(self, verifier)

    def step_batch(self, drivers: Sequence[_NativeSession], deadline: float | None) -> list[Step]:
        """One step of every session (drivers from :meth:`generate` on this model), one weight
        pass for those plainly decoding; each step is what ``driver.step`` would give. A
        session's own failure is its ``Step.failed(error)``, the others' steps stand. As for one
        session, ``deadline`` is the caller's to check between steps (native code cannot be
        interrupted mid-step)."""
        if not drivers:
            return []
        with self._lock:
            sessions = [d._live() for d in drivers]
            if len({id(s) for s in sessions}) != len(sessions):
                raise InvalidParameter("a session appears twice in one batch step")
            results = self._call(lambda m: m.step_batch(sessions))
        return batch_steps((c, t, bytes(d), r, p, g) for c, t, d, r, p, g in results)

    def close(self) -> None:
        with self._lock:
            self._model = None


class _NativeSession:
    def __init__(self, model: NativeModel, session: Any) -> None:
        self._model = model
        self._session: Any = session

    def _call(self, fn: Callable[[Any], _T]) -> _T:
        with self._model._lock:
            if self._session is None:
                raise EngineInternalError("session is closed")
            session = self._session
            return _guarded(self._model._native, lambda: fn(session))

    def _live(self) -> Any:
        if self._session is None:
            raise EngineInternalError("session is closed")
        return self._session

    def prompt_bytes(self) -> bytes:
        return bytes(self._call(lambda s: s.prompt()))

    def step(self, deadline: float | None) -> Step:
        # In-process calls cost nothing like a guest call, so the step reads its outcome from
        # the session's getters.
        def run(s: Any) -> Step:
            produced = s.step()
            if produced is not None:
                produced = int(produced[0]), bytes(produced[1])
            prompt_tokens, generated = s.counts
            return Step(produced, int(s.stop_reason), int(prompt_tokens), int(generated))

        return self._call(run)

    def append(self, turn: str, turn_bytes: bytes, messages: bool = False) -> None:
        if messages:
            self._call(lambda s: s.append_messages(turn))
        else:
            self._call(lambda s: s.append(turn))

    def counts(self) -> tuple[int, int]:
        prompt_tokens, generated = self._call(lambda s: s.counts)
        return int(prompt_tokens), int(generated)

    def free(self) -> None:
        self._session = None


class _NativeVerifier:
    """One claim's verification, run in slices under the model's lock."""

    def __init__(self, model: NativeModel, verifier: Any) -> None:
        self._model = model
        self._verifier: Any = verifier

    def run(self, steps: int, deadline: float | None) -> tuple[Any, ...] | None:
        # ``deadline`` is checked by the caller between slices (native code runs a slice whole).
        with self._model._lock:
            verifier = self._verifier
            if verifier is None:
                raise EngineInternalError("verifier is closed")
            verdict = _guarded(self._model._native, lambda: verifier.run(steps))
        return None if verdict is None else tuple(verdict)

    def free(self) -> None:
        self._verifier = None
