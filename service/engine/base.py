"""The one public engine interface, shared by the wasm and the native backends.

A backend provides an :class:`Engine` (``load(checkpoint, tokenizer)`` for bytes,
``load_files(checkpoint_path, tokenizer_path)`` to read the weights straight into the engine)
returning a :class:`LoadedModel`. Generation is driven by a backend-specific
:class:`SessionDriver`; the :class:`Generation` iterator around it (text assembly, cancellation,
deadline) is shared here so both backends behave the same. A model's generations step through its
:class:`~edgechain.service.engine.batcher.StepBatcher`, which combines concurrent steps into one
``step_batch`` call (continuous batching).
"""

from __future__ import annotations

import codecs
import contextlib
import enum
import json
import math
import os
import struct
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NoReturn, Protocol

from edgechain.chat_message import ChatMessage
from edgechain.errors import (
    Cancelled,
    EdgechainError,
    InvalidParameter,
    InvalidText,
    Timeout,
)
from edgechain.service.engine.batcher import StepBatcher
from edgechain.service.engine.checkpoint_header import HeaderFields
from edgechain.service.engine.codes import error_from_code
from edgechain.service.engine.files import is_gguf, tokenizer_for, unchanged_checkpoint

_U64_MAX = 2**64 - 1
_I31_MAX = 2**31 - 1
#: The largest finite f32, the guest's float.
_F32_MAX = 3.4028234663852886e38
#: Guards the lazy creation of a model's batcher.
_BATCHER_GUARD = threading.Lock()
#: A claimed id that can never be produced (outside every vocabulary), standing for an id
#: outside [0, 2^32) in a claim handed to a backend.
NEVER_PRODUCED = 2**32 - 1
#: Positions a verification checks per engine call: one prefill chunk (rust_guest CHUNK); a
#: deadline or a cancellation is seen between calls.
VERIFY_SLICE = 32


@dataclass(frozen=True)
class GenerationParams:
    """Sampling and stopping parameters; serialises to the ABI's params JSON (rust_guest/ABI.md).

    The sampling fields and their defaults are the generation request's
    (contract/generation_request.py; tests/test_generation_request_fronts.py holds them to it);
    the engine is a leaf and keeps its own copy and its own guard, with its real limits (i32
    counts, f32 floats). ``max_positions`` is run.c's ``-n`` (prompt with BOS included, clamped
    to seq_len); ``max_tokens`` counts generated tokens. When both are None the limit is
    seq_len.
    """

    temperature: float = 0.8
    top_p: float = 0.9
    seed: int = 0
    max_tokens: int | None = None
    max_positions: int | None = None
    repeat_penalty: float = 1.0
    repeat_window: int = 64
    stop: Sequence[str] = ()

    def validate(self) -> GenerationParams:
        """Raise InvalidParameter naming the first bad value and its range; return self when
        all are valid."""
        _check_float("temperature", self.temperature, self.temperature >= 0.0, ">= 0")
        _check_float("top_p", self.top_p, 0 < self.top_p <= 1, "in (0, 1]", limited=False)
        _check_int("seed", self.seed)
        if not 0 <= self.seed <= _U64_MAX:
            raise InvalidParameter(f"seed must be in [0, 2^64 - 1], got {self.seed}")
        for name in ("max_tokens", "max_positions"):
            value = getattr(self, name)
            if value is not None:
                _check_count(name, value, 1, " (or unset)")
        _check_float(
            "repeat_penalty", self.repeat_penalty, self.repeat_penalty >= 1.0, ">= 1.0"
        )
        _check_count("repeat_window", self.repeat_window, 0)
        if isinstance(self.stop, str):
            raise InvalidParameter("stop must be a list of strings, not a single string")
        for s in self.stop:
            if not isinstance(s, str) or not s:
                raise InvalidParameter(f"stop strings must be non-empty strings, got {s!r}")
        return self

    def to_abi_dict(self) -> dict[str, Any]:
        """The params object of the ABI (validated first)."""
        self.validate()
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["stop"] = list(self.stop)
        for name in ("temperature", "top_p", "repeat_penalty"):
            out[name] = float(out[name])
        return out

    def to_json(self) -> str:
        """The params JSON the guest and the native module read."""
        return json.dumps(self.to_abi_dict(), ensure_ascii=False, separators=(",", ":"))


