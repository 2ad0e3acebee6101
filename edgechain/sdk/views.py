"""Typed state views, persisted key by key in the application's namespace of the chain state.

As linera-views has them: a :class:`RootView` subclass declares its fields; each field is a view
stored under its own prefix, so only what changes is written (and hashed into the state):

- :class:`RegisterView`: one value (``get``/``set``), at key ``<field>``.
- :class:`MapView`: values by string key (``get``, ``insert``, ``remove``, ``keys``, ``items``),
  at ``<field>/<key>``.
- :class:`LogView`: an append-only list (``push``, ``get(i)``, ``read(start, end)``, ``count``).
- :class:`QueueView`: a FIFO (``push_back``, ``front``, ``delete_front``, ``elements``).

A contract's views write through the block being executed; a service's read certified state
only (writing raises). Values are encoded with the ABI's rules (:mod:`edgechain.sdk.abi`).
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from edgechain.errors import UsageError
from edgechain.sdk.abi import decode, encode

__all__ = ["LogView", "MapView", "QueueView", "RegisterView", "RootView", "Store"]

T = TypeVar("T")


class Store(Protocol):
    """An application's namespace: a contract's (writable) or a service's (read-only)."""

    def get(self, key: str) -> Any: ...

    def keys(self, prefix: str = "") -> list[str]: ...


def _write(store: Any, key: str, value: Any) -> None:
    setter = getattr(store, "set", None)
    if setter is None:
        raise UsageError("a service reads certified state only: schedule an operation to write")
    setter(key, value)


def _delete(store: Any, key: str) -> None:
    deleter = getattr(store, "delete", None)
    if deleter is None:
        raise UsageError("a service reads certified state only: schedule an operation to write")
    deleter(key)


class _View(Generic[T]):
    """A field declaration of a RootView; bound to a store and a prefix when read."""

    def __init__(self, value_type: Any) -> None:
        self.value_type = value_type
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, root: RootView | None, owner: type) -> Any:
        if root is None:
            return self
        return self.bound(root._store, self.name)

    def bound(self, store: Store, prefix: str) -> Any:
        raise NotImplementedError


class RegisterView(_View[T]):
    """One value, ``default`` until set."""

    def __init__(self, value_type: Any, default: Any = None) -> None:
        super().__init__(value_type)
        self.default = default

    def bound(self, store: Store, prefix: str) -> _Register:
        return _Register(store, prefix, self.value_type, self.default)


class _Register:
    def __init__(self, store: Store, key: str, value_type: Any, default: Any) -> None:
        self._store, self._key, self._type, self._default = store, key, value_type, default

    def get(self) -> Any:
        raw = self._store.get(self._key)
        return self._default if raw is None else decode(self._type, raw, self._key)

    def set(self, value: Any) -> None:
        _write(self._store, self._key, encode(value))


class MapView(_View[T]):
    """Values by string key."""

    def bound(self, store: Store, prefix: str) -> _Map:
        return _Map(store, prefix + "/", self.value_type)


class _Map:
    def __init__(self, store: Store, prefix: str, value_type: Any) -> None:
        self._store, self._prefix, self._type = store, prefix, value_type

    def get(self, key: str, default: Any = None) -> Any:
        raw = self._store.get(self._prefix + _key(key))
        return default if raw is None else decode(self._type, raw, f"{self._prefix}{key}")

    def insert(self, key: str, value: Any) -> None:
        _write(self._store, self._prefix + _key(key), encode(value))

    def remove(self, key: str) -> None:
        _delete(self._store, self._prefix + _key(key))

    def contains(self, key: str) -> bool:
        return self._store.get(self._prefix + _key(key)) is not None

    def keys(self) -> list[str]:
        return [k[len(self._prefix) :] for k in self._store.keys(self._prefix)]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, self.get(k)) for k in self.keys()]


def _key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise UsageError(f"a MapView key is a non-empty string, not {key!r}")
    return key


class _Numbered:
    """Values at ``<prefix>/<index, 12 digits>`` beside one bookkeeping value at ``<prefix>``
    (a log's count, a queue's bounds)."""

    def __init__(self, store: Store, prefix: str, value_type: Any) -> None:
        self._store, self._meta_key, self._type = store, prefix, value_type
        self._prefix = prefix + "/"

    def _entry_key(self, index: int) -> str:
        return f"{self._prefix}{index:012d}"


class LogView(_View[T]):
    """An append-only list."""

    def bound(self, store: Store, prefix: str) -> _Log:
        return _Log(store, prefix, self.value_type)


class _Log(_Numbered):
    """The bookkeeping value is the count."""

    def count(self) -> int:
        return self._store.get(self._meta_key) or 0

    def push(self, value: Any) -> None:
        count = self.count()
        _write(self._store, self._entry_key(count), encode(value))
        _write(self._store, self._meta_key, count + 1)

    def get(self, index: int) -> Any:
        if not 0 <= index < self.count():
            raise IndexError(index)
        raw = self._store.get(self._entry_key(index))
        return decode(self._type, raw, f"{self._meta_key}[{index}]")

    def read(self, start: int = 0, end: int | None = None) -> list[Any]:
        stop = self.count() if end is None else min(end, self.count())
        return [self.get(i) for i in range(max(start, 0), stop)]


class QueueView(_View[T]):
    """A first-in, first-out queue."""

    def bound(self, store: Store, prefix: str) -> _Queue:
        return _Queue(store, prefix, self.value_type)


class _Queue(_Numbered):
    """The bookkeeping value is ``[front, back)``, the indices still queued."""

    def _bounds(self) -> tuple[int, int]:
        front, back = self._store.get(self._meta_key) or [0, 0]
        return front, back

    def push_back(self, value: Any) -> None:
        front, back = self._bounds()
        _write(self._store, self._entry_key(back), encode(value))
        _write(self._store, self._meta_key, [front, back + 1])

    def front(self) -> Any:
        front, back = self._bounds()
        if front == back:
            return None
        return decode(self._type, self._store.get(self._entry_key(front)))

    def delete_front(self) -> None:
        front, back = self._bounds()
        if front == back:
            raise IndexError("the queue is empty")
        _delete(self._store, self._entry_key(front))
        _write(self._store, self._meta_key, [front + 1, back])

    def count(self) -> int:
        front, back = self._bounds()
        return back - front

    def elements(self) -> list[Any]:
        front, back = self._bounds()
        return [decode(self._type, self._store.get(self._entry_key(i))) for i in range(front, back)]


class RootView:
    """An application's state: subclass it and declare views as class attributes."""

    def __init__(self, store: Store) -> None:
        self._store = store
