"""The wasm backend: the candle guest (edgechain_guest.wasm) run by wasmtime.

One process-wide wasmtime engine with epoch interruption and a timer thread that ticks its epoch;
the compiled guest is cached (see module_cache). Every loaded model gets its own Store and guest
instance, so a trap discards only that model: the engine keeps serving the others. A per-model
lock serialises calls into its instance (a Store is not thread safe). With ``instances`` above 1
a model is loaded into that many instances, whose shares of the concurrent generations step in
parallel (wasm_instances.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import math
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import wasmtime

from edgechain.errors import (
    CheckpointTooLarge,
    EdgechainError,
    EngineInternalError,
    EngineUnavailable,
    GuestTrap,
    InvalidCheckpoint,
    InvalidParameter,
    Timeout,
)
from edgechain.service.engine.base import (
    Engine,
    LoadedModel,
    ModelInfo,
    SessionStart,
    Step,
    VerifierStart,
    batch_steps,
)
from edgechain.service.engine.codes import error_from_code
from edgechain.service.engine.files import (
    GGUF_MAGIC,
    is_gguf,
    read_exactly,
    tokenizer_for,
    unchanged_checkpoint,
)
from edgechain.service.engine.gguf_header import read_gguf_header
from edgechain.service.engine.model_files import parse_checkpoint_header
from edgechain.service.engine.module_cache import compiled_module, default_cache_dir
from edgechain.service.engine.wasm_instances import InstancesModel, resolve_instances

GUEST_ENV = "EDGECHAIN_GUEST_WASM"
PACKAGED_GUEST = Path(__file__).with_name("edgechain_guest.wasm")
#: The guest's linear memory may not grow past this unless the caller says otherwise.
DEFAULT_MEMORY_LIMIT = 3 * 2**30
#: A wasm32 linear memory addresses at most 4 GiB, whatever the limit.
WASM32_MEMORY = 4 * 2**30
#: Epoch tick of the deadline timer; a timeout is detected within about one tick.
EPOCH_TICK_S = 0.01
_NO_DEADLINE_TICKS = 1 << 40
#: Enough of a checkpoint's start for either header: 28 bytes (f32, seven i32) or 256 (int8,
#: runq.c's "ak42" version 2). The guest takes any bytes past the header as the first weights.
_HEADER_BYTES = 256

_runtime_lock = threading.Lock()
_runtimes: dict[bool, _Runtime] = {}


class _Runtime:
    """The process-wide wasmtime engine and the thread that advances its epoch.

    Without epoch interruption (``epochs=False``, for the benchmark only: it measures what the
    deadline checks cost) there is no ticker and no way to stop a running guest."""

    def __init__(self, epochs: bool) -> None:
        config = wasmtime.Config()
        config.epoch_interruption = epochs
        self.epochs = epochs
        self.config_tag = f"epoch-interruption={int(epochs)}"
        self.engine = wasmtime.Engine(config)
        if epochs:
            ticker = threading.Thread(target=self._tick, name="edgechain-epoch", daemon=True)
            ticker.start()

    def _tick(self) -> None:
        while True:
            time.sleep(EPOCH_TICK_S)
            self.engine.increment_epoch()


def _shared_runtime(epochs: bool = True) -> _Runtime:
    with _runtime_lock:
        if epochs not in _runtimes:
            _runtimes[epochs] = _Runtime(epochs)
        return _runtimes[epochs]


def locate_guest(path: str | os.PathLike[str] | None = None) -> Path:
    """The guest .wasm: ``path``, else $EDGECHAIN_GUEST_WASM, else the packaged one."""
    if path is not None:
        chosen, origin = Path(path), "the given path"
    elif os.environ.get(GUEST_ENV):
        chosen, origin = Path(os.environ[GUEST_ENV]), f"${GUEST_ENV}"
    else:
        chosen, origin = PACKAGED_GUEST, "the package"
    if not chosen.is_file():
        raise EngineUnavailable(
            f"wasm guest not found at {chosen} (from {origin}): "
            "build it with scripts/build_guest.sh"
        )
    return chosen


#: How much of a GGUF file one read moves into the guest.
_READ_CHUNK = 16 << 20


def _i32(value: int) -> int:
    """A u32 offset as the signed i32 wasmtime expects."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _u32(value: int) -> int:
    return value & 0xFFFFFFFF


