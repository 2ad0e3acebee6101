"""The engines' logits beside llama.cpp's on the same GGUF file and the same token ids: a
reference, never run by CI or the tests (they must not need llama.cpp).

    python -m edgechain.bench.llamacpp_logits --references DIR [--archs llama,qwen2,qwen3]
        [--types f32,f16,q8_0,q4_k] [--engines wasm,native] [--steps 24] [--seed 3]
        [--shape 1.3M] [--head-dim 128] [--model FILE.gguf ...] [--json]

DIR holds what ``scripts/build_llamacpp_reference.sh`` builds: ``llamacpp-logits``
(``scripts/references/llamacpp_logits.c`` linked to llama.cpp's shared libraries beside it).
For each architecture and tensor type a synthetic model (``edgechain synth-model --format gguf``;
and qwen3 with heads of ``--head-dim``) is written to a temporary directory, or ``--model``
names the files (``edgechain convert``'s); the prompt is the engine's encoding of PROMPT;
llama.cpp runs it (one batch, every position's logits) then ``steps`` greedy tokens of its own,
one at a time. The engines compute the logits at every position of that same sequence
(``LoadedModel.position_logits``, token by token). Per row: the largest absolute difference of
any logit, the same relative to the largest logit of its position, the RMS of the differences
over the RMS of llama.cpp's logits; how many argmaxes agree; whether the engine's own greedy
generation follows llama.cpp's chain (it stops at an end-of-sequence token, the chain does
not); whether llama.cpp tokenizes the prompt text to the same ids; whether wasm and native
gave the same bits. A row passes when its largest relative difference is within the tolerance
stated for its type (:data:`TOLERANCES`: llama.cpp sums in another order, and quantizes a
quantized matrix's input in its own blocks, Q8_0's 32 with an f16 scale, Q8_K's 256 for
K-quants, and to F16 for an F16 matrix, where the engine keeps f32, or int8 in groups of 32 or
16 with f32 scales), every argmax agrees where llama.cpp's top two logits are further apart
than twice that, and the engine's greedy ids are llama.cpp's up to the first near-tie. Exit
status 1 when a row fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["TOLERANCES", "Comparison", "LlamaCppRun", "compare", "run_llamacpp"]

#: The program scripts/build_llamacpp_reference.sh builds into DIR.
DRIVER = "llamacpp-logits"
PROMPT = "Once upon a time"
#: Largest logit difference allowed per tensor type, relative to the largest logit (in
#: magnitude) of its position. Measured figures: docs/models.md, "Compared with llama.cpp".
TOLERANCES = {"f32": 1e-5, "f16": 3e-3, "q8_0": 4e-2, "q4_0": 4e-2, "q4_k": 8e-2, "q6_k": 8e-2}


@dataclass(frozen=True)
class LlamaCppRun:
    """What ``llamacpp-logits`` wrote: its own ids for the prompt text, its greedy ids after
    the given prompt ids, and the logits after every token of prompt + greedy ids."""

    text_ids: list[int]
    prompt: list[int]
    greedy: list[int]
    rows: list[list[float]]


@dataclass(frozen=True)
class Comparison:
    """One engine on one file against llama.cpp."""

    arch: str
    type: str
    engine: str
    positions: int
    max_abs: float
    max_rel: float
    rms_rel: float
    largest_logit: float
    #: Positions whose argmax is the same as llama.cpp's, of those where llama.cpp's top two
    #: logits are more than twice the tolerance apart (relative to the position's largest
    #: logit; elsewhere either order is within it).
    argmax_agree: int
    decisive: int
    #: The engine's own greedy ids equal llama.cpp's chain up to its first near-tie.
    greedy_ok: bool
    generated: int
    same_text_ids: bool
    tolerance: float

    @property
    def passed(self) -> bool:
        within = self.max_rel <= self.tolerance
        return within and self.argmax_agree == self.decisive and self.greedy_ok


def run_llamacpp(driver: Path, model: Path, prompt: Sequence[int], steps: int) -> LlamaCppRun:
    """Run the driver on ``model`` (RuntimeError with its last stderr line when it fails)."""
    cmd = [str(driver), str(model), str(steps), PROMPT, *map(str, prompt)]
    # llama.cpp's shared libraries are beside the driver.
    env = {**os.environ, "LD_LIBRARY_PATH": str(driver.parent)}
    proc = subprocess.run(cmd, capture_output=True, env=env)
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"{driver.name} exited {proc.returncode}")
    out = proc.stdout
    n_vocab, n_text, n_prompt, n_steps = struct.unpack_from("<4i", out)
    at = 16
    text_ids = list(struct.unpack_from(f"<{n_text}i", out, at))
    at += 4 * n_text
    greedy = list(struct.unpack_from(f"<{n_steps}i", out, at))
    at += 4 * n_steps
    total = n_prompt + n_steps
    values = struct.unpack_from(f"<{total * n_vocab}f", out, at)
    rows = [list(values[i * n_vocab : (i + 1) * n_vocab]) for i in range(total)]
    return LlamaCppRun(text_ids, list(prompt), greedy, rows)


def _argmax(row: Sequence[float]) -> int:
    best = 0
    for i, v in enumerate(row):
        if v > row[best]:
            best = i
    return best


def _margin(row: Sequence[float]) -> float:
    """The largest logit's lead over the second."""
    top = sorted(row)[-2:]
    return top[1] - top[0]


