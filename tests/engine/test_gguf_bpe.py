"""GGUF `gpt2` tokenizers (byte-level BPE with Qwen2's pre-tokenizer) on both engines: token ids
against a reference encoder written here (the pre-tokenizer's regex run by the `regex` module,
GPT-2's byte map, merges by rank), text round trips, special tokens, and generation from a
synthetic qwen2 file printing its prompt and ending at a control token."""

from __future__ import annotations

from pathlib import Path

import pytest
import regex
from engine_helpers import run_cli

from edgechain.service.engine import Engine
from edgechain.testing.synth import shape_named
from edgechain.testing.synth_gguf import SPECIALS, byte_level, gpt2_vocabulary, synthesize_gguf

#: Qwen2's pre-tokenizer (llama.cpp's LLAMA_VOCAB_PRE_TYPE_QWEN2).
QWEN2_SPLIT = regex.compile(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
TEXTS = [
    "Once upon a time, there was a little girl named Lily.",
    "She'd said: \"I'LL go\" -- they've 12345 apples!!\n\n  And then...   ",
    "tabs\tand\r\nnewlines\n\n\nend",
    "Ünïcödé, 你好，世界! 🎉 emoji and ½ numbers ٣",
    "  leading spaces and trailing  ",
]


def reference_encode(text: str, tokens: list[str], merges: list[str]) -> list[int]:
    ids = {t: i for i, t in enumerate(tokens)}
    ranks = {tuple(m.split(" ")): r for r, m in enumerate(merges)}
    out: list[int] = []
    pattern = "(" + "|".join(regex.escape(s) for s in SPECIALS) + ")"
    for part in regex.split(pattern, text):
        if part in SPECIALS:
            out.append(ids[part])
            continue
        for piece in QWEN2_SPLIT.findall(part):
            symbols = [byte_level(bytes([b])) for b in piece.encode()]
            while True:
                pairs = [
                    (ranks.get((a, b)), i)
                    for i, (a, b) in enumerate(zip(symbols, symbols[1:], strict=False))
                ]
                pairs = [p for p in pairs if p[0] is not None]
                if not pairs:
                    break
                _, i = min(pairs)
                symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
            out += [ids[s] for s in symbols]
    return out


@pytest.fixture(scope="module")
def qwen2_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bpe") / "qwen2.gguf"
    synthesize_gguf(shape_named("260K"), "qwen2", 5, path)
    return path


@pytest.mark.parametrize("which", ["wasm_engine", "native_engine"])
def test_encoding_matches_the_reference_and_round_trips(
    which: str, qwen2_gguf: Path, request: pytest.FixtureRequest
) -> None:
    engine: Engine = request.getfixturevalue(which)
    tokens, merges = gpt2_vocabulary(512)
    with engine.load_files(qwen2_gguf, None) as model:
        for text in TEXTS:
            ids = model.encode(text, bos=True)
            assert ids == reference_encode(text, tokens, merges), text
            assert model.decode(ids) == text
        # Merges happen (fewer ids than bytes) and special tokens are single ids that print
        # nothing.
        assert len(model.encode(TEXTS[0])) < len(TEXTS[0].encode()) * 0.8
        chat = "<|im_start|>user\nHi there<|im_end|>"
        ids = model.encode(chat)
        assert ids[0] == 510 and ids[-1] == 511
        assert ids == reference_encode(chat, tokens, merges)
        assert model.decode(ids) == "user\nHi there"
        assert model.encode("") == [509]  # an empty prompt starts from BOS


def test_generation_prints_the_prompt_on_both_engines(qwen2_gguf: Path) -> None:
    prompt = "Once upon a time"
    outs = []
    for engine in ("wasm", "native"):
        result = run_cli("run", qwen2_gguf, "--engine", engine, "-t", "0", "-n", "40", "-i", prompt)
        assert result.returncode == 0, result.stderr
        outs.append(result.stdout)
    assert outs[0] == outs[1]
    assert outs[0].startswith(prompt.encode())