def _check_float(
    name: str, value: object, in_range: bool, bound: str, *, limited: bool = True
) -> None:
    # The guest samples in f32: a larger float would arrive there as inf.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameter(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise InvalidParameter(f"{name} must be finite, got {value}")
    if not in_range or (limited and value > _F32_MAX):
        limit = f" and <= {_F32_MAX!r}" if limited else ""
        raise InvalidParameter(f"{name} must be {bound}{limit}, got {value}")


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"{name} must be an integer, got {value!r}")


def _check_count(name: str, value: object, minimum: int, unset: str = "") -> None:
    # The guest counts in i32.
    _check_int(name, value)
    assert isinstance(value, int)
    if not minimum <= value <= _I31_MAX:
        raise InvalidParameter(
            f"{name} must be >= {minimum} and <= {_I31_MAX}{unset}, got {value}"
        )


@dataclass(frozen=True)
class ModelInfo(HeaderFields):
    """A loaded model's configuration, as the llama2.c header states it (fields:
    :class:`~edgechain.service.engine.checkpoint_header.HeaderFields`; ``from_dict`` reads the
    engines' info dict)."""


class StopReason(enum.IntEnum):
    """Why a generation stopped. Values 1-4 are the ABI's; CANCELLED is set by the host only."""

    END_OF_SEQUENCE = 1
    MAX_TOKENS = 2
    STOP_STRING = 3
    CONTEXT_FULL = 4
    CANCELLED = 5


#: The stops after which a chat's answer can take a follow-up turn.
_TURN_ENDS = (StopReason.END_OF_SEQUENCE, StopReason.MAX_TOKENS, StopReason.STOP_STRING)


@dataclass(frozen=True)
class Token:
    """One generated token.

    ``text`` is the decoded piece; it is "" while a multi-byte UTF-8 character is incomplete and
    the character appears with the token that completes it. ``data`` holds the raw bytes the
    engine produced for this token (what run.c would write).
    """

    id: int
    text: str
    data: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class Step:
    """One step of a session, all a backend reports per token: the token produced as
    ``(id, bytes)`` (None once the session has stopped), the stop reason (0 while running) and
    the counts after the step."""

    produced: tuple[int, bytes] | None
    stop_reason: int
    prompt_tokens: int
    generated_tokens: int
    #: Set in a batched step when this session's step failed (the others' steps stand).
    error: BaseException | None = None

    @classmethod
    def failed(cls, error: BaseException) -> Step:
        """The step of a session whose step raised ``error``, in a batch that went on."""
        return cls(None, 0, 0, 0, error)


#: One session's outcome of a batch step as the backends report it: (status: 0 or a negative
#: ABI error code, token id or None, the token's bytes or the error message, stop reason,
#: prompt tokens, generated tokens).
BatchOutcome = tuple[int, int | None, bytes, int, int, int]


def batch_steps(outcomes: Iterable[BatchOutcome]) -> list[Step]:
    """The steps of a batch step's outcomes (rust_guest/ABI.md, ``ec_batch_step``); a failed
    session's step is ``Step.failed(its error)``, the others' steps stand (the batcher hands
    each session its own outcome)."""
    steps: list[Step] = []
    for status, token, data, reason, prompt_tokens, generated in outcomes:
        if status != 0:
            steps.append(Step.failed(error_from_code(status, data.decode("utf-8", "replace"))))
            continue
        produced = None if token is None else (int(token), bytes(data))
        steps.append(Step(produced, int(reason), int(prompt_tokens), int(generated)))
    return steps


@dataclass(frozen=True)
class ClaimVerdict:
    """What :meth:`LoadedModel.verify_claim` established (rust_guest/ABI.md, "Verification").

    ``valid``: the claim is exactly the generation. Otherwise ``matched`` is the position of
    the first claimed token that differs and ``expected`` the token the generation produces
    there (None: it has stopped before, ``stop_reason`` says why). ``data`` holds the
    confirmed tokens' output bytes (the generation's text of a valid claim).
    """

    valid: bool
    matched: int
    expected: int | None
    stop_reason: StopReason | None
    prompt_tokens: int
    data: bytes = field(default=b"", repr=False)

    @property
    def text(self) -> str:
        """The confirmed tokens' text, as a :class:`Generation` assembles it."""
        return self.data.decode("utf-8", errors="replace")

    @classmethod
    def from_tuple(cls, verdict: tuple[Any, ...]) -> ClaimVerdict:
        """From a backend's ``(valid, matched, expected | None, stop_reason, prompt_tokens,
        bytes)``."""
        valid, matched, expected, reason, prompt_tokens, data = verdict
        return cls(
            bool(valid),
            int(matched),
            None if expected is None else int(expected),
            StopReason(reason) if reason else None,
            int(prompt_tokens),
            bytes(data),
        )


