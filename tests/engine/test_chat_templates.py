"""Chats in a GGUF file's own chat template (``tokenizer.chat_template``), on both engines:
the renderings of the ChatML, Llama 3 and Zephyr families against hand-written text, special
tokens' texts as their single ids, later turns appended as the rendering's new suffix (the KV
cache kept) or, for a template that rewrites earlier text, as the whole rendering, wasm ==
native token for token, and every template failure a ChatTemplateError."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_helpers import assert_clean_error, run_cli

from edgechain.errors import ChatTemplateError, InvalidParameter
from edgechain.service.engine import ChatMessage, Engine, GenerationParams, LoadedModel
from edgechain.testing.chat_templates import TEMPLATES
from edgechain.testing.synth import shape_named
from edgechain.testing.synth_gguf import synthesize_gguf

#: The file each template is embedded in: (architecture, seed).
FILES = {
    "chatml": ("qwen3", 3),
    "llama3": ("qwen2", 4),
    "zephyr": ("llama", 5),
    "strict": ("llama", 5),
    # Not prefix-stable: the count of messages comes first.
    "counting": ("qwen3", 3),
    "broken": ("qwen3", 3),
    None: ("qwen3", 3),
}
EXTRA = {
    "counting": "{{ messages | length }}{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n",
    "broken": "{% for m in messages %}{{ m.content }",
}


def msgs(*pairs: tuple[str, str]) -> list[ChatMessage]:
    return [ChatMessage(role, content) for role, content in pairs]


@pytest.fixture(scope="module")
def gguf_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str | None, Path]:
    out = tmp_path_factory.mktemp("templates")
    files = {}
    for name, (arch, seed) in FILES.items():
        path = out / f"{name or 'none'}.gguf"
        source = TEMPLATES.get(name) if name in TEMPLATES else EXTRA.get(name)
        synthesize_gguf(shape_named("260K"), arch, seed, path, chat_template=source)
        files[name] = path
    return files


@pytest.fixture(scope="module", params=["wasm", "native"])
def models(
    request: pytest.FixtureRequest, gguf_files: dict[str | None, Path]
) -> Iterator[dict[str | None, LoadedModel]]:
    engine: Engine = request.getfixturevalue(f"{request.param}_engine")
    loaded = {name: engine.load_files(path, None) for name, path in gguf_files.items()}
    yield loaded
    for model in loaded.values():
        model.close()


DIALOGUE = msgs(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "Bye"))

EXPECTED = {
    "chatml": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
    "<|im_start|>assistant\n",
    "llama3": "<|endoftext|><|start_header_id|>system<|end_header_id|>\n\n"
    "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "zephyr": "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n"
    "<|user|>\nBye</s>\n<|assistant|>\n",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_family_renders_as_its_models_do(
    models: dict[str | None, LoadedModel], name: str
) -> None:
    assert models[name].render_chat(DIALOGUE) == EXPECTED[name]


def test_without_the_generation_prompt_and_the_default_system_message(
    models: dict[str | None, LoadedModel],
) -> None:
    rendered = models["chatml"].render_chat(msgs(("user", "Hi")), add_generation_prompt=False)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
    )
    zephyr = models["zephyr"].render_chat(msgs(("user", "Hi")), add_generation_prompt=False)
    assert zephyr == "<|user|>\nHi</s>\n"


def test_a_chat_of_messages_is_a_generation_of_its_rendering(
    models: dict[str | None, LoadedModel],
) -> None:
    """A gpt2 vocabulary parses special tokens in a prompt too, and adds no BOS: the chat's
    first greedy answer is generate()'s answer to the rendered text, token for token (sampled
    ones differ: a chat spends a draw at every forced position, as run.c's chat)."""
    model = models["chatml"]
    params = GenerationParams(temperature=0, max_tokens=12)
    first = msgs(("user", "Hi there"))
    chat = model.chat(first, params)
    chat_ids = [t.id for t in chat]
    plain = model.generate(model.render_chat(first), params)
    assert chat_ids == [t.id for t in plain]
    assert chat.prompt_tokens == len(model.encode(model.render_chat(first), bos=False))


def test_special_token_texts_are_single_ids_in_a_llama_vocabulary(
    models: dict[str | None, LoadedModel],
) -> None:
    """Zephyr's ``</s>`` after each message is EOS (id 2), not its characters: the prompt is
    BOS, the text before it, 2, the text after it (each encoded as run.c does)."""
    model = models["zephyr"]
    chat = model.chat(msgs(("user", "Hi")), GenerationParams(temperature=0, max_tokens=1))
    list(chat)
    before = model.encode("<|user|>\nHi", bos=True)
    after = model.encode("\n<|assistant|>\n", bos=False)
    assert chat.prompt_tokens == len(before) + 1 + len(after)
    assert len(model.encode("</s>", bos=False)) > 1  # as plain text it would be several


