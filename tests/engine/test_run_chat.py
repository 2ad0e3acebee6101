"""`edgechain run -m chat`: run.c's chat mode (Llama 2's [INST] template, user turns on stdin).

The first turn is pinned by run.c's own chat output (golden/chat, greedy and sampled); later
turns by a greedy chat recomputed from whole-dialogue logits, by both engines agreeing, and by
rust_guest's test that writes run.c's chat loop out.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from engine_helpers import assert_clean_error, run_cli

from edgechain.errors import ContextFull, InvalidParameter
from edgechain.service.engine import GenerationParams, LoadedModel
from edgechain.service.engine.chat import ChatSession, render_turn
from edgechain.service.engine.native import import_native
from edgechain.testing.models import ModelFiles

GREEDY = GenerationParams(temperature=0.0, seed=1, max_positions=512)


def test_the_template_is_run_c_s() -> None:
    assert render_turn("Hi", "Be kind") == "[INST] <<SYS>>\nBe kind\n<</SYS>>\n\nHi [/INST]"
    assert render_turn("Hi") == "[INST] Hi [/INST]"
    assert render_turn("Hi", "") == "[INST] Hi [/INST]"  # an empty system prompt is no system


def test_the_first_turn_is_bos_then_the_rendered_template(model_260k: LoadedModel) -> None:
    chat = ChatSession(model_260k, GREEDY, system="You tell stories")
    rendered = render_turn("Hello", "You tell stories")
    first = chat.reply("Hello")
    expected = model_260k.encode(rendered, bos=True)
    assert expected[0] == 1  # BOS, as run.c's encode(..., bos=1, ...)
    assert first.prompt_tokens == len(expected)
    assert first.prompt_text == model_260k.decode(expected)
    answer = "".join(token.text for token in first)
    assert answer and first.text == answer

    second = chat.reply("And then?")
    # The dialogue so far, then the next turn without the system prompt.
    assert chat.dialogue == [rendered, answer, "[INST] And then? [/INST]"]
    # Only the end token and the new turn (with its BOS) were fed after the first answer.
    turn = model_260k.encode("[INST] And then? [/INST]", bos=True)
    assert second.prompt_tokens == first.prompt_tokens + first.generated_tokens + 1 + len(turn)
    second.cancel()


def _chat_tokens(model: LoadedModel, params: GenerationParams, turns: list[str]) -> list[list[int]]:
    answers = []
    generation = model.chat(turns[0], params)
    for k, turn in enumerate(turns):
        if k:
            generation = generation.follow_up(turn)
        answers.append([token.id for token in generation])
    generation.cancel()
    return answers


def _greedy_reference(files: ModelFiles, turns: list[str], max_tokens: int) -> list[list[int]]:
    """run.c's greedy chat recomputed from scratch for every token: the whole dialogue fed
    from position 0, the answer's next token the argmax of the last logits, an answer's last
    token fed before the next turn."""
    raw = import_native().Model(files.weights.read_bytes(), files.tokenizer.read_bytes())
    fed: list[int] = []
    answers = []
    for turn in turns:
        fed += raw.encode(turn, True, False)
        answer: list[int] = []
        while len(answer) < max_tokens:
            data = raw.logits(fed)
            logits = struct.unpack(f"<{len(data) // 4}f", data)
            answer.append(max(range(len(logits)), key=lambda i: (logits[i], -i)))
            fed.append(answer[-1])
        answers.append(answer)
    return answers


TURNS = ["[INST] Hello [/INST]", "[INST] And then? [/INST]", "[INST] Why? [/INST]"]


def test_a_greedy_chat_is_the_whole_dialogue_recomputed(
    model_260k: LoadedModel, stories260k: ModelFiles
) -> None:
    params = GenerationParams(temperature=0.0, max_tokens=9)
    assert _chat_tokens(model_260k, params, TURNS) == _greedy_reference(stories260k, TURNS, 9)


@pytest.mark.parametrize(
    "params",
    [
        GenerationParams(temperature=0.0, max_tokens=9),
        GenerationParams(temperature=0.9, top_p=0.9, seed=11, max_tokens=9),
        GenerationParams(temperature=1.0, top_p=1.0, seed=5, max_tokens=9, repeat_penalty=1.2),
    ],
    ids=["greedy", "top-p", "penalty"],
)
def test_a_chat_keeps_its_cache_and_is_the_same_on_both_engines(
    wasm_260k: LoadedModel, native_260k: LoadedModel, params: GenerationParams
) -> None:
    answers = _chat_tokens(wasm_260k, params, TURNS)
    assert answers == _chat_tokens(native_260k, params, TURNS)
    assert all(len(answer) == 9 for answer in answers)  # each turn stopped at max_tokens


@pytest.fixture(scope="module")
def chats(stories260k: ModelFiles) -> dict[str, object]:
    def chat(engine: str):
        return run_cli(
            "run", stories260k.weights, "-z", stories260k.tokenizer, "--engine", engine,
            "-m", "chat", "-y", "You tell stories", "-i", "Hello", "-t", "0", "-n", "0",
            stdin=b"Tell me about the dog\n",
        )  # fmt: skip

    return {engine: chat(engine) for engine in ("wasm", "native")}


def test_chat_reads_turns_from_stdin_until_it_ends(chats: dict[str, object]) -> None:
    result = chats["wasm"]
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode("utf-8")
    assert out.startswith("Assistant: ")  # -i is the first turn, -y the system prompt
    assert out.count("Assistant: ") == 2  # then one turn from stdin
    # stories260K is no chat model: its second answer runs until the context is full, which
    # ends the conversation as run.c's loop ends at its steps.
    assert out.count("User: ") == 1
    assert "Enter system prompt" not in out


def test_chat_ends_with_stdin(stories260k: ModelFiles) -> None:
    result = run_cli(
        "run", stories260k.weights, "-z", stories260k.tokenizer, "-m", "chat",
        "-y", "You tell stories", "-i", "Hello", "-t", "0", "-n", "0", stdin=b"",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode("utf-8")
    # The first answer ends at its end token; the next read hits the end of stdin.
    assert out.startswith("Assistant: ") and out.count("Assistant: ") == 1
    assert out.endswith("\nUser: \n")


def test_chat_is_the_same_on_both_engines(chats: dict[str, object]) -> None:
    assert chats["wasm"].returncode == chats["native"].returncode == 0
    assert chats["wasm"].stdout == chats["native"].stdout


def test_chat_asks_for_the_system_prompt_when_not_given(stories260k: ModelFiles) -> None:
    result = run_cli(
        "run", stories260k.weights, "-z", stories260k.tokenizer, "-m", "chat", "-t", "0",
        "-n", "64", stdin=b"\nHi\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode("utf-8")
    assert out.startswith("Enter system prompt (optional): User: Assistant: ")


def test_a_first_turn_that_does_not_fit_is_a_generation_error(stories260k: ModelFiles) -> None:
    result = run_cli(
        "run", stories260k.weights, "-z", stories260k.tokenizer, "-m", "chat", "-y", "",
        "-i", "dog " * 600,
    )  # fmt: skip
    assert_clean_error(result, 7, "prompt too long")
    assert b"Assistant" not in result.stdout


def test_generate_mode_prints_nothing_before_a_prompt_too_long_error(
    stories260k: ModelFiles,
) -> None:
    result = run_cli(
        "run", stories260k.weights, "-z", stories260k.tokenizer, "-i", "dog " * 600
    )
    assert_clean_error(result, 7, "prompt too long")
    assert result.stdout == b""


def test_run_and_generate_say_what_n_counts() -> None:
    run_help = run_cli("run", "--help").stdout.decode()
    generate_help = run_cli("generate", "--help").stdout.decode()
    assert "positions including the prompt" in " ".join(run_help.split())
    assert "new tokens to generate at most, prompt excluded" in " ".join(generate_help.split())


def test_a_follow_up_is_refused_outside_a_chat_mid_answer_and_past_the_positions(
    model_260k: LoadedModel,
) -> None:
    params = GenerationParams(temperature=0.0, max_tokens=4, max_positions=64)
    plain = model_260k.generate("Hello", params)
    list(plain)
    with pytest.raises(InvalidParameter, match="only a chat"):
        plain.follow_up("[INST] more [/INST]")
    answer = model_260k.chat("[INST] Hello [/INST]", params)
    next(answer)
    with pytest.raises(InvalidParameter, match="still running"):
        answer.follow_up("[INST] more [/INST]")
    first = [token.id for token in answer]
    with pytest.raises(ContextFull, match="positions"):
        answer.follow_up("[INST] " + "and then " * 20 + "[/INST]")
    # The refused turn lost nothing: the chat goes on as if it had not been asked.
    again = model_260k.chat("[INST] Hello [/INST]", params)
    list(again)
    assert [token.id for token in answer.follow_up("[INST] Why? [/INST]")] == [
        token.id for token in again.follow_up("[INST] Why? [/INST]")
    ]
    assert len(first) == 3


CHAT_GOLDENS = sorted((Path(__file__).parent / "golden" / "chat").glob("*.txt"))
CHAT_NAME = re.compile(r"stories260K_chat_t([0-9.]+)_p([0-9.]+)_s([0-9]+)_hello_128\.txt")


def test_the_chat_goldens_are_there() -> None:
    assert len(CHAT_GOLDENS) == 3


@pytest.mark.parametrize("engine", ["wasm", "native"])
@pytest.mark.parametrize("golden", CHAT_GOLDENS, ids=lambda p: p.stem)
def test_chat_prints_run_c_s_chat_byte_for_byte(
    engine: str, golden: Path, stories260k: ModelFiles
) -> None:
    match = CHAT_NAME.fullmatch(golden.name)
    assert match is not None, golden.name
    temperature, top_p, seed = match.groups()
    result = run_cli(
        "run", stories260k.weights, "-z", stories260k.tokenizer, "--engine", engine,
        "-m", "chat", "-t", temperature, "-p", top_p, "-s", seed, "-n", "128",
        "-y", "Be nice", "-i", "Hello", stdin=b"",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == golden.read_bytes()
