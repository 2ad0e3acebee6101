"""Generate's chat form: ``messages`` ({role, content}) instead of a prompt, rendered by a GGUF
model's chat template, end to end. The request checks them (declared once,
contract/generation_request.py), the engine renders them (wasm == native), the derived seed
covers them, a receipt records them and ``receipt verify`` replays them (and refuses a forged
one), and the node's GraphQL and SSE ``generate`` and ``edgechain generate`` take them, every
mistake one typed error."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from network_cli_helpers import edgechain
from serve_helpers import NodeProcess, file_input, running_node, stream_generation

from edgechain.chain import Network
from edgechain.client import Client
from edgechain.contract.generation_request import ChatMessage as RequestMessage
from edgechain.contract.generation_request import GenerationRequest
from edgechain.contract.story_book import token_ids_hash
from edgechain.errors import ChatTemplateError, InvalidParameter, ReceiptMismatch
from edgechain.service.engine import ChatMessage, GenerationParams, open_engine
from edgechain.service.query import GenerateQuery
from edgechain.service.receipt import Receipt, build_receipt, verify_receipt
from edgechain.testing.chat_templates import TEMPLATES
from edgechain.testing.synth import shape_named
from edgechain.testing.synth_gguf import synthesize_gguf
from edgechain.testing.weight_server import WeightServer

DIALOGUE = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Tell me a story"},
]
RENDERED = (
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nTell me a story<|im_end|>\n"
    "<|im_start|>assistant\n"
)


# --- the request ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"messages": []}, "messages: the list is empty"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role must be one of"),
        ({"messages": [{"role": "user"}]}, "exactly the keys role and content"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content must be text"),
        ({"messages": "hi"}, "must be a list"),
        (
            {"prompt": "x", "messages": [{"role": "user", "content": "x"}]},
            "either a prompt or messages, not both",
        ),
        ({"messages": [{"role": "user", "content": "x" * 70000}]}, "longer than 65536 bytes"),
    ],
)
def test_bad_messages_are_invalid_parameters(fields: dict, fragment: str) -> None:
    with pytest.raises(InvalidParameter) as err:
        GenerationRequest(model="m", **fields)
    assert fragment in str(err.value)


def test_messages_are_normalised_and_covered_by_the_seed() -> None:
    query = GenerateQuery(model="m", messages=DIALOGUE)
    assert query.messages == (
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Tell me a story"),
    )
    assert RequestMessage is ChatMessage  # one record for the request and the engine
    assert query.to_dict()["messages"] == DIALOGUE
    other = GenerateQuery(model="m", messages=[{"role": "user", "content": "Tell me a story"}])
    seed = query.seed_query("1")
    assert seed.params["messages"] == [["system", "Be brief."], ["user", "Tell me a story"]]
    assert other.seed_query("1") != seed
    # A prompt's seed inputs are what they were before messages existed.
    assert "messages" not in GenerateQuery(model="m", prompt="x").seed_query("1").params


# --- the service: generate, receipt, verify ---------------------------------------------------


@pytest.fixture(scope="module")
def chat_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic GGUF files: ChatML's template (qwen3), and none (llama)."""
    out = tmp_path_factory.mktemp("chat_models")
    files = {"chat": out / "chat.gguf", "plain": out / "plain.gguf"}
    chatml = TEMPLATES["chatml"]
    synthesize_gguf(shape_named("260K"), "qwen3", 3, files["chat"], chat_template=chatml)
    synthesize_gguf(shape_named("260K"), "llama", 5, files["plain"])
    return files


@pytest.fixture(scope="module")
def network(
    tmp_path_factory: pytest.TempPathFactory, chat_files: dict[str, Path]
) -> Path:
    path = tmp_path_factory.mktemp("chat_net") / "net"
    net = Network.create(path, validators=4)
    with Client(net, cache_dir=path.parent / "cache") as client:
        for name, file in chat_files.items():
            client.publish_model(name, weights=file, blobs=True)
    return path


def _client(network: Path, engine: str) -> Client:
    return Client(
        Network.open(network), engine=open_engine(engine), cache_dir=network.parent / "cache"
    )