class WasmEngine(Engine):
    """Loads models into fresh instances of the compiled guest.

    ``cache_dir``: where compiled modules are kept across processes (None: the per-user default;
    pass ``False`` to disable). ``memory_limit``: bytes of guest memory per model.
    ``timeout``: default wall-clock budget in seconds per generation (None: unlimited).
    ``epoch_interruption``: False only to measure its cost (``edgechain bench``): such an
    engine cannot enforce a timeout, so it refuses one (InvalidParameter).
    ``instances``: guest instances per model (default ``$EDGECHAIN_WASM_INSTANCES``, else 1);
    each holds a copy of the weights, and concurrent generations step on all of them at once
    (wasm_instances.py). The output is the same bits for any count.
    """

    kind = "wasm"

    def __init__(
        self,
        guest_path: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None | bool = None,
        memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
        timeout: float | None = None,
        epoch_interruption: bool = True,
        instances: int | None = None,
    ) -> None:
        super().__init__(timeout)
        self.instances = resolve_instances(instances)
        if memory_limit is not None and memory_limit <= 0:
            raise InvalidParameter(f"memory_limit must be positive, got {memory_limit}")
        if not epoch_interruption and timeout is not None:
            raise InvalidParameter("a timeout needs epoch interruption")
        self.guest_path = locate_guest(guest_path)
        self.memory_limit = memory_limit
        self._runtime = _shared_runtime(epoch_interruption)
        if cache_dir is False:
            directory = None
        elif cache_dir is None or cache_dir is True:
            directory = default_cache_dir()
        else:
            directory = Path(cache_dir)
        started = time.perf_counter()
        try:
            compiled = compiled_module(
                self._runtime.engine,
                self.guest_path.read_bytes(),
                self._runtime.config_tag,
                directory,
            )
        except wasmtime.WasmtimeError as err:
            raise EngineUnavailable(
                f"wasm guest {self.guest_path} does not compile: {_first_line(err)}; "
                "rebuild it with scripts/build_guest.sh"
            ) from None
        self.module = compiled.module
        #: "memory", "disk" or "compiled": where the compiled guest came from.
        self.module_source = compiled.source
        self.module_seconds = time.perf_counter() - started

    def _instantiate(self) -> _Guest:
        """A fresh guest instance in its own store."""
        store = wasmtime.Store(self._runtime.engine)
        if self.memory_limit is not None:
            store.set_limits(memory_size=self.memory_limit)
        if self._runtime.epochs:
            store.set_epoch_deadline(_NO_DEADLINE_TICKS)
        try:
            instance = wasmtime.Instance(store, self.module, [])
        except (wasmtime.Trap, wasmtime.WasmtimeError) as err:
            raise GuestTrap(f"guest failed to start: {_first_line(err)}") from None
        return _Guest(store, instance, self._runtime.epochs, self.memory_limit)

    def load(self, checkpoint: bytes, tokenizer: bytes) -> WasmModel | InstancesModel:
        """Instantiate the guest and load the checkpoint and tokenizer into it (into each of
        ``instances`` instances)."""
        return self._loaded(lambda: self._load_one(checkpoint, tokenizer))

    def _load_one(self, checkpoint: bytes, tokenizer: bytes) -> WasmModel:
        guest = self._instantiate()
        handle = guest.load(checkpoint, tokenizer)
        return WasmModel(guest, handle, self.timeout)

    def _loaded(self, load_one: Callable[[], WasmModel]) -> WasmModel | InstancesModel:
        """One model from ``load_one``, or ``instances`` of them as one InstancesModel (all
        closed if any fails to load)."""
        if self.instances == 1:
            return load_one()
        models: list[WasmModel] = []
        try:
            for _ in range(self.instances):
                models.append(load_one())
        except BaseException:
            for model in models:
                model.close()
            raise
        return InstancesModel(models, self.timeout)

    def load_files(
        self, checkpoint: str | os.PathLike[str], tokenizer: str | os.PathLike[str] | None
    ) -> WasmModel | InstancesModel:
        """Instantiate the guest and read the checkpoint file straight into its weight buffers
        (one copy of the weights in the process per instance); a GGUF file is read straight
        into one guest block and parsed whole there (its tokenizer inside; the host holds no
        copy). See :meth:`Engine.load_files`."""
        return self._loaded(lambda: self._load_files_one(checkpoint, tokenizer))

    def _load_files_one(
        self, checkpoint: str | os.PathLike[str], tokenizer: str | os.PathLike[str] | None
    ) -> WasmModel:
        model: WasmModel | None = None
        try:
            with unchanged_checkpoint(checkpoint) as f:
                gguf = is_gguf(f)
                tokenizer_bytes = tokenizer_for(gguf, tokenizer)
                if gguf:
                    check_gguf_fits(f, os.fstat(f.fileno()).st_size, self.memory_limit)
                guest = self._instantiate()
                size = os.fstat(f.fileno()).st_size
                if guest.streams and not gguf:
                    handle = guest.load_file(f, size, tokenizer_bytes)
                elif gguf:
                    handle = guest.load_whole_file(f, size)
                else:
                    handle = guest.load(f.readall(), tokenizer_bytes)
                model = WasmModel(guest, handle, self.timeout)
        except InvalidCheckpoint:
            if model is not None:
                model.close()
            raise
        return model