#: What a chat turn is: rendered text (llama2.c's ``[INST]``, BOS added) or messages for the
#: model's own chat template (a GGUF file's ``tokenizer.chat_template``).
ChatTurn = str | Sequence[ChatMessage]


def messages_json(messages: Sequence[ChatMessage]) -> str:
    """The ABI's messages JSON (``[{"role", "content"}]``), each text checked as a prompt is."""
    items = []
    for i, message in enumerate(messages):
        if not isinstance(message, ChatMessage):
            raise InvalidParameter(f"message {i} is a {type(message).__name__}, not a ChatMessage")
        text_to_utf8(message.role, f"message {i}'s role")
        text_to_utf8(message.content, f"message {i}'s content")
        items.append(message.to_json())
    if not items:
        raise InvalidParameter("a chat turn needs at least one message")
    return json.dumps(items, ensure_ascii=False)


#: What :meth:`LoadedModel.generate` and :meth:`LoadedModel.verify_claim` take: a prompt (text;
#: BOS is added) or messages that the model's chat template renders with the assistant's header
#: after them (generate's chat form).
PromptOrMessages = str | Sequence[ChatMessage]


def prompt_or_messages(value: PromptOrMessages) -> tuple[str, bytes, bool]:
    """A prompt's text, or the messages JSON, as the engine takes it, with its UTF-8 and
    whether it is messages."""
    if isinstance(value, str | bytes | bytearray) or not isinstance(value, Sequence):
        return value, text_to_utf8(value, "prompt"), False  # not text: its one-line error
    text = messages_json(value)
    return text, text.encode("utf-8"), True


def chat_turn(turn: ChatTurn) -> tuple[str, bytes, bool]:
    """A turn's text for the engine (rendered text, or the messages JSON), as UTF-8, and
    whether it is messages."""
    if isinstance(turn, str):
        return turn, text_to_utf8(turn, "turn"), False
    text = messages_json(turn)
    return text, text.encode("utf-8"), True


@dataclass(frozen=True)
class SessionStart:
    """What a backend starts a session from: a checked prompt (also as UTF-8), the params JSON
    (with the checked hint ids: :func:`check_hint`, :func:`params_with_hint`), the wall-clock
    budget in seconds, whether it is a chat session (turns that keep the KV cache), and whether
    the prompt is messages JSON for the model's chat template."""

    prompt: str
    prompt_bytes: bytes
    params_json: str
    budget: float | None
    chat: bool = False
    messages: bool = False


@dataclass(frozen=True)
class VerifierStart:
    """What a backend starts a verification from: the checked prompt (or messages JSON, when
    ``messages``), also as UTF-8, the params JSON and the checked claim (:func:`check_claim`)."""

    prompt: str
    prompt_bytes: bytes
    params_json: str
    claimed: tuple[int, ...]
    messages: bool = False


class VerifierDriver(Protocol):
    """What a backend provides for one verification (internal to the engine package)."""

    def run(self, steps: int, deadline: float | None) -> tuple[Any, ...] | None:
        """Verify up to ``steps`` more positions: None while unfinished, else the verdict as
        :meth:`ClaimVerdict.from_tuple` reads it."""
        ...

    def free(self) -> None: ...


class SessionDriver(Protocol):
    """What a backend provides for one generation session (internal to the engine package)."""

    def prompt_bytes(self) -> bytes: ...

    def step(self, deadline: float | None) -> Step: ...

    def append(self, turn: str, turn_bytes: bytes, messages: bool = False) -> None: ...

    def counts(self) -> tuple[int, int]: ...

    def free(self) -> None: ...