def compare(
    arch: str,
    kind: str,
    engine: str,
    rows: Sequence[Sequence[float]],
    generated: Sequence[int],
    ref: LlamaCppRun,
) -> Comparison:
    """The engine's ``rows`` (every position of prompt + llama.cpp's greedy ids) and its own
    greedy ``generated`` ids against llama.cpp's run."""
    tolerance = TOLERANCES[kind]
    max_abs = max_rel = largest = 0.0
    sq_diff = sq_ref = 0.0
    agree = decisive = 0
    near_tie = [_margin(want) <= 2 * tolerance * max(map(abs, want)) for want in ref.rows]
    for got, want, tie in zip(rows, ref.rows, near_tie, strict=True):
        diff = max(abs(a - b) for a, b in zip(got, want, strict=True))
        scale = max(abs(b) for b in want)
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / scale if scale else math.inf)
        largest = max(largest, scale)
        sq_diff += sum((a - b) ** 2 for a, b in zip(got, want, strict=True))
        sq_ref += sum(b * b for b in want)
        if not tie:
            decisive += 1
            agree += _argmax(got) == _argmax(want)
    first = len(ref.prompt) - 1
    greedy_ok = True
    for j, (a, b) in enumerate(zip(generated, ref.greedy, strict=False)):
        if a != b:
            greedy_ok = near_tie[first + j]
            break
    else:
        # The engine stops at an end-of-sequence token, llama.cpp's chain goes on.
        greedy_ok = len(generated) <= len(ref.greedy)
    return Comparison(
        arch=arch,
        type=kind,
        engine=engine,
        positions=len(rows),
        max_abs=max_abs,
        max_rel=max_rel,
        rms_rel=math.sqrt(sq_diff / sq_ref) if sq_ref else math.inf,
        largest_logit=largest,
        argmax_agree=agree,
        decisive=decisive,
        greedy_ok=greedy_ok,
        generated=len(generated),
        same_text_ids=ref.text_ids == ref.prompt,
        tolerance=tolerance,
    )


def _engine_run(
    engine: str, model: Path, sequence: list[int], steps: int
) -> tuple[list[list[float]], list[int]]:
    """The engine's logits at every position of ``sequence`` and its own greedy ids."""
    from edgechain.service.engine import GenerationParams, open_engine

    eng = open_engine(engine)
    try:
        with eng.load_files(model, None) as loaded:
            params = GenerationParams(temperature=0.0, max_tokens=steps)
            generated = [t.id for t in loaded.generate(PROMPT, params)]
            return loaded.position_logits(sequence), generated
    finally:
        eng.close()


def compare_file(
    driver: Path, model: Path, arch: str, kind: str, engines: Sequence[str], steps: int
) -> tuple[list[Comparison], bool]:
    """Every engine against llama.cpp on ``model``; and whether the engines' logits were the
    same bits."""
    from edgechain.service.engine import open_engine

    eng = open_engine(engines[0])
    try:
        with eng.load_files(model, None) as loaded:
            prompt = loaded.encode(PROMPT)
    finally:
        eng.close()
    ref = run_llamacpp(driver, model, prompt, steps)
    sequence = prompt + ref.greedy
    results, bits = [], []
    for engine in engines:
        rows, generated = _engine_run(engine, model, sequence, steps)
        bits.append([struct.pack(f"<{len(r)}f", *r) for r in rows])
        results.append(compare(arch, kind, engine, rows, generated, ref))
    return results, all(b == bits[0] for b in bits)