def check_fits(header: bytes, memory_limit: int | None) -> None:
    """CheckpointTooLarge when the weights and one session's KV cache that ``header`` declares
    exceed the guest's memory limit (at most wasm32's 4 GiB): said before any weight is read,
    instead of a trap once the limit is reached. A header that does not parse is left to the
    guest, which reports it."""
    try:
        h = parse_checkpoint_header(header, None)
    except InvalidCheckpoint:
        return
    need = h.expected_bytes + 2 * h.n_layers * h.seq_len * h.kv_dim * 4
    kind = "int8" if h.group_size is not None else "f32"
    advice = (
        "quantize it with `edgechain quantize` (int8 needs about a quarter)"
        if h.group_size is None
        else "use the native engine"
    )
    _check_need(need, kind, advice, memory_limit)


def check_gguf_fits(f: io.FileIO, size: int, memory_limit: int | None) -> None:
    """:func:`check_fits` for a GGUF file (``f``, ``size`` bytes): the guest holds the file
    and the tensors built from it, and one session's KV cache. ``f`` is left at its start."""
    buffered = io.BufferedReader(f)
    try:
        info = read_gguf_header(buffered, size, "checkpoint")
    except InvalidCheckpoint:
        return  # the guest reports it, naming what
    finally:
        buffered.detach()
        f.seek(0)
    h = info.header
    need = info.engine_bytes + 2 * h.n_layers * h.seq_len * info.kv_dim * 4
    _check_need(need, "GGUF", "use the native engine", memory_limit)


def _check_need(need: int, kind: str, advice: str, memory_limit: int | None) -> None:
    if memory_limit is not None and memory_limit < WASM32_MEMORY:
        limit, which = memory_limit, "the engine's memory limit; wasm32 addresses at most 4 GiB"
    else:
        limit, which = WASM32_MEMORY, "the wasm32 address space"
    if need <= limit:
        return
    raise CheckpointTooLarge(
        f"checkpoint too large for the wasm guest: its {kind} weights and KV cache need "
        f"{need / 2**30:.2f} GiB, over {limit / 2**30:.1f} GiB ({which}); {advice}"
    )