class Generation(Iterator[Token]):
    """An iterator of :class:`Token` for one prompt. Iterate to generate; ``cancel()`` to stop.

    After iteration ends, ``stop_reason`` says why; ``text`` is everything generated so far (the
    prompt excluded); ``prompt_text`` is the prompt as run.c prints it.

    A chat's answer (:meth:`LoadedModel.chat`) keeps its session when it stops (its end token,
    ``max_tokens`` or a stop string): :meth:`follow_up` then continues the dialogue.
    """

    def __init__(
        self,
        driver: SessionDriver,
        timeout: float | None = None,
        batcher: StepBatcher | None = None,
        chat: bool = False,
    ) -> None:
        self._driver: SessionDriver | None = driver
        #: Steps go through the model's batcher (combined with other generations' steps); None:
        #: the driver steps alone.
        self._batcher = batcher
        self._model_batcher = batcher  # for a follow-up's generation
        self._chat = chat
        #: A chat answer that stopped holds its session here until a follow-up takes it.
        self._held: SessionDriver | None = None
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._timeout = timeout
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pieces: list[str] = []
        self._lock = threading.Lock()
        self.stop_reason: StopReason | None = None
        self.prompt_tokens, self.generated_tokens = driver.counts()
        #: The prompt's bytes exactly as run.c prints them, and the same as text.
        self.prompt_data: bytes = driver.prompt_bytes()
        self.prompt_text: str = self.prompt_data.decode("utf-8", errors="replace")
        if batcher is not None:
            batcher.join()

    @property
    def text(self) -> str:
        """The generated text so far, prompt excluded."""
        return "".join(self._pieces)

    def __iter__(self) -> Generation:
        return self

    def __next__(self) -> Token:
        with self._lock:
            driver = self._driver
            if driver is None:
                raise StopIteration
            if self._deadline is not None and time.monotonic() >= self._deadline:
                self._timed_out()
            try:
                if self._batcher is None:
                    step: Step | None = driver.step(self._deadline)
                else:
                    step = self._batcher.step(driver, self._deadline)
            except BaseException:
                self._finish()
                raise
            if step is None:  # the deadline passed while the step waited for its batch
                self._timed_out()
            self.prompt_tokens, self.generated_tokens = step.prompt_tokens, step.generated_tokens
            if step.produced is None:
                self.stop_reason = StopReason(step.stop_reason)
                self._flush_decoder()
                if self._chat and self.stop_reason in _TURN_ENDS:
                    self._held, self._driver = driver, None
                self._finish()
                raise StopIteration
            token_id, data = step.produced
            text = self._decoder.decode(data)
            self._pieces.append(text)
            return Token(id=token_id, text=text, data=data)

    def follow_up(self, turn: ChatTurn, timeout: float | None = None) -> Generation:
        """A chat's next answer, after ``turn``: text rendered in the model's template (BOS is
        added), or, for a chat started from messages, the next :class:`ChatMessage` s, which
        the model's chat template renders with the dialogue so far (this answer as the
        assistant's message). The session keeps its KV cache, so only what is new goes through
        the model (for rendered turns, the answer's last token and the turn: run.c's chat,
        token for token). Call it once this answer has stopped; the dialogue's positions are
        bounded by ``max_positions``. A turn that does not fit raises ContextFull and leaves
        the chat as it was."""
        turn, turn_bytes, is_messages = chat_turn(turn)
        with self._lock:
            driver = self._held
            if driver is None:
                if not self._chat:
                    raise InvalidParameter("only a chat's answer takes a follow-up turn")
                if self._driver is not None:
                    raise InvalidParameter("the answer is still running: iterate it to its end")
                raise InvalidParameter("this answer's chat is over (cancelled, full or taken)")
            driver.append(turn, turn_bytes, is_messages)
            self._held = None
        budget = check_timeout(timeout if timeout is not None else self._timeout)
        return Generation(driver, timeout=budget, batcher=self._model_batcher, chat=True)

    def cancel(self) -> None:
        """Stop generating and free the session; iteration ends. Safe to call more than once
        (a chat's answer that has stopped is then over: no follow-up)."""
        with self._lock:
            if self._driver is not None:
                self.stop_reason = StopReason.CANCELLED
                self._flush_decoder()
                self._finish()
            held, self._held = self._held, None
            if held is not None:
                held.free()

    def _timed_out(self) -> NoReturn:
        self._finish()
        raise Timeout(f"generation ran past its budget of {self._timeout:g} s")

    def _flush_decoder(self) -> None:
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self._pieces.append(tail)

    def _finish(self) -> None:
        driver, self._driver = self._driver, None
        batcher, self._batcher = self._batcher, None
        try:
            if driver is not None:
                driver.free()
        finally:
            if batcher is not None:
                batcher.leave()

    def __del__(self) -> None:
        # A generation dropped half-way (or a chat left without a follow-up) must not leak
        # its guest session.
        with contextlib.suppress(Exception):
            self._finish()
            if self._held is not None:
                self._held.free()


