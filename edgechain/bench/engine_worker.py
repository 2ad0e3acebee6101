"""One benchmark measurement, run in its own process so its peak RSS is its own.

    python -m edgechain.bench.engine_worker ENGINE CHECKPOINT TOKENIZER STEPS SEED PROMPT [TEMP]

ENGINE is wasm, native, native-tN (the native engine with N threads; plain native uses
$EDGECHAIN_THREADS, else the cores), wasm-iN (the wasm engine with N guest instances per model;
plain wasm uses $EDGECHAIN_WASM_INSTANCES, else 1) or wasm-noepoch (the guest without epoch
interruption: what the deadline checks cost); TEMP is the sampling temperature (default 1.0,
top-p 0.9; 0 is greedy). Prints one JSON object on stdout: engine_init_s, load_s,
first_token_s, decode_tok_s, decode_cpu_tok_s (per second of this process's CPU time: steadier
on a shared machine), generated_tokens, prompt_tokens, peak_rss_mb, module_source (wasm only).
"""

from __future__ import annotations

import json
import re
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgechain.service.engine import Engine


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


#: Engine labels the worker accepts, and the open_engine arguments of each.
ENGINE_OPTIONS: dict[str, tuple[str, dict[str, object]]] = {
    "wasm": ("wasm", {}),
    "native": ("native", {}),
    "wasm-noepoch": ("wasm", {"epoch_interruption": False}),
}
#: ``native-tN``: the native engine with N threads.
_NATIVE_THREADS = re.compile(r"native-t([1-9][0-9]{0,2})")
#: ``wasm-iN``: the wasm engine with N guest instances per model.
_WASM_INSTANCES = re.compile(r"wasm-i([1-9][0-9]?)")


def engine_options(label: str) -> tuple[str, dict[str, object]] | None:
    """The open_engine kind and options an engine label stands for, or None if unknown."""
    if label in ENGINE_OPTIONS:
        return ENGINE_OPTIONS[label]
    match = _NATIVE_THREADS.fullmatch(label)
    if match:
        return "native", {"threads": int(match.group(1))}
    match = _WASM_INSTANCES.fullmatch(label)
    if match:
        return "wasm", {"instances": int(match.group(1))}
    return None


def open_labelled_engine(label: str) -> Engine:
    """The engine an engine label stands for, opened (InvalidParameter if the label is unknown).
    Imported here, not at the top, so that a parent process importing this module for its
    labels loads no engine."""
    from edgechain.errors import InvalidParameter
    from edgechain.service.engine import open_engine

    known = engine_options(label)
    if known is None:
        raise InvalidParameter(f"unknown engine {label!r}")
    kind, options = known
    return open_engine(kind, **options)


@dataclass(frozen=True)
class Workload:
    """What every row of a run generates: ``steps`` positions (the prompt's included) from
    ``prompt`` at ``temperature`` (top-p 0.9), with ``seed`` for the weights and the sampler.
    On a command line: STEPS SEED PROMPT [TEMP]."""

    steps: int
    seed: int
    prompt: str
    temperature: float = 1.0

    def to_argv(self) -> list[str]:
        return [str(self.steps), str(self.seed), self.prompt, str(self.temperature)]

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> Workload:
        steps, seed, prompt = argv[:3]
        temperature = float(argv[3]) if len(argv) > 3 else 1.0
        return cls(int(steps), int(seed), prompt, temperature)


@dataclass(frozen=True)
class Measurement:
    """What one measurement runs: the worker's command line (``to_argv``, ``from_argv``)."""

    engine: str
    checkpoint: Path
    tokenizer: Path | None  # None: a GGUF file, which carries its own
    workload: Workload

    def to_argv(self) -> list[str]:
        tokenizer = "-" if self.tokenizer is None else self.tokenizer
        return [self.engine, str(self.checkpoint), str(tokenizer), *self.workload.to_argv()]

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> Measurement:
        engine, checkpoint, tokenizer = argv[:3]
        return cls(
            engine,
            Path(checkpoint),
            None if tokenizer == "-" else Path(tokenizer),
            Workload.from_argv(argv[3:]),
        )


def measure(run: Measurement) -> dict[str, object]:
    """Time engine start, model load, the first token and the decode rate."""
    from edgechain.service.engine import GenerationParams

    t0 = time.perf_counter()
    engine = open_labelled_engine(run.engine)
    t1 = time.perf_counter()
    model = engine.load_files(run.checkpoint, run.tokenizer)
    t2 = time.perf_counter()
    work = run.workload
    params = GenerationParams(
        temperature=work.temperature, top_p=0.9, seed=work.seed, max_positions=work.steps
    )
    generation = model.generate(work.prompt, params)
    first, first_cpu = None, 0.0
    for _ in generation:
        if first is None:
            first, first_cpu = time.perf_counter(), time.process_time()
    t3, t3_cpu = time.perf_counter(), time.process_time()
    n = generation.generated_tokens
    result: dict[str, object] = {
        "engine": run.engine,
        "engine_init_s": t1 - t0,
        "load_s": t2 - t1,
        "first_token_s": (first - t2) if first is not None else None,
        "decode_tok_s": (n - 1) / (t3 - first) if first is not None and n > 1 else None,
        "decode_cpu_tok_s": (
            (n - 1) / (t3_cpu - first_cpu) if first is not None and n > 1 else None
        ),
        "generated_tokens": n,
        "prompt_tokens": generation.prompt_tokens,
        "stop_reason": generation.stop_reason.name if generation.stop_reason else None,
        "peak_rss_mb": peak_rss_mb(),
    }
    if engine.kind == "native":
        result["threads"] = getattr(model, "threads", None)
    if engine.kind == "wasm":
        result["module_source"] = getattr(engine, "module_source", None)
    model.close()
    return result


def main(argv: list[str]) -> int:
    """Measure and print JSON; a user error is one ``error:`` line and its exit code."""
    from edgechain.errors import EdgechainError

    try:
        print(json.dumps(measure(Measurement.from_argv(argv))))
    except EdgechainError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