def _first_line(err: BaseException) -> str:
    """The informative line of a wasmtime error: the "wasm trap: ..." cause, not the backtrace."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    for line in lines:
        if line.startswith("wasm trap:"):
            return line
    if "Caused by:" in lines:
        return lines[-1]
    return lines[0]


class _Guest:
    """One guest instance: typed calls, memory transfer, error and trap translation.

    Callers hold the owning model's lock. After a trap the instance is poisoned: its memory may
    be inconsistent, so every later call fails instead of running on it.
    """

    def __init__(
        self,
        store: wasmtime.Store,
        instance: wasmtime.Instance,
        epochs: bool,
        memory_limit: int | None = None,
    ) -> None:
        self.store = store
        self.epochs = epochs
        self.memory_limit = memory_limit
        exports = instance.exports(store)
        try:
            self.memory: wasmtime.Memory = exports["memory"]
            self._funcs: dict[str, Any] = {
                name: exports[name]
                for name in (
                    "ec_alloc",
                    "ec_free",
                    "ec_last_error_ptr",
                    "ec_last_error_len",
                    "ec_output_ptr",
                    "ec_output_len",
                    "ec_model_load",
                    "ec_model_info",
                    "ec_model_free",
                    "ec_encode",
                    "ec_decode",
                    "ec_session_start",
                    "ec_session_prompt",
                    "ec_session_step",
                    "ec_session_counts",
                    "ec_session_free",
                )
            }
        except KeyError as err:
            raise EngineUnavailable(
                f"wasm guest lacks export {err.args[0]}: rebuild it with scripts/build_guest.sh"
            ) from None

        def bind_optional(*names: str) -> bool:
            """Bind an optional group of exports when the guest has all of them."""
            present = all(name in exports for name in names)
            if present:
                self._funcs.update({name: exports[name] for name in names})
            return present

        # The streaming load (ABI.md "Loading a checkpoint from a file"); optional so an older
        # or test guest without it still loads from bytes.
        self.streams = bind_optional(
            "ec_model_begin",
            "ec_model_region_ptr",
            "ec_model_advance",
            "ec_model_finish",
            "ec_model_abort",
        )
        # The multi-session step (ABI.md); without it a batch steps its sessions one by one.
        self.batches = bind_optional("ec_batch_step")
        # Claim verification (ABI.md, "Verification"); optional for an older or test guest.
        self.verifies = bind_optional(
            "ec_verify_start", "ec_verify_start_messages", "ec_verify_run", "ec_verify_free"
        )
        # Every position's logits (ABI.md, ec_logits); optional for an older or test guest.
        self.logits = bind_optional("ec_logits")
        # Chat sessions that take further turns (ABI.md, "Chat"); optional likewise.
        self.chats = bind_optional("ec_session_start_chat", "ec_session_append")
        # Chats of messages in the model's chat template (ABI.md, "Chat templates").
        self.templates = bind_optional(
            "ec_session_start_messages", "ec_session_append_messages", "ec_chat_render"
        )
        self.poisoned: str | None = None
        self.timeout_budget: float | None = None

    # --- raw calls ---------------------------------------------------------------------------

    def call(self, name: str, *args: int, deadline: float | None = None) -> int:
        """Call an export; traps become GuestTrap or Timeout and poison the instance."""
        if self.poisoned is not None:
            raise GuestTrap(
                f"model unusable after an earlier failure ({self.poisoned}); load it again"
            )
        if not self.epochs:
            if deadline is not None:
                raise InvalidParameter("a timeout needs epoch interruption")
        elif deadline is None:
            self.store.set_epoch_deadline(_NO_DEADLINE_TICKS)
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout(f"generation ran past its budget of {self.timeout_budget:g} s")
            self.store.set_epoch_deadline(max(1, math.ceil(remaining / EPOCH_TICK_S)))
        try:
            return self._funcs[name](self.store, *args)
        except wasmtime.Trap as trap:
            if trap.trap_code == wasmtime.TrapCode.INTERRUPT:
                self.poisoned = "interrupted by its deadline"
                raise Timeout(
                    f"generation ran past its budget of {self.timeout_budget:g} s"
                ) from None
            self.poisoned = f"guest trap: {_first_line(trap)}"
            raise GuestTrap(f"guest trapped in {name}: {_first_line(trap)}") from None
        except wasmtime.WasmtimeError as err:
            self.poisoned = f"wasmtime error: {_first_line(err)}"
            raise GuestTrap(f"guest failed in {name}: {_first_line(err)}") from None

    def checked(self, name: str, *args: int, deadline: float | None = None) -> int:
        """Call an export whose negative result is an ABI error code; raise the mapped error."""
        result = self.call(name, *args, deadline=deadline)
        if result < 0:
            raise self.last_error(result)
        return result

    def last_error(self, code: int) -> EdgechainError:
        ptr = _u32(self.call("ec_last_error_ptr"))
        length = _u32(self.call("ec_last_error_len"))
        message = self.read(ptr, length).decode("utf-8", errors="replace")
        return error_from_code(code, message)

    # --- memory ------------------------------------------------------------------------------

    def read(self, ptr: int, length: int) -> bytes:
        if length == 0:
            return b""
        return bytes(self.memory.read(self.store, ptr, ptr + length))

    def output(self) -> bytes:
        ptr = _u32(self.call("ec_output_ptr"))
        length = _u32(self.call("ec_output_len"))
        return self.read(ptr, length)

    def put(self, data: bytes) -> tuple[int, int]:
        """Copy ``data`` into a fresh guest block; returns (ptr, size) for ``free``."""
        ptr, block = self.put_empty(len(data))
        self.write(ptr, data)
        return block

    def put_empty(self, length: int) -> tuple[int, tuple[int, int]]:
        """A fresh guest block of ``length`` bytes for the host to fill: its pointer, and
        (ptr, size) for ``free``."""
        size = max(1, length)
        ptr = _u32(self.call("ec_alloc", _i32(size)))
        if ptr == 0:
            self.poisoned = "out of guest memory"
            raise GuestTrap(f"guest could not allocate {size} bytes (memory limit reached?)")
        if ptr + length > self.memory.data_len(self.store):
            raise EngineInternalError("guest returned a block outside its memory")
        return ptr, (ptr, size)

    def write(self, ptr: int, data: bytes) -> None:
        """Copy ``data`` into guest memory at ``ptr`` (a block the guest gave)."""
        if data:
            if ptr + len(data) > self.memory.data_len(self.store):
                raise EngineInternalError("guest returned a block outside its memory")
            dst = self.memory.get_buffer_ptr(self.store, len(data), ptr)
            ctypes.memmove(dst, data, len(data))

    def free(self, block: tuple[int, int]) -> None:
        if self.poisoned is None:
            self.call("ec_free", _i32(block[0]), _i32(block[1]))

    @contextlib.contextmanager
    def placed(self, *buffers: bytes) -> Iterator[list[int]]:
        """Copy ``buffers`` into guest blocks for the duration of a call; yields their
        pointers and frees every block afterwards, whatever happens."""
        with contextlib.ExitStack() as blocks:
            pointers = []
            for data in buffers:
                block = self.put(data)
                blocks.callback(self.free, block)
                pointers.append(_i32(block[0]))
            yield pointers

    def checked_with(self, name: str, *args: int | bytes) -> int:
        """:meth:`checked` with each ``bytes`` argument copied into a guest block for the call
        and passed as the ABI's pointer and byte length."""
        with self.placed(*(a for a in args if isinstance(a, bytes))) as pointers:
            blocks = iter(pointers)
            flat: list[int] = []
            for arg in args:
                flat += [next(blocks), _i32(len(arg))] if isinstance(arg, bytes) else [arg]
            return self.checked(name, *flat)

    # --- the ABI -----------------------------------------------------------------------------

    def load(self, checkpoint: bytes, tokenizer: bytes) -> int:
        # A GGUF file goes in whole (ec_model_load; the guest parses its header, then its
        # tensors): the streaming ABI reads llama2.c's fixed layout.
        if self.streams and checkpoint[: len(GGUF_MAGIC)] != GGUF_MAGIC:
            # Copied straight into the tensors' buffers: no second copy of the file in the guest.
            # (BytesIO shares a bytes object's buffer instead of copying it.)
            return self.load_file(io.BytesIO(checkpoint), len(checkpoint), tokenizer)
        return self.checked_with("ec_model_load", checkpoint, tokenizer)

    def load_whole_file(self, f: io.RawIOBase, size: int) -> int:
        """Read the GGUF file ``f`` (``size`` bytes, positioned at its start) straight into one
        guest block and load it from there (``ec_model_load``): without a copy of the file in
        the host, a 1.1B Q4_K file's load peaks 0.6 GB lower than through bytes."""
        ptr, block = self.put_empty(size)
        try:
            done = 0
            while done < size:
                n = min(_READ_CHUNK, size - done)
                # No guest call while reading: the memory cannot move under the view.
                view = memoryview(self.memory.get_buffer_ptr(self.store, n, ptr + done)).cast("B")
                try:
                    written = f.readinto(view)
                except OSError as err:
                    raise InvalidCheckpoint(
                        f"cannot read the checkpoint: {err.strerror or err}"
                    ) from None
                finally:
                    view.release()
                if not written:
                    raise InvalidCheckpoint(
                        f"invalid checkpoint: the file ended after {done} of its {size} bytes "
                        "(did it change while loading?)"
                    )
                done += written
            return self.checked_with("ec_model_load", _i32(ptr), _i32(size), b"")
        finally:
            self.free(block)

    def _load_call(self, name: str, *args: int) -> int:
        """A streaming-load call; its only internal error is a failed weight allocation, the
        same condition (and error) as ``put`` running out of guest memory."""
        try:
            return self.checked(name, *args)
        except EngineInternalError as err:
            self.poisoned = "out of guest memory"
            raise GuestTrap(
                f"guest could not hold the checkpoint: {err} (memory limit reached?)"
            ) from None

    def load_file(self, f: io.RawIOBase | io.BytesIO, size: int, tokenizer: bytes) -> int:
        """Stream the checkpoint ``f`` (``size`` bytes, positioned at its start) straight into
        the guest's weight buffers: the host never holds the weights."""
        header = read_exactly(f, _HEADER_BYTES)
        check_fits(header, self.memory_limit)
        with self.placed(header) as (ptr,):
            length = self._load_call("ec_model_begin", ptr, _i32(len(header)), size)
        try:
            while length > 0:
                ptr = _u32(self.call("ec_model_region_ptr"))
                if ptr == 0 or ptr + length > self.memory.data_len(self.store):
                    raise EngineInternalError("guest returned a region outside its memory")
                # Fetched again for every region: the memory may have moved when it grew.
                region = memoryview(self.memory.get_buffer_ptr(self.store, length, ptr)).cast("B")
                try:
                    written = f.readinto(region)
                except OSError as err:
                    raise InvalidCheckpoint(
                        f"cannot read the checkpoint: {err.strerror or err}"
                    ) from None
                finally:
                    region.release()
                if not written:
                    break  # the file shrank: ec_model_finish reports it as truncated
                length = self._load_call("ec_model_advance", written)
            if length == 0 and f.read(1):
                # ec_model_begin checked that the header implies `size` bytes. Same message as
                # the native reader's.
                raise InvalidCheckpoint(
                    f"invalid checkpoint: file is longer than the {size} bytes its header "
                    "implies (did it change while loading?)"
                )
            return self.checked_with("ec_model_finish", tokenizer)
        finally:
            if self.poisoned is None:
                self.call("ec_model_abort")  # frees the buffers of a load that did not finish