class LoadedModel(ABC):
    """A model and its tokenizer loaded in an engine. Close it (or use ``with``) to free it."""

    info: ModelInfo
    #: The default wall-clock budget of a generation in seconds (None: unlimited).
    _timeout: float | None = None

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        """run.c's encoder: token ids of ``text`` (BOS first when ``bos``)."""
        return self._encode(text, text_to_utf8(text, "text"), bos, eos)

    @abstractmethod
    def _encode(self, text: str, data: bytes, bos: bool, eos: bool) -> list[int]:
        """The backend's encoder for a checked text (also as UTF-8)."""

    @abstractmethod
    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """The bytes the generator would print for ``ids`` (space after BOS stripped)."""

    def decode(self, ids: Sequence[int]) -> str:
        """The text the generator would print for ``ids`` (invalid UTF-8 replaced)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def position_logits(self, ids: Sequence[int]) -> list[list[float]]:
        """The logits at every position of ``ids`` fed one by one from position 0 (a fresh
        cache): one row of ``vocab_size`` floats per id, the engine's f32 values. What the
        llama.cpp comparison reads (docs/models.md, "Compared with llama.cpp");
        InvalidParameter for no ids, more than ``seq_len`` or one outside the vocabulary."""
        id_list = [int(i) for i in ids]
        vocab = self.info.vocab_size
        if not 0 < len(id_list) <= self.info.seq_len or any(not 0 <= i < vocab for i in id_list):
            raise InvalidParameter(f"logits need 1 to {self.info.seq_len} ids in [0, {vocab})")
        raw = self._position_logits(id_list)
        values = struct.unpack(f"<{len(raw) // 4}f", raw)
        return [list(values[i : i + vocab]) for i in range(0, len(values), vocab)]

    def _position_logits(self, ids: list[int]) -> bytes:
        """The backend's logits at every position of checked ids, f32 LE rows."""
        raise NotImplementedError(f"{type(self).__name__} cannot compute logits")

    def generate(
        self,
        prompt: PromptOrMessages,
        params: GenerationParams,
        timeout: float | None = None,
        *,
        hint: Sequence[int] | None = None,
    ) -> Generation:
        """Start generating after ``prompt``: text (BOS is added), or :class:`ChatMessage` s
        (generate's chat form), which the model's chat template renders with the assistant's
        header after them (ChatTemplateError when the model has none); a chat of messages
        spends a random draw at every position the rendering forces, as :meth:`chat` does, but
        ends with its answer. ``timeout`` is a wall-clock budget in seconds (default: the
        engine's). ``hint``: the token ids the generation is claimed to produce (a receipt's
        or a block's, when replaying it); the output is the same with or without them, they
        only make it faster while they are right (rust_guest/ABI.md, "Hint tokens")."""
        budget = check_timeout(timeout if timeout is not None else self._timeout)
        params_json = params_with_hint(params.to_json(), check_hint(hint))
        text, data, is_messages = prompt_or_messages(prompt)
        start = SessionStart(
            text, data, params_json, budget, chat=is_messages, messages=is_messages
        )
        driver = self._start(start)
        return Generation(driver, timeout=budget, batcher=self._step_batcher())

    def chat(
        self, turn: ChatTurn, params: GenerationParams, timeout: float | None = None
    ) -> Generation:
        """Start a chat with its first ``turn``: text already rendered in the model's template
        (run.c's ``chat`` mode; BOS is added), or :class:`ChatMessage` s that the model's own
        chat template renders with the assistant's header after them (a GGUF file's
        ``tokenizer.chat_template``; ChatTemplateError when it has none or the template
        fails). The returned answer streams like :meth:`generate`'s and, once stopped,
        :meth:`Generation.follow_up` takes the next turn on the same KV cache. As in run.c, a
        random draw is spent at every position the turns force, so sampled answers are
        run.c's; ``max_positions`` bounds the whole dialogue."""
        budget = check_timeout(timeout if timeout is not None else self._timeout)
        text, data, is_messages = chat_turn(turn)
        start = SessionStart(text, data, params.to_json(), budget, chat=True, messages=is_messages)
        driver = self._start(start)
        return Generation(driver, timeout=budget, batcher=self._step_batcher(), chat=True)

    def render_chat(
        self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True
    ) -> str:
        """``messages`` as the model's chat template renders them (what :meth:`chat` feeds,
        before tokenization); ChatTemplateError when the model has none or it fails."""
        return self._render_chat(messages_json(messages), add_generation_prompt)

    def _render_chat(self, messages: str, add_generation_prompt: bool) -> str:
        """The backend's rendering of checked messages JSON."""
        raise NotImplementedError(f"{type(self).__name__} has no chat templates")

    def verify_claim(
        self,
        prompt: PromptOrMessages,
        params: GenerationParams,
        claimed_ids: Sequence[int],
        timeout: float | None = None,
        *,
        cancel: threading.Event | None = None,
    ) -> ClaimVerdict:
        """Whether ``claimed_ids`` are exactly the tokens ``generate(prompt, params)`` produces
        (every one, and it stops after the last; ``prompt`` as :meth:`generate` takes it: text or
        messages), checked at prefill speed: the prompt and
        the claim go through the batched forward pass, and each position's token is decided
        by the sampler's rule on those logits with the same random draw (docs/determinism.md,
        "Verifying a claim"). The verdict is always a full replay's. ``timeout``: wall-clock
        budget in seconds (Timeout past it); a set ``cancel`` stops it with Cancelled."""
        budget = check_timeout(timeout if timeout is not None else self._timeout)
        deadline = None if budget is None else time.monotonic() + budget
        params_json = params.to_json()
        text, data, is_messages = prompt_or_messages(prompt)
        driver = self._start_verifier(
            VerifierStart(text, data, params_json, check_claim(claimed_ids), is_messages)
        )
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("the verification was cancelled: its answer is not needed")
                if deadline is not None and time.monotonic() >= deadline:
                    raise Timeout(f"verification ran past its budget of {budget:g} s")
                verdict = driver.run(VERIFY_SLICE, deadline)
                if verdict is not None:
                    return ClaimVerdict.from_tuple(verdict)
        finally:
            driver.free()

    def _start_verifier(self, start: VerifierStart) -> VerifierDriver:
        """The backend's verification of a checked claim (:func:`check_claim`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot verify claims")

    def step_batch(self, drivers: Sequence[Any], deadline: float | None) -> list[Step]:
        """Advance each of this model's sessions ``drivers`` by one step; one Step each, in
        order. A session whose step fails gets ``Step.failed(error)`` and the others go on; an
        exception means the whole call failed. ``deadline`` (monotonic) is a backstop only
        (see batcher.py). This default steps them one by one; a backend that batches (one
        weight pass for all) overrides it, with the same results bit for bit."""
        steps = []
        for driver in drivers:
            try:
                steps.append(driver.step(deadline))
            except EdgechainError as err:
                steps.append(Step.failed(err))
        return steps

    def _step_batcher(self) -> StepBatcher:
        """This model's batcher, made on first use: every generation of the model steps
        through it (service/engine/batcher.py)."""
        with _BATCHER_GUARD:
            batcher = self.__dict__.get("_batcher")
            if batcher is None:
                batcher = self.__dict__["_batcher"] = StepBatcher(self.step_batch)
            return batcher

    @abstractmethod
    def _start(self, start: SessionStart) -> SessionDriver:
        """The backend's session for ``start``."""

    @abstractmethod
    def close(self) -> None:
        """Free the model. Further calls raise."""

    def __enter__(self) -> LoadedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Engine(ABC):
    """An inference backend: loads llama2.c checkpoints with their tokenizer.bin."""

    kind: str

    def __init__(self, timeout: float | None = None) -> None:
        #: Default budget per generation in seconds (None: unlimited), checked here for every
        #: backend.
        self.timeout = check_timeout(timeout)

    @abstractmethod
    def load(self, checkpoint: bytes, tokenizer: bytes) -> LoadedModel:
        """Parse and load a checkpoint and its tokenizer (raises InvalidCheckpoint, ...)."""

    def load_files(
        self, checkpoint: str | os.PathLike[str], tokenizer: str | os.PathLike[str] | None
    ) -> LoadedModel:
        """Load a checkpoint file and a tokenizer.bin file, or a GGUF file (``tokenizer``
        None: the file carries it); same errors as :meth:`load`, plus
        InvalidCheckpoint/InvalidTokenizer for a file that cannot be read.

        The backends read the weights straight into the engine, so the process holds one copy
        of them (this default reads both files into bytes first). The checkpoint must not
        change while it is read: a changed size, inode or mtime/ctime raises InvalidCheckpoint
        (callers that verified a file's hash rely on this: see ``ModelService``).
        """
        with unchanged_checkpoint(checkpoint) as f:
            gguf = is_gguf(f)
            data = f.readall()
        return self.load(data, tokenizer_for(gguf, tokenizer))

    def close(self) -> None:  # noqa: B027 - optional hook, most engines hold nothing
        """Release engine-wide resources (models stay usable until closed)."""


