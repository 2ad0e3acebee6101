"""One wasm model in several guest instances, so concurrent generations use several cores.

A wasmtime Store runs one call at a time, on one thread: with a model in one instance, the
batched step of all its generations (``ec_batch_step``) runs on one core while the others idle.
:class:`InstancesModel` loads the same weights into N instances (each its own Store and linear
memory) and places each new generation on the instance with the fewest; one batched step then
runs every instance's share of the sessions at the same time, each in its own thread (wasmtime
calls release the GIL). A session lives in one instance for its whole life (its KV cache is in
that instance's memory), so each session's steps are exactly those it gets alone: the output is
the same bits for any instance count.

The cost is memory: every instance holds its own copy of the weights (110M f32: 0.44 GB more per
instance), hence a setting (``WasmEngine(instances=N)``, ``$EDGECHAIN_WASM_INSTANCES``), 1 by
default.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from edgechain.errors import EdgechainError, InvalidParameter
from edgechain.service.engine.base import (
    LoadedModel,
    SessionStart,
    Step,
    VerifierStart,
    count_setting,
)

if TYPE_CHECKING:
    from edgechain.service.engine.wasm import WasmModel, _WasmSession, _WasmVerifier

__all__ = ["INSTANCES_ENV", "MAX_INSTANCES", "InstancesModel", "resolve_instances"]

#: Environment variable giving the wasm engine's default instances per model.
INSTANCES_ENV = "EDGECHAIN_WASM_INSTANCES"
#: More instances than this would only multiply the weights' memory.
MAX_INSTANCES = 64


def resolve_instances(instances: int | None) -> int:
    """Guest instances per model: ``instances`` if given, else ``$EDGECHAIN_WASM_INSTANCES``,
    else 1. InvalidParameter for anything but an integer in 1..MAX_INSTANCES."""
    return count_setting(instances, INSTANCES_ENV, "instances", MAX_INSTANCES) or 1


class InstancesModel(LoadedModel):
    """A model loaded into several guest instances (``models``, the same weights in each)."""

    def __init__(self, models: Sequence[WasmModel], timeout: float | None) -> None:
        if len(models) < 2:
            raise InvalidParameter("an InstancesModel needs at least two instances")
        self.models = list(models)
        self.info = self.models[0].info
        self._timeout = timeout
        self._placing = threading.Lock()
        #: Sessions being started on each instance, not yet counted in its ``sessions``.
        self._starting = [0] * len(self.models)
        # The calling thread steps one instance's share itself; these threads the others'.
        self._pool = ThreadPoolExecutor(
            max_workers=len(self.models) - 1, thread_name_prefix="edgechain-wasm-instance"
        )

    @property
    def instances(self) -> int:
        return len(self.models)

    @property
    def steps_in_one_call(self) -> bool:
        """True when each instance steps its sessions in one guest call
        (:attr:`WasmModel.steps_in_one_call`)."""
        return all(m.steps_in_one_call for m in self.models)

    def _least_busy(self) -> int:
        """The instance with the fewest sessions (lock held)."""
        loads = [m.sessions + s for m, s in zip(self.models, self._starting, strict=True)]
        return loads.index(min(loads))

    # --- work that needs no particular instance: the least busy does it ------------------------

    def _any(self) -> WasmModel:
        with self._placing:
            return self.models[self._least_busy()]

    def _encode(self, text: str, data: bytes, bos: bool, eos: bool) -> list[int]:
        return self._any()._encode(text, data, bos, eos)

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        return self._any().decode_bytes(ids)

    def _position_logits(self, ids: list[int]) -> bytes:
        return self._any()._position_logits(ids)

    def _render_chat(self, messages: str, add_generation_prompt: bool) -> str:
        return self._any()._render_chat(messages, add_generation_prompt)

    def _start_verifier(self, start: VerifierStart) -> _WasmVerifier:
        return self._any()._start_verifier(start)

    # --- generations: placed on an instance for their whole life -------------------------------

    def _start(self, start: SessionStart) -> _WasmSession:
        with self._placing:
            index = self._least_busy()
            self._starting[index] += 1
        try:
            return self.models[index]._start(start)
        finally:
            with self._placing:
                self._starting[index] -= 1

    def step_batch(self, drivers: Sequence[_WasmSession], deadline: float | None) -> list[Step]:
        """Each instance's sessions stepped in one ``ec_batch_step`` of that instance, the
        instances at the same time. A failed instance's sessions get ``Step.failed`` (the
        other instances' steps stand, nothing they produced is lost); the call raises only
        when every instance failed."""
        # A closed, foreign or repeated session fails the whole call before anything runs, as
        # on one instance (inside an instance's share it would fail only that share).
        if len({id(d) for d in drivers}) != len(drivers):
            raise InvalidParameter("a session appears twice in one batch step")
        groups: dict[int, list[int]] = {}
        for position, driver in enumerate(drivers):
            index = self._instance_of(driver)
            driver._live_handle(self.models[index])  # noqa: SLF001 - raises once it is closed
            groups.setdefault(index, []).append(position)
        if len(groups) <= 1:
            for index in groups:
                return self.models[index].step_batch(drivers, deadline)
            return []
        work = [(self.models[i], [drivers[p] for p in ps]) for i, ps in groups.items()]
        futures: list[Future[list[Step]]] = [
            self._pool.submit(model.step_batch, share, deadline) for model, share in work[1:]
        ]
        outcomes: list[list[Step] | BaseException] = []
        try:
            outcomes.append(work[0][0].step_batch(work[0][1], deadline))
        except BaseException as err:  # noqa: BLE001 - sorted below, after the others finish
            outcomes.append(err)
        for future in futures:
            try:
                outcomes.append(future.result())
            except BaseException as err:  # noqa: BLE001 - likewise
                outcomes.append(err)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        for failure in failures:
            if not isinstance(failure, EdgechainError):
                raise failure  # a bug, not a session's failure
        if len(failures) == len(outcomes):
            raise failures[0]
        steps: list[Step | None] = [None] * len(drivers)
        for positions, outcome in zip(groups.values(), outcomes, strict=True):
            for at, position in enumerate(positions):
                steps[position] = (
                    Step.failed(outcome) if isinstance(outcome, BaseException) else outcome[at]
                )
        return [s for s in steps if s is not None]

    def _instance_of(self, driver: _WasmSession) -> int:
        for index, model in enumerate(self.models):
            if driver._model is model:  # noqa: SLF001 - the session's instance
                return index
        raise InvalidParameter("a batch step's sessions must belong to its model")

    def close(self) -> None:
        try:
            for model in self.models:
                model.close()
        finally:
            self._pool.shutdown(wait=False)

    @property
    def discarded(self) -> bool:
        """True once a trap or timeout has made any instance unusable (as for one instance,
        the service then drops the whole model)."""
        return any(model.discarded for model in self.models)