class WasmModel(LoadedModel):
    """A model loaded in its own guest instance."""

    def __init__(self, guest: _Guest, handle: int, timeout: float | None) -> None:
        self._guest: _Guest | None = guest
        self._handle = handle
        self._timeout = timeout
        self._lock = threading.RLock()
        #: The guest block ec_batch_step writes its records into (allocated on first use).
        self._batch_buffer: tuple[int, int] | None = None
        #: The guest block holding a batch step's session handles, kept from step to step (a
        #: block per step cost two more guest calls per token: ec_alloc and ec_free).
        self._batch_ids: tuple[int, int] | None = None
        #: Open sessions (InstancesModel places a new one on the instance with the fewest).
        self.sessions = 0
        with self._lock:
            guest.checked("ec_model_info", handle)
            raw = guest.output()
        try:
            self.info = ModelInfo.from_dict(json.loads(raw))
        except (ValueError, TypeError) as err:
            raise EngineInternalError(f"guest returned unreadable model info: {err}") from None

    def _live(self) -> _Guest:
        if self._guest is None:
            raise EngineInternalError("model is closed")
        return self._guest

    def _encode(self, text: str, data: bytes, bos: bool, eos: bool) -> list[int]:
        with self._lock:
            guest = self._live()
            with guest.placed(data) as (ptr,):
                n = guest.checked(
                    "ec_encode", self._handle, ptr, _i32(len(data)), int(bos), int(eos)
                )
                raw = guest.output()
        return [int.from_bytes(raw[i * 4 : i * 4 + 4], "little") for i in range(n)]

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        try:
            data = b"".join(int(i).to_bytes(4, "little") for i in ids)
        except OverflowError:
            raise InvalidParameter("token ids must be in [0, 2^32)") from None
        with self._lock:
            guest = self._live()
            with guest.placed(data) as (ptr,):
                guest.checked("ec_decode", self._handle, ptr, _i32(len(ids)))
                return guest.output()

    def _position_logits(self, ids: list[int]) -> bytes:
        data = b"".join(i.to_bytes(4, "little") for i in ids)
        with self._lock:
            guest = self._live()
            if not guest.logits:
                raise EngineUnavailable(
                    "wasm guest lacks export ec_logits: rebuild it with scripts/build_guest.sh"
                )
            with guest.placed(data) as (ptr,):
                guest.checked("ec_logits", self._handle, ptr, _i32(len(ids)))
                return guest.output()

    def _render_chat(self, messages: str, add_generation_prompt: bool) -> str:
        with self._lock:
            guest = self._live()
            if not guest.templates:
                raise EngineUnavailable("this wasm guest has no chat templates: rebuild it")
            with guest.placed(messages.encode("utf-8")) as (ptr,):
                guest.checked(
                    "ec_chat_render",
                    self._handle,
                    ptr,
                    _i32(len(messages.encode("utf-8"))),
                    int(add_generation_prompt),
                )
                return guest.output().decode("utf-8")

    def _start(self, start: SessionStart) -> _WasmSession:
        params_bytes = start.params_json.encode("utf-8")
        with self._lock:
            guest = self._live()
            if start.chat and not guest.chats:
                raise EngineUnavailable("this wasm guest has no chat sessions: rebuild it")
            if start.messages and not guest.templates:
                raise EngineUnavailable("this wasm guest has no chat templates: rebuild it")
            if start.messages:
                export = "ec_session_start_messages"
            else:
                export = "ec_session_start_chat" if start.chat else "ec_session_start"
            session = guest.checked_with(
                export,
                self._handle,
                start.prompt_bytes,
                params_bytes,
            )
            return _WasmSession(self, session, start.budget)

    def _start_verifier(self, start: VerifierStart) -> _WasmVerifier:
        params_bytes = start.params_json.encode("utf-8")
        claimed = start.claimed
        ids = struct.pack(f"<{len(claimed)}I", *claimed)
        with self._lock:
            guest = self._live()
            if not guest.verifies:
                raise EngineUnavailable(
                    "this wasm guest cannot verify claims (no ec_verify_start): rebuild it "
                    "with scripts/build_guest.sh"
                )
            # The ids go with their count, not their byte length.
            with guest.placed(ids) as (ids_ptr,):
                handle = guest.checked_with(
                    "ec_verify_start_messages" if start.messages else "ec_verify_start",
                    self._handle,
                    start.prompt_bytes,
                    params_bytes,
                    ids_ptr,
                    _i32(len(claimed)),
                )
            return _WasmVerifier(self, handle)

    def step_batch(self, drivers: Sequence[_WasmSession], deadline: float | None) -> list[Step]:
        """One step of every session (drivers from :meth:`generate` on this model) in one guest
        call, one weight pass for those plainly decoding (``ec_batch_step``); each step is what
        ``driver.step`` would give. A session's own failure is its ``Step.failed(error)``, the
        others' steps stand; a timeout or trap discards the model's instance, as for one
        session."""
        if not drivers:
            return []
        with self._lock:
            guest = self._live()
            if not guest.batches:
                return [d.step(deadline) for d in drivers]
            handles = [d._live_handle(self) for d in drivers]
            if len(set(handles)) != len(handles):
                raise InvalidParameter("a session appears twice in one batch step")
            guest.timeout_budget = max((d._budget or 0.0 for d in drivers), default=0.0)
            ids = struct.pack(f"<{len(handles)}i", *handles)
            if self._batch_buffer is None:
                self._batch_buffer = guest.put(bytes(_BATCH_BUFFER_BYTES))
            ptr, cap = self._batch_buffer
            if self._batch_ids is None or self._batch_ids[1] < len(ids):
                if self._batch_ids is not None:
                    guest.free(self._batch_ids)
                    self._batch_ids = None
                self._batch_ids = guest.put(bytes(max(len(ids), _BATCH_IDS_BYTES)))
            ids_ptr = self._batch_ids[0]
            guest.write(ids_ptr, ids)
            n = guest.checked(
                "ec_batch_step",
                _i32(ids_ptr),
                len(handles),
                _i32(ptr),
                _i32(cap),
                deadline=deadline,
            )
            records = guest.read(ptr, n) if n <= cap else guest.output()
        if len(records) != n:
            raise EngineInternalError(f"guest wrote batch records of {len(records)}, not {n} bytes")
        outcomes = []
        at = 0
        for _ in handles:
            if at + _BATCH_HEADER.size > n:
                raise EngineInternalError("guest batch records are truncated")
            status, token, reason, prompt_tokens, generated, length = _BATCH_HEADER.unpack_from(
                records, at
            )
            at += _BATCH_HEADER.size
            data = records[at : at + length]
            at += length
            produced = None if token == _NO_TOKEN else token
            outcomes.append((status, produced, data, reason, prompt_tokens, generated))
        return batch_steps(outcomes)

    def close(self) -> None:
        with self._lock:
            guest, self._guest = self._guest, None
            if guest is not None and guest.poisoned is None:
                guest.call("ec_model_free", self._handle)

    @property
    def discarded(self) -> bool:
        """True once a trap or timeout has made this model's instance unusable."""
        return self._guest is None or self._guest.poisoned is not None

    @property
    def steps_in_one_call(self) -> bool:
        """True when :meth:`step_batch` steps every session in one guest call (the guest
        exports ``ec_batch_step``), not one call per session."""
        return self._live().batches