@pytest.mark.parametrize("engine", ["wasm", "native"])
def test_messages_generate_the_rendered_dialogue_and_their_receipt_verifies(
    network: Path, chat_files: dict[str, Path], engine: str, tmp_path: Path
) -> None:
    query = GenerateQuery(model="chat", messages=DIALOGUE, max_tokens=16, temperature=0.9)
    with _client(network, engine) as client:
        stream = client.generate(query)
        record = stream.collect()
        assert record.output_tokens == len(stream.token_ids) > 0
        receipt = build_receipt(stream)
        # What ran is the template's rendering: the engine's own answer to the same messages.
        loaded = client.service.engine.load_files(chat_files["chat"], None)
        try:
            assert loaded.render_chat([ChatMessage(**m) for m in DIALOGUE]) == RENDERED
            params = GenerationParams(
                seed=stream.seed, max_tokens=16, temperature=0.9, top_p=0.9
            )
            answer = loaded.generate([ChatMessage(**m) for m in DIALOGUE], params)
            assert [t.id for t in answer] == stream.token_ids
        finally:
            loaded.close()
        body = receipt.body
        assert body["messages"] == DIALOGUE and body["prompt"] == ""
        assert "messages" in body["seed"]["inputs"]
        path = tmp_path / "r.json"
        receipt.save(path)
        assert verify_receipt(Receipt.load(path), client).tokens == len(stream.token_ids)
        # The other engine replays it to the same verdict.
    other = "native" if engine == "wasm" else "wasm"
    with _client(network, other) as client:
        assert verify_receipt(Receipt.load(path), client).tokens == len(stream.token_ids)


@pytest.mark.parametrize("engine", ["wasm", "native"])
def test_a_messages_claim_is_verified_as_its_replay(
    chat_files: dict[str, Path], engine: str
) -> None:
    messages = [ChatMessage(**m) for m in DIALOGUE]
    params = GenerationParams(seed=11, max_tokens=10, temperature=1.0, top_p=0.9)
    with open_engine(engine).load_files(chat_files["chat"], None) as model:
        ids = [t.id for t in model.generate(messages, params)]
        assert len(ids) == 10
        verdict = model.verify_claim(messages, params, ids)
        assert verdict.valid and verdict.matched == 10 and verdict.expected is None
        short = model.verify_claim(messages, params, ids[:4])
        assert (short.valid, short.matched, short.expected) == (False, 4, ids[4])
        wrong = [*ids[:6], (ids[6] + 1) % 512, *ids[7:]]
        differs = model.verify_claim(messages, params, wrong)
        assert (differs.valid, differs.matched, differs.expected) == (False, 6, ids[6])
        longer = model.verify_claim(messages, params, [*ids, 5])
        assert (longer.valid, longer.matched, longer.expected) == (False, 10, None)
        # A chat of messages takes hints like a prompt: right or wrong, the same answer.
        for hint in (ids, wrong, ids[:3]):
            assert [t.id for t in model.generate(messages, params, hint=hint)] == ids


def _forged(receipt: Receipt, change: dict) -> Receipt:
    body = json.loads(json.dumps(receipt.body))
    for where, value in change.items():
        target = body
        *path, last = where.split(".")
        for key in path:
            target = target[key]
        target[last] = value
    return Receipt(body, receipt.stated_hash)


def test_a_forged_messages_receipt_is_refused(network: Path) -> None:
    query = GenerateQuery(model="chat", messages=DIALOGUE, max_tokens=12, seed=7)
    with _client(network, "native") as client:
        stream = client.generate(query)
        stream.collect()
        receipt = build_receipt(stream)
        ids = list(receipt.token_ids)
        swapped = [ids[0] + 1 if ids[0] + 1 < 512 else ids[0] - 1, *ids[1:]]
        forgeries = {
            "a token": {"output.token_ids": swapped},
            "the messages": {"messages": [{"role": "user", "content": "Tell me a story"}]},
        }
        for what, change in forgeries.items():
            forged = _forged(receipt, change)
            if "output.token_ids" in change:
                forged.body["output"]["token_ids_blake3"] = token_ids_hash(swapped)
            with pytest.raises(ReceiptMismatch) as err:
                verify_receipt(forged, client)
            assert "token" in str(err.value) or "hash" in str(err.value), (what, err.value)
        # The messages moved into the prompt: a different query, refused too.
        moved = _forged(receipt, {"prompt": RENDERED})
        del moved.body["messages"]
        with pytest.raises(ReceiptMismatch):
            verify_receipt(moved, client)


def test_a_model_without_a_template_is_a_chat_template_error(network: Path) -> None:
    with _client(network, "wasm") as client, pytest.raises(ChatTemplateError) as err:
        client.generate(GenerateQuery(model="plain", messages=DIALOGUE, max_tokens=4)).collect()
    assert "no chat template" in str(err.value)