def _table(rows: list[Comparison], same_bits: dict[tuple[str, str], bool]) -> str:
    head = (
        "| arch | type | engine | positions | max abs diff | max rel diff | rms rel | "
        "largest logit | argmax agree | greedy ids | prompt ids as llama.cpp's | "
        "wasm == native | tolerance | pass |"
    )
    lines = [head, "|" + " --- |" * 14]
    for r in rows:
        lines.append(
            f"| {r.arch} | {r.type} | {r.engine} | {r.positions} | {r.max_abs:.2e} | "
            f"{r.max_rel:.2e} | {r.rms_rel:.2e} | {r.largest_logit:.3f} | "
            f"{r.argmax_agree}/{r.decisive} | {'same' if r.greedy_ok else 'DIFFER'} "
            f"({r.generated}) | {'yes' if r.same_text_ids else 'no'} | "
            f"{'yes' if same_bits[(r.arch, r.type)] else 'NO'} | {r.tolerance:g} | "
            f"{'yes' if r.passed else 'NO'} |"
        )
    return "\n".join(lines)


def _file_kind(path: Path) -> str:
    """The tolerance's type for a GGUF file: its coarsest tensor type."""
    from edgechain.service.engine.gguf_header import read_gguf_header

    with path.open("rb") as f:
        types = read_gguf_header(f, path.stat().st_size, str(path)).tensor_types
    for kind in ("Q4_K", "Q6_K", "Q4_0", "Q8_0", "F16"):
        if kind in types:
            return kind.lower()
    return "f32"


def main(argv: Sequence[str] | None = None) -> int:
    from edgechain.convert import TYPES
    from edgechain.testing.synth import shape_named
    from edgechain.testing.synth_gguf import ARCHITECTURES, synthesize_gguf

    parser = argparse.ArgumentParser(
        prog="python -m edgechain.bench.llamacpp_logits", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--references", required=True, type=Path, metavar="DIR")
    parser.add_argument("--archs", default=",".join(ARCHITECTURES))
    parser.add_argument("--types", default="f32,f16,q8_0,q4_k")
    parser.add_argument("--engines", default="wasm,native")
    parser.add_argument("--shape", default="1.3M", help="synth-model shape (default 1.3M)")
    parser.add_argument("--steps", type=int, default=24, help="llama.cpp's greedy tokens")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--head-dim",
        type=int,
        default=128,
        help="also qwen3 with heads of this size instead of dim / heads (Qwen3-0.6B's 128; 0: not)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        action="append",
        metavar="FILE.gguf",
        help="compare these GGUF files (e.g. edgechain convert's) instead of synthetic ones",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    args = parser.parse_args(argv)
    driver = args.references / DRIVER
    if not driver.is_file():
        parser.error(f"{driver} is missing: build it with scripts/build_llamacpp_reference.sh")
    archs, kinds = args.archs.split(","), args.types.split(",")
    engines = args.engines.split(",")
    for what, given, known in (
        ("--archs", archs, ARCHITECTURES),
        ("--types", kinds, TYPES),
        ("--engines", engines, ("wasm", "native")),
    ):
        if unknown := [v for v in given if v not in known]:
            parser.error(f"{what}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    for path in args.model or []:
        if not path.is_file():
            parser.error(f"--model: no file {path}")
    shape = shape_named(args.shape)
    rows: list[Comparison] = []
    same_bits: dict[tuple[str, str], bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # (label, type, file): the given files, or a synthetic model per architecture and type.
        files: list[tuple[str, str, Path]] = []
        if args.model:
            files = [(p.name, _file_kind(p), p) for p in args.model]
        else:
            cases: list[tuple[str, str, int | None]] = [(a, a, None) for a in archs]
            if args.head_dim and "qwen3" in archs:
                cases.append((f"qwen3 hd{args.head_dim}", "qwen3", args.head_dim))
            for label, arch, head_dim in cases:
                for kind in kinds:
                    model = Path(tmp) / f"{label.replace(' ', '-')}-{kind}.gguf"
                    synthesize_gguf(shape, arch, args.seed, model, kind, head_dim)
                    files.append((label, kind, model))
        for label, kind, model in files:
            try:
                found, same = compare_file(driver, model, label, kind, engines, args.steps)
            except RuntimeError as err:
                print(f"{label} {kind}: llama.cpp failed: {err}", file=sys.stderr)
                return 1
            rows.extend(found)
            same_bits[(label, kind)] = same
            if args.json:
                for r in found:
                    print(json.dumps({**asdict(r), "passed": r.passed, "same_bits": same}))
    if not args.json:
        where = "given files" if args.model else f"shape {args.shape}, seed {args.seed}"
        print(f"{where}, prompt {PROMPT!r}, {args.steps} greedy")
        print(_table(rows, same_bits))
    ok = all(r.passed for r in rows) and all(same_bits.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