@pytest.mark.parametrize("name", ["chatml", "llama3", "zephyr"])
def test_a_later_turn_feeds_only_the_rendering_s_new_suffix(
    models: dict[str | None, LoadedModel], name: str
) -> None:
    model = models[name]
    first = msgs(("user", "Hi"))
    answer = model.chat(first, GenerationParams(temperature=0, max_tokens=6))
    answer_ids = [t.id for t in answer]
    fed_before = answer.prompt_tokens + len(answer_ids)
    follow = answer.follow_up(msgs(("user", "Bye")))
    list(follow)
    dialogue = [*first, ChatMessage("assistant", answer.text), *msgs(("user", "Bye"))]
    whole = model.render_chat(dialogue)
    previous = model.render_chat(first) + answer.text
    if whole.startswith(previous):
        suffix = whole[len(previous) :]
        if name == "zephyr":  # the llama vocabulary: EOS's text is id 2, text between encoded
            parts = suffix.split("</s>")
            assert parts[0] == "" and len(parts) == 3, suffix
            expected = 2 + sum(len(model.encode(p, bos=False)) for p in parts)
        else:
            expected = len(model.encode(suffix, bos=False))
        assert follow.prompt_tokens == fed_before + expected
    else:  # Llama 3 trims the answer: the whole rendering is fed again
        assert name == "llama3", whole
        assert follow.prompt_tokens == len(model.encode(whole, bos=False))


def test_a_template_that_rewrites_earlier_text_feeds_the_whole_rendering(
    models: dict[str | None, LoadedModel],
) -> None:
    model = models["counting"]
    answer = model.chat(msgs(("user", "Hi")), GenerationParams(temperature=0, max_tokens=4))
    list(answer)
    follow = answer.follow_up(msgs(("user", "Bye")))
    ids = [t.id for t in follow]
    dialogue = msgs(("user", "Hi"), ("assistant", answer.text), ("user", "Bye"))
    assert follow.prompt_tokens == len(model.encode(model.render_chat(dialogue), bos=False))
    # Same answer as a chat started from the whole dialogue: the cache kept is exact.
    fresh = model.chat(dialogue, GenerationParams(temperature=0, max_tokens=4))
    assert ids == [t.id for t in fresh]


@pytest.mark.parametrize("name", ["chatml", "llama3", "zephyr", "counting"])
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_wasm_and_native_chat_the_same_tokens(
    wasm_engine: Engine,
    native_engine: Engine,
    gguf_files: dict[str | None, Path],
    name: str,
    temperature: float,
) -> None:
    params = GenerationParams(temperature=temperature, top_p=0.9, seed=11, max_tokens=10)
    runs = []
    for engine in (wasm_engine, native_engine):
        with engine.load_files(gguf_files[name], None) as model:
            answer = model.chat(msgs(("system", "S"), ("user", "Hi")), params)
            turns = [[t.id for t in answer]]
            for user in ("Why?", "Bye"):
                answer = answer.follow_up(msgs(("user", user)))
                turns.append([t.id for t in answer])
                turns.append([answer.prompt_tokens, answer.text])
            runs.append(turns)
    assert runs[0] == runs[1]


def test_template_failures_are_chat_template_errors(
    models: dict[str | None, LoadedModel],
) -> None:
    params = GenerationParams(temperature=0, max_tokens=2)
    with pytest.raises(ChatTemplateError, match="the template raised: Conversation roles must"):
        models["strict"].chat(msgs(("assistant", "x")), params)
    with pytest.raises(ChatTemplateError, match="syntax error"):
        models["broken"].chat(msgs(("user", "x")), params)
    with pytest.raises(ChatTemplateError, match="no chat template"):
        models[None].chat(msgs(("user", "x")), params)
    with pytest.raises(ChatTemplateError, match="no chat template"):
        models[None].render_chat(msgs(("user", "x")))
    # The broken template's model still generates from a plain prompt.
    assert len(list(models["broken"].generate("Hi", params))) == 2
    # A raise in a later turn leaves the chat as it was: it can take a valid turn.
    answer = models["strict"].chat(msgs(("user", "a")), params)
    list(answer)
    with pytest.raises(ChatTemplateError, match="roles must alternate"):
        answer.follow_up(msgs(("assistant", "b")))


def test_messages_need_a_template_chat_and_rendered_turns_a_plain_one(
    models: dict[str | None, LoadedModel], model_260k: LoadedModel
) -> None:
    params = GenerationParams(temperature=0, max_tokens=2)
    with pytest.raises(ChatTemplateError, match="no chat template"):
        model_260k.chat(msgs(("user", "x")), params)
    plain = models["chatml"].chat("<|im_start|>user\nHi<|im_end|>\n", params)
    list(plain)
    templated = models["chatml"].chat(msgs(("user", "x")), params)
    list(templated)
    with pytest.raises(InvalidParameter, match="takes messages"):
        templated.follow_up("text")
    with pytest.raises(InvalidParameter):
        plain.follow_up(msgs(("user", "x")))
    with pytest.raises(InvalidParameter, match="at least one message"):
        models["chatml"].chat([], params)


def test_run_chat_uses_the_file_s_template(gguf_files: dict[str | None, Path]) -> None:
    for engine in ("wasm", "native"):
        result = run_cli(
            "run", gguf_files["chatml"], "-m", "chat", "-y", "", "-t", "0", "-n", "60",
            "--engine", engine, stdin=b"Hi\n",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(b"User: Assistant: ")
    failed = run_cli("run", gguf_files[None], "-m", "chat", "-y", "", stdin=b"Hi\n")
    assert_clean_error(failed, 3, "no chat template")