#: A step record (ABI.md, "Generation"): token (0xFFFFFFFF: none), stop reason, prompt
#: tokens, generated tokens, byte count; the token's bytes follow when they fit the buffer.
_STEP_HEADER = struct.Struct("<5I")
_NO_TOKEN = 0xFFFFFFFF
#: The per-session buffer the guest writes step records into; a token's piece is a few bytes.
_STEP_BUFFER_BYTES = 4096
#: A batch record (ABI.md, ``ec_batch_step``): a status (0 or a negative error code), then a
#: step record's head; the token's bytes (or the error message) follow.
_BATCH_HEADER = struct.Struct("<i5I")
#: The per-model buffer of ec_batch_step's records (larger ones come in the output buffer).
_BATCH_BUFFER_BYTES = 65536
#: Room for this many bytes of session handles (16 sessions) in the kept handles block.
_BATCH_IDS_BYTES = 64


class _WasmSession:
    """Drives one ec_session_* handle under the model's lock."""

    def __init__(self, model: WasmModel, handle: int, budget: float | None) -> None:
        self._model = model
        self._handle = handle
        self._budget = budget
        with model._lock:
            self._buffer: tuple[int, int] | None = model._live().put(bytes(_STEP_BUFFER_BYTES))
            model.sessions += 1

    def _live_handle(self, model: WasmModel) -> int:
        """This session's handle, checking it is open and belongs to ``model``."""
        if self._buffer is None:
            raise EngineInternalError("session is closed")
        if self._model is not model:
            raise InvalidParameter("a batch step's sessions must belong to its model")
        return self._handle

    def _guest(self) -> _Guest:
        guest = self._model._live()
        guest.timeout_budget = self._budget
        return guest

    def prompt_bytes(self) -> bytes:
        with self._model._lock:
            guest = self._guest()
            guest.checked("ec_session_prompt", self._handle)
            return guest.output()

    def step(self, deadline: float | None) -> Step:
        with self._model._lock:
            guest = self._guest()
            if self._buffer is None:
                raise EngineInternalError("session is closed")
            ptr, cap = self._buffer
            n = guest.checked(
                "ec_session_step", self._handle, _i32(ptr), _i32(cap), deadline=deadline
            )
            record = guest.read(ptr, min(n, cap))
            if len(record) < _STEP_HEADER.size:
                raise EngineInternalError(f"guest wrote a step record of {n} bytes")
            token, reason, prompt_tokens, generated, length = _STEP_HEADER.unpack_from(record)
            # A record longer than the buffer leaves the bytes in the output buffer.
            data = record[_STEP_HEADER.size :] if n <= cap else guest.output()
            if len(data) != length:
                raise EngineInternalError("guest step record and bytes disagree")
        produced = None if token == _NO_TOKEN else (token, data)
        return Step(produced, reason, prompt_tokens, generated)

    def append(self, turn: str, turn_bytes: bytes, messages: bool = False) -> None:
        export = "ec_session_append_messages" if messages else "ec_session_append"
        with self._model._lock:
            self._guest().checked_with(export, self._handle, turn_bytes)

    def counts(self) -> tuple[int, int]:
        with self._model._lock:
            packed = self._guest().call("ec_session_counts", self._handle)
        packed &= (1 << 64) - 1
        return packed >> 32, packed & 0xFFFFFFFF

    def free(self) -> None:
        with self._model._lock:
            guest = self._model._guest
            buffer, self._buffer = self._buffer, None
            if buffer is not None:
                self._model.sessions -= 1
            if guest is not None and guest.poisoned is None:
                if buffer is not None:
                    guest.free(buffer)
                guest.call("ec_session_free", self._handle)


