"""A wasm model in several guest instances (service/engine/wasm_instances.py): concurrent
generations spread over the instances and stepped in parallel give exactly the outputs each gets
alone, on one instance and on the native engine."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from edgechain.errors import EngineInternalError, GuestTrap, InvalidParameter
from edgechain.service.engine import Engine, GenerationParams, LoadedModel, open_engine
from edgechain.service.engine.wasm_instances import (
    INSTANCES_ENV,
    InstancesModel,
    resolve_instances,
)
from edgechain.testing.models import ModelFiles

#: 16 streams: greedy and sampled (several temperatures, top-p, repeat penalty, stops, limits).
STREAMS = [
    (
        ["Once upon a time", "Lily", "The cat sat on the mat and", "", "A dog"][i % 5],
        GenerationParams(
            temperature=[0.0, 0.8, 1.0, 0.5][i % 4],
            top_p=[0.9, 1.0][i % 2],
            seed=100 + i,
            max_tokens=30 + 7 * i,
            repeat_penalty=1.3 if i % 3 == 0 else 1.0,
            stop=["."] if i % 5 == 3 else (),
        ),
    )
    for i in range(16)
]


@pytest.fixture(scope="module", params=["f32", "int8"])
def files(
    request: pytest.FixtureRequest, stories260k: ModelFiles, q8_260k: ModelFiles
) -> ModelFiles:
    return stories260k if request.param == "f32" else q8_260k


@pytest.fixture(scope="module")
def two(files: ModelFiles) -> Iterator[LoadedModel]:
    with files.load(open_engine("wasm", instances=2)) as model:
        yield model


def _alone(model: LoadedModel, prompt: str, params: GenerationParams) -> tuple[Any, ...]:
    gen = model.generate(prompt, params)
    ids = [t.id for t in gen]
    return ids, gen.text, gen.stop_reason


def test_sixteen_concurrent_streams_over_two_instances_give_their_solo_outputs(
    two: LoadedModel, files: ModelFiles, wasm_engine: Engine, native_engine: Engine
) -> None:
    assert isinstance(two, InstancesModel) and two.instances == 2
    with files.load(wasm_engine) as one, files.load(native_engine) as native:
        solo = [_alone(one, prompt, params) for prompt, params in STREAMS]
        assert [_alone(native, prompt, params) for prompt, params in STREAMS] == solo
    batcher = two._step_batcher()
    calls, steps = batcher.calls, batcher.steps
    generations = [two.generate(prompt, params) for prompt, params in STREAMS]
    assert [m.sessions for m in two.models] == [8, 8]  # placed evenly, before any step
    results: list[tuple[Any, ...] | BaseException | None] = [None] * len(STREAMS)
    start = threading.Barrier(len(STREAMS))

    def run(i: int) -> None:
        try:
            start.wait()
            ids = [t.id for t in generations[i]]
            results[i] = (ids, generations[i].text, generations[i].stop_reason)
        except BaseException as err:  # noqa: BLE001 - compared below
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(STREAMS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == solo
    assert batcher.steps - steps > batcher.calls - calls  # the streams were stepped together
    assert [m.sessions for m in two.models] == [0, 0]


def test_logits_and_text_tools_match_one_instance(
    two: LoadedModel, files: ModelFiles, wasm_engine: Engine
) -> None:
    with files.load(wasm_engine) as one:
        ids = one.encode("Once upon a time there was")
        assert two.encode("Once upon a time there was") == ids
        assert two.decode(ids) == one.decode(ids)
        assert two.position_logits(ids) == one.position_logits(ids)
        params = GenerationParams(temperature=0.0, max_tokens=20)
        generated = _alone(one, "Lily", params)
        assert two.verify_claim("Lily", params, generated[0]).valid


def test_a_failed_instance_fails_only_its_own_sessions(files: ModelFiles) -> None:
    with files.load(open_engine("wasm", instances=2)) as model:
        assert isinstance(model, InstancesModel)
        params = GenerationParams(temperature=0.0, max_tokens=10)
        first, second = model.generate("Lily", params), model.generate("Lily", params)
        assert [m.sessions for m in model.models] == [1, 1]
        model.models[1]._guest.poisoned = "a trap in a test"  # type: ignore[union-attr]
        steps = model.step_batch([first._driver, second._driver], None)  # type: ignore[attr-defined]
        assert steps[0].error is None and steps[0].produced is not None
        assert isinstance(steps[1].error, GuestTrap)
        assert model.discarded
        with pytest.raises(GuestTrap):
            model.step_batch([second._driver], None)  # type: ignore[attr-defined]
        first.cancel()
        second.cancel()


def test_instances_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INSTANCES_ENV, raising=False)
    assert resolve_instances(None) == 1
    assert resolve_instances(3) == 3
    monkeypatch.setenv(INSTANCES_ENV, "2")
    assert resolve_instances(None) == 2
    assert resolve_instances(1) == 1
    for bad in ("0", "x", "65"):
        monkeypatch.setenv(INSTANCES_ENV, bad)
        with pytest.raises(InvalidParameter, match=INSTANCES_ENV):
            resolve_instances(None)
    with pytest.raises(InvalidParameter, match="instances"):
        resolve_instances(True)  # type: ignore[arg-type]


def test_a_closed_or_repeated_session_fails_the_whole_step(two: LoadedModel) -> None:
    params = GenerationParams(temperature=0.0, max_tokens=5)
    first, second = two.generate("Lily", params), two.generate("A dog", params)
    step_batch = two.step_batch  # type: ignore[attr-defined]
    with pytest.raises(InvalidParameter, match="twice"):
        step_batch([first._driver, second._driver, first._driver], None)
    closed = first._driver
    first.cancel()
    with pytest.raises(EngineInternalError, match="closed"):
        step_batch([second._driver, closed], None)
    second.cancel()
