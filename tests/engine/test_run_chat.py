"""`edgechain run -m chat`: run.c's chat mode (Llama 2's [INST] template, user turns on stdin).

There is no golden output for chat: these check the template's tokens, that a conversation
runs to its end, and that both engines say the same thing.
"""

from __future__ import annotations

import pytest
from engine_helpers import assert_clean_error, run_cli

from edgechain.service.engine import GenerationParams, LoadedModel
from edgechain.service.engine.chat import ChatSession, render_turn
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
    assert chat.dialogue == [rendered, answer, " [INST] And then? [/INST]"]
    assert second.prompt_tokens == len(model_260k.encode("".join(chat.dialogue), bos=True))
    second.cancel()


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
    assert out.count("User: ") == 2  # asked twice; the second read hits the end of stdin
    assert "Enter system prompt" not in out


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