def test_a_story_is_not_minted_from_messages(network: Path) -> None:
    query = GenerateQuery(model="chat", messages=DIALOGUE, max_tokens=4)
    with _client(network, "wasm") as client, pytest.raises(InvalidParameter) as err:
        client.mint_story(dataclasses.replace(query))
    assert "not messages" in str(err.value)


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_generates_from_messages_and_its_receipt_verifies(
    network: Path, tmp_path: Path
) -> None:
    receipt = tmp_path / "r.json"
    result = edgechain(
        "generate", "--model", "chat", "--messages", json.dumps(DIALOGUE), "-n", "8", "-s", "3",
        "--dir", network, "--receipt", receipt, "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert result.json()["output_tokens"] == 8
    verified = edgechain("receipt", "verify", receipt, "--dir", network, "--engine", "native")
    assert verified.code == 0, verified.err
    empty = edgechain("generate", "--model", "chat", "--messages", "[]", "--dir", network)
    empty.assert_user_error(InvalidParameter.exit_code, "the list is empty")
    both = edgechain(
        "generate", "--model", "chat", "-i", "x", "--messages", json.dumps(DIALOGUE),
        "--dir", network,
    )  # fmt: skip
    both.assert_user_error(InvalidParameter.exit_code, "not both")
    plain = edgechain(
        "generate", "--model", "plain", "--messages", json.dumps(DIALOGUE), "--dir", network
    )
    plain.assert_user_error(ChatTemplateError.exit_code, "no chat template")


# --- the node ---------------------------------------------------------------------------------

PUBLISH_GGUF = """
mutation Publish($name: String!, $w: FileInput!) {
  publishModel(name: $name, weights: $w, format: "gguf") { name }
}
"""
GENERATE = """
query Chat($messages: [MessageInput!], $prompt: String! = "") {
  generate(model: "chat", messages: $messages, prompt: $prompt, maxTokens: 8, seed: "5") {
    text prompt outputTokens receipt
  }
}
"""


@pytest.fixture(scope="module")
def chat_node(
    tmp_path_factory: pytest.TempPathFactory, chat_files: dict[str, Path]
) -> Iterator[NodeProcess]:
    from network_cli_helpers import make_network

    directory = make_network(tmp_path_factory.mktemp("chat_node") / "net")
    served = chat_files["chat"].parent
    with WeightServer(served) as server, running_node(directory) as node:
        for name, path in chat_files.items():
            node.data(PUBLISH_GGUF, {"name": name, "w": file_input(path, server.url(path.name))})
        yield node


def test_node_graphql_and_sse_generate_from_messages(chat_node: NodeProcess) -> None:
    result = chat_node.data(GENERATE, {"messages": DIALOGUE})["generate"]
    assert result["outputTokens"] == 8
    assert result["receipt"]["receipt"]["messages"] == DIALOGUE
    events = stream_generation(
        chat_node, model="chat", messages=json.dumps(DIALOGUE), maxTokens=8, seed=5
    )
    assert events[-1].event == "done", events[-1]
    assert "".join(e.data["text"] for e in events[:-1]) == result["text"]
    assert events[-1].data["receipt"] == result["receipt"]


@pytest.mark.parametrize(
    ("variables", "code", "fragment"),
    [
        ({"messages": []}, "InvalidParameter", "the list is empty"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "InvalidParameter", "role"),
        ({"messages": DIALOGUE, "prompt": "x"}, "InvalidParameter", "not both"),
    ],
)
def test_node_graphql_messages_errors_are_typed(
    chat_node: NodeProcess, variables: dict, code: str, fragment: str
) -> None:
    [error] = chat_node.graphql(GENERATE, variables)["errors"]
    assert error["extensions"]["code"] == code
    assert fragment in error["message"]


@pytest.mark.parametrize(
    ("params", "code", "fragment"),
    [
        ({"model": "plain", "messages": json.dumps(DIALOGUE)}, "ChatTemplateError", "no chat"),
        ({"model": "chat", "messages": "not json"}, "InvalidParameter", "JSON list"),
        ({"model": "chat", "messages": "[]"}, "InvalidParameter", "the list is empty"),
    ],
)
def test_node_sse_messages_errors_are_typed(
    chat_node: NodeProcess, params: dict, code: str, fragment: str
) -> None:
    events = stream_generation(chat_node, maxTokens=4, **params)
    assert [e.event for e in events] == ["error"]
    assert events[0].data["code"] == code
    assert fragment in events[0].data["message"]