#: A verdict record (ABI.md, "Verification"): valid, matched, expected (0xFFFFFFFF: none),
#: stop reason, prompt tokens, byte count; the confirmed tokens' bytes follow.
_VERDICT_HEADER = struct.Struct("<6I")


class _WasmVerifier:
    """Drives one ec_verify_* handle under the model's lock."""

    def __init__(self, model: WasmModel, handle: int) -> None:
        self._model = model
        self._handle: int | None = handle

    def run(self, steps: int, deadline: float | None) -> tuple[Any, ...] | None:
        with self._model._lock:
            guest = self._model._live()
            if self._handle is None:
                raise EngineInternalError("verifier is closed")
            if deadline is not None:
                guest.timeout_budget = max(deadline - time.monotonic(), 0.0)
            n = guest.checked("ec_verify_run", self._handle, steps, deadline=deadline)
            if n == 0:
                return None
            record = guest.output()
        if len(record) != n or n < _VERDICT_HEADER.size:
            raise EngineInternalError(f"guest wrote a verdict record of {len(record)} bytes")
        valid, matched, expected, reason, prompt_tokens, length = _VERDICT_HEADER.unpack_from(
            record
        )
        data = record[_VERDICT_HEADER.size :]
        if len(data) != length:
            raise EngineInternalError("guest verdict record and bytes disagree")
        produced = None if expected == _NO_TOKEN else expected
        return valid, matched, produced, reason, prompt_tokens, data

    def free(self) -> None:
        with self._model._lock:
            guest = self._model._guest
            handle, self._handle = self._handle, None
            if handle is not None and guest is not None and guest.poisoned is None:
                guest.call("ec_verify_free", handle)