def count_setting(value: int | None, env: str, what: str, maximum: int) -> int | None:
    """A count setting (threads, instances): ``value`` if given, else the environment variable
    ``env``, else None (the caller's default). InvalidParameter, naming ``what`` or ``env``,
    for anything but an integer in 1..``maximum``."""
    if value is None:
        text = os.environ.get(env, "").strip()
        if not text:
            return None
        what = env
        try:
            value = int(text)
        except ValueError:
            raise InvalidParameter(f"{what} must be an integer, got {text!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"{what} must be an integer, got {value!r}")
    if not 1 <= value <= maximum:
        raise InvalidParameter(f"{what} must be between 1 and {maximum}, got {value}")
    return value


def check_timeout(timeout: float | None) -> float | None:
    """``timeout`` if it is None or a positive finite number of seconds, else InvalidParameter."""
    if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
        raise InvalidParameter(f"timeout must be a positive number of seconds, got {timeout}")
    return timeout


def check_hint(hint: Sequence[int] | None) -> tuple[int, ...]:
    """The hint ids as a tuple: InvalidParameter unless a sequence of integers; an id outside
    [0, 2^32) can never be sampled, so the hints end before it."""
    if hint is None:
        return ()
    if isinstance(hint, str | bytes) or not isinstance(hint, Sequence):
        raise InvalidParameter(f"hint must be a list of token ids, got {type(hint).__name__}")
    ids: list[int] = []
    for value in hint:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidParameter(f"hint token ids must be integers, got {value!r}")
        if not 0 <= value < 2**32:
            break
        ids.append(value)
    return tuple(ids)


def check_claim(claimed: Sequence[int]) -> tuple[int, ...]:
    """Claimed token ids as a backend takes them: InvalidParameter unless a sequence of
    integers; an id outside [0, 2^32) is never produced, so it becomes :data:`NEVER_PRODUCED`
    (the verdict then differs there at the latest)."""
    if isinstance(claimed, str | bytes) or not isinstance(claimed, Sequence):
        raise InvalidParameter(
            f"claimed ids must be a list of token ids, got {type(claimed).__name__}"
        )
    ids: list[int] = []
    for value in claimed:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidParameter(f"claimed token ids must be integers, got {value!r}")
        ids.append(value if 0 <= value < NEVER_PRODUCED else NEVER_PRODUCED)
    return tuple(ids)


def params_with_hint(params_json: str, hint: Sequence[int]) -> str:
    """The params JSON with the ABI's ``hint`` array added (unchanged when there is none)."""
    if not hint:
        return params_json
    params = json.loads(params_json)
    params["hint"] = list(hint)
    return json.dumps(params, ensure_ascii=False, separators=(",", ":"))


def check_text(value: object, what: str) -> str:
    """Return ``value`` if it is a str, else raise InvalidParameter (a caller passed bytes?)."""
    if not isinstance(value, str):
        raise InvalidParameter(f"{what} must be text (str), got {type(value).__name__}")
    return value


def text_to_utf8(text: str, what: str) -> bytes:
    """UTF-8 bytes of ``text``; InvalidText if it holds lone surrogates (undecodable input)."""
    check_text(text, what)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidText(f"{what} is not valid UTF-8 text: {err.reason}") from None
