"""Compile the wasm guest once per process and once per machine.

A compiled :class:`wasmtime.Module` is kept in memory per process and serialised to a per-user
cache directory, keyed by the BLAKE3 of the .wasm bytes, the wasmtime version and the engine
configuration, so a second process skips Cranelift compilation (seconds for the guest).

Deserialising a compiled module runs native code from disk: the cache directory is created
private to the user (0700) and a file that fails to deserialise is recompiled and replaced.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import blake3
import wasmtime

_lock = threading.Lock()
_modules: dict[str, wasmtime.Module] = {}


@dataclass(frozen=True)
class CompiledModule:
    """A compiled guest and where it came from: "memory", "disk" or "compiled"."""

    module: wasmtime.Module
    source: str
    key: str


def user_cache_dir(name: str) -> Path:
    """$EDGECHAIN_CACHE_DIR/<name>, else $XDG_CACHE_HOME (~/.cache)/edgechain/<name>."""
    root = os.environ.get("EDGECHAIN_CACHE_DIR")
    if root:
        return Path(root) / name
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "edgechain" / name


def default_cache_dir() -> Path:
    """Where compiled guests are kept: :func:`user_cache_dir` ``wasm-modules``."""
    return user_cache_dir("wasm-modules")


def module_key(wasm: bytes, config_tag: str) -> str:
    """The cache key: BLAKE3 over the guest's hash, the wasmtime version and the config tag."""
    wasm_hash = blake3.blake3(wasm).hexdigest()
    version = metadata.version("wasmtime")
    return blake3.blake3(f"{wasm_hash}|wasmtime-{version}|{config_tag}".encode()).hexdigest()


def compiled_module(
    engine: wasmtime.Engine, wasm: bytes, config_tag: str, cache_dir: Path | None
) -> CompiledModule:
    """The compiled module for ``wasm`` on ``engine``, from memory, disk or a fresh compilation.

    ``config_tag`` must change whenever ``engine``'s configuration does (compiled code depends on
    it). ``cache_dir`` None disables the disk cache.
    """
    key = module_key(wasm, config_tag)
    with _lock:
        cached = _modules.get(key)
        if cached is not None:
            return CompiledModule(cached, "memory", key)
        module, source = _from_disk_or_compile(engine, wasm, key, cache_dir)
        _modules[key] = module
        return CompiledModule(module, source, key)


def _from_disk_or_compile(
    engine: wasmtime.Engine, wasm: bytes, key: str, cache_dir: Path | None
) -> tuple[wasmtime.Module, str]:
    path = None if cache_dir is None else cache_dir / f"{key}.cwasm"
    if path is not None and path.is_file():
        try:
            return wasmtime.Module.deserialize_file(engine, str(path)), "disk"
        except wasmtime.WasmtimeError:
            pass  # stale or damaged: recompile and overwrite below
    module = wasmtime.Module(engine, wasm)
    if path is not None:
        _store(path, module.serialize())
    return module, "compiled"


def _store(path: Path, data: bytes) -> None:
    """Write atomically; an unwritable cache only costs a recompilation next time."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".cwasm")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass
