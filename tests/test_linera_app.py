"""The Linera application (linera_app/) conforms to the simulator.

The crate's cargo tests run here: its unit tests, and tests/conformance.rs, which applies
linera_app/tests/conformance.json's operations and queries through Linera's TestValidator (the
application built for wasm32, run by wasmer) and writes what happened to a JSON file. This test
applies the same sequence through the simulator and compares: the same accepted and rejected
operations, the same registry, the same query errors, greedy `generate` equal to llama2.c's text,
and a sampled `generate` whose seed (derived from Linera chain state with service/seed.py's
encoding) gives the same text on the simulator's engine.

Then issue 22 on two more chains (conformance.rs's `cross_chain`, and :func:`simulated_chains`
here): bob's registry follows alice's (Linera: the `models` event stream; the simulator: its
FollowRegistry messages) and certifies what alice registers and retires; alice mints a story; a
transfer to carol, whose registry certifies nothing, bounces back; a transfer to bob arrives.
Both sides must accept and reject the same steps and show the same registries and stories.

Needs the crate's toolchain (scripts/build_linera_app.sh, run by scripts/test.sh): a missing
build is built here, slowly, rather than skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chain_helpers import local_file_ref
from service_helpers import MODELS, STORIES

from edgechain.chain.keys import generate_key
from edgechain.client import Client
from edgechain.contract import RegisterModel, RetireModel
from edgechain.contract.story_book import Transfer
from edgechain.errors import EdgechainError
from edgechain.service.runtime import GenerateQuery
from edgechain.service.seed import SeedQuery, derive_seed
from edgechain.testing.models import stories260k_golden
from edgechain.testing.weight_server import WeightServer

REPO = Path(__file__).resolve().parents[1]
CRATE = REPO / "linera_app"
WEIGHTS, TOKENIZER = STORIES.weights, STORIES.tokenizer
GOLDEN = stories260k_golden(STORIES).decode("utf-8")
SPEC = json.loads((CRATE / "tests" / "conformance.json").read_text(encoding="utf-8"))
PROMPT = "Once upon a time"
#: The story the cross-chain scenario mints (conformance.rs's STORY_TOKENS).
STORY_QUERY = {"prompt": PROMPT, "temperature": 0.0, "max_tokens": 24}
#: The cross-chain scenario's steps (conformance.rs's `cross_chain`): None for an accepted one,
#: else what the simulator's refusal says (Linera's client sees a bare trap).
CROSS_CHAIN_STEPS: list[tuple[str, str | None]] = [
    ("bob follows alice", None),
    ("bob follows alice again", "this registry already follows chain"),
    ("carol follows carol", "a registry cannot follow its own chain"),
    ("alice registers version 3", None),
    ("alice retires version 3", None),
    ("alice mints a story", None),
    ("alice mints with a retired version", "model stories260K version 3 was retired"),
    ("a stranger transfers alice's story", "story 1 belongs to"),
    ("alice sends story 1 to carol", None),
    ("alice sends story 1 to bob", None),
    ("alice sends story 1 again", "there is no story 1"),
    ("bob gives it to alice on his chain", None),
]


@pytest.fixture(scope="module")
def linera(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The Linera side's outcomes: scripts/build_linera_app.sh --test writes them."""
    out = tmp_path_factory.mktemp("linera") / "conformance.json"
    env = dict(os.environ, EDGECHAIN_CONFORMANCE_OUT=str(out), EDGECHAIN_STORIES_DIR=str(MODELS))
    result = subprocess.run(
        [str(REPO / "scripts" / "build_linera_app.sh"), "--test"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-8000:]
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, WeightServer]]:
    net = tmp_path_factory.mktemp("sim") / "net"
    with WeightServer(MODELS) as server, Client.up(net, validators=4) as client:
        yield client, server


def _operation(step: dict[str, Any], server: WeightServer) -> RegisterModel | RetireModel:
    payload = dict(step["payload"])
    files = {
        "$weights": local_file_ref(WEIGHTS, server.url("stories260K.bin")),
        "$tokenizer": local_file_ref(TOKENIZER, server.url("tok512.bin")),
    }
    for key in ("weights", "tokenizer"):
        if isinstance(payload.get(key), str):
            payload[key] = files[payload[key]].to_payload()
    kind = RegisterModel if step["op"] == "RegisterModel" else RetireModel
    return kind.from_payload(payload)


@pytest.fixture(scope="module")
def simulated(simulator: tuple[Client, WeightServer]) -> list[tuple[bool, str | None]]:
    """Each step of the sequence through the simulator: (accepted, error message)."""
    client, server = simulator
    chain = client.network.default_chain()
    app = chain.application("model-registry")
    outcomes: list[tuple[bool, str | None]] = []
    for step in SPEC["operations"]:
        signer = generate_key() if step["signer"] == "other" else None
        try:
            chain.execute(app.id, _operation(step, server), signer=signer)
            outcomes.append((True, None))
        except EdgechainError as err:
            outcomes.append((False, f"{type(err).__name__}: {err}"))
    return outcomes


def test_the_same_operations_are_accepted_and_rejected(linera, simulated):
    for step, (accepted, message), theirs in zip(
        SPEC["operations"], simulated, linera["steps"], strict=True
    ):
        assert accepted == (step["expect"] == "ok"), (step, message)
        assert theirs["accepted"] == accepted, (step, theirs["error"])
        if not accepted:
            assert step["error"] in message, (step, message)
            # Linera reports a bare trap; the rule's message is checked on the same code natively.
            if theirs["rule_error"] is not None:
                assert message == f"OperationRejected: {theirs['rule_error']}"


def _heights_out(text: str) -> str:
    # Heights count blocks; Linera's chain also holds the application's creation.
    return re.sub(r"height \d+", "height N", text)


def test_the_registries_are_the_same(linera, simulator, simulated):
    client, _ = simulator
    app = client.network.default_chain().application("model-registry")
    ours = _model_rows(app.list_models(), with_license=True)
    assert ours == _linera_model_rows(linera["models"], with_license=True)
    assert len(ours) == 3


def test_queries_give_the_same_models_and_errors(linera, simulator, simulated):
    client, _ = simulator
    app = client.network.default_chain().application("model-registry")
    for query, theirs in zip(SPEC["queries"], linera["queries"], strict=True):
        try:
            model = app.query_model(query["name"], query["version"])
            ours: tuple[str, str] = ("ok", model.entry.version)
        except EdgechainError as err:
            ours = (type(err).__name__, _heights_out(str(err)))
        if "errors" in theirs:
            error = theirs["errors"][0]
            got = (error["extensions"]["code"], _heights_out(error["message"]))
        else:
            got = ("ok", theirs["data"]["model"]["version"])
        assert got == ours, query


def test_greedy_generate_on_linera_prints_the_simulators_text(linera):
    greedy = linera["greedy"]
    assert PROMPT + greedy["text"] + "\n" == GOLDEN
    assert greedy["model"]["version"] == "2"


def test_a_derived_seed_gives_the_same_tokens_on_both(linera, simulator, simulated):
    sampled = linera["sampled"]
    model = sampled["model"]
    seed_query = SeedQuery(
        model="stories260K",
        version=model["version"],
        prompt=PROMPT,
        params={"temperature": 0.8, "top_p": 0.9, "repeat_penalty": 1.0, "repeat_window": 64},
    )
    block = f"height:{model['height']}"
    seed = derive_seed(model["chainId"], block, model["applicationId"], seed_query)
    assert int(sampled["seed"]) == seed
    client, _ = simulator
    query = GenerateQuery(
        model="stories260K", version=model["version"], prompt=PROMPT, max_tokens=40, seed=seed
    )
    stream = client.generate(query)
    for _ in stream:
        pass
    assert stream.record is not None
    assert stream.record.text == sampled["text"]
    assert stream.record.output_tokens == sampled["outputTokens"]


def _on(client: Client, chain: str) -> Client:
    """A client of the same network acting on ``chain`` (one process, like a wallet)."""
    return Client(client.network, chain=chain, fetch_policy=client.fetch_policy)


def _replay(client: Client, server: WeightServer) -> None:
    """conformance.json's operations on ``client``'s chain (the rejected ones change nothing)."""
    chain = client.network.default_chain()
    app = chain.application("model-registry")
    for step in SPEC["operations"]:
        signer = generate_key() if step["signer"] == "other" else None
        with contextlib.suppress(EdgechainError):
            chain.execute(app.id, _operation(step, server), signer=signer)


def _model_rows(models: Any, with_license: bool = False) -> list[tuple[Any, ...]]:
    """The simulator's certified entries as comparable rows (the license where both sides
    keep it)."""
    return _linera_model_rows(
        (
            {
                "name": m.entry.name,
                "version": m.entry.version,
                "weights": {"blake3": m.entry.weights.blake3, "size": m.entry.weights.size},
                "tokenizer": {"blake3": m.entry.tokenizer.blake3, "size": m.entry.tokenizer.size},
                "description": m.entry.description,
                "license": m.entry.license,
                "retired": m.entry.retired,
            }
            for m in models
        ),
        with_license,
    )


def _linera_model_rows(models: Any, with_license: bool = False) -> list[tuple[Any, ...]]:
    """Entries as Linera's service answers them (JSON), as comparable rows."""
    return sorted(
        (
            m["name"],
            m["version"],
            m["weights"]["blake3"],
            int(m["weights"]["size"]),
            m["tokenizer"]["blake3"],
            int(m["tokenizer"]["size"]),
            m["description"],
            *([m["license"]] if with_license else []),
            m["retired"],
        )
        for m in models
    )


@pytest.fixture(scope="module")
def simulated_chains(
    tmp_path_factory: pytest.TempPathFactory, simulator: tuple[Client, WeightServer]
) -> Iterator[dict[str, Any]]:
    """conformance.rs's cross-chain scenario through the simulator, on a network of its own
    whose default chain (alice's) took conformance.json's operations first, as on Linera."""
    _, server = simulator
    net = tmp_path_factory.mktemp("sim-chains") / "net"
    with Client.up(net, validators=4) as alice:
        _replay(alice, server)
        alice.open_chain("bob")
        alice.open_chain("carol")
        bob, carol = _on(alice, "bob"), _on(alice, "carol")
        names = {
            alice.chain.owner.hex(): "alice",
            bob.chain.owner.hex(): "bob",
            carol.chain.owner.hex(): "carol",
        }
        registry = alice.chain.application("model-registry").id
        steps: list[dict[str, Any]] = []

        def step(name: str, action: Any) -> None:
            try:
                action()
                steps.append({"step": name, "accepted": True})
            except EdgechainError as err:
                steps.append({"step": name, "accepted": False, "error": f"{err}"})

        def stories(client: Client) -> list[dict[str, Any]]:
            return [
                {
                    "id": str(s.id),
                    "owner": names.get(s.owner, "someone else"),
                    "model": s.model,
                    "version": s.version,
                    "prompt": s.prompt,
                    "text": s.text,
                    "tokens": s.tokens,
                }
                for s in client.stories()
            ]

        def register_third() -> None:
            step_spec = {
                "op": "RegisterModel",
                "payload": {
                    "name": "stories260K",
                    "version": "3",
                    "format": "llama2c",
                    "weights": "$weights",
                    "tokenizer": "$tokenizer",
                    "description": "third version",
                    "license": None,
                },
            }
            alice.chain.execute(registry, _operation(step_spec, server))

        def stranger_transfer() -> None:
            story_book = alice.chain.app_id("story-book")
            transfer = Transfer(1, bob.chain.owner.hex())
            alice.chain.execute(story_book, transfer, signer=generate_key())

        def mint(version: str) -> None:
            alice.mint_story(GenerateQuery(model="stories260K", version=version, **STORY_QUERY))

        step("bob follows alice", lambda: bob.follow_registry("default"))
        step("bob follows alice again", lambda: bob.follow_registry("default"))
        step("carol follows carol", lambda: carol.follow_registry("carol"))
        alice.process_inbox()  # takes bob's request (Linera: no step, a subscription is local)
        bob.process_inbox()
        followed = bob.models()
        step("alice registers version 3", register_third)
        step("alice retires version 3", lambda: alice.retire_model("stories260K", "3"))
        bob.process_inbox()
        bob_models = bob.models()
        bob_queries = []
        for version in (None, "3"):
            try:
                bob_queries.append(("ok", bob.model("stories260K", version).entry.version))
            except EdgechainError as err:
                bob_queries.append((type(err).__name__, _heights_out(str(err))))
        step("alice mints a story", lambda: mint("2"))
        step("alice mints with a retired version", lambda: mint("3"))
        step("a stranger transfers alice's story", stranger_transfer)
        carol_key = carol.chain.owner.hex()
        step("alice sends story 1 to carol", lambda: alice.transfer_story(1, carol_key, "carol"))
        snapshots = [{"at": "sent to carol", "alice": stories(alice)}]
        refused = carol.process_inbox() is not None
        bounced = alice.process_inbox() is not None
        snapshots.append(
            {
                "at": "carol refused",
                "carol_took_its_inbox": refused,
                "alice_took_the_bounce": bounced,
                "alice": stories(alice),
                "carol": stories(carol),
            }
        )
        bob_key = bob.chain.owner.hex()
        step("alice sends story 1 to bob", lambda: alice.transfer_story(1, bob_key, "bob"))
        arrived = bob.process_inbox() is not None
        snapshots.append(
            {
                "at": "bob took it",
                "bob_took_its_inbox": arrived,
                "alice": stories(alice),
                "bob": stories(bob),
            }
        )
        step("alice sends story 1 again", lambda: alice.transfer_story(1, bob_key, "bob"))
        alice_key = alice.chain.owner.hex()
        step("bob gives it to alice on his chain", lambda: bob.transfer_story(1, alice_key))
        snapshots.append({"at": "bob gave it", "bob": stories(bob)})
        yield {
            "steps": steps,
            "followed": followed,
            "bob_models": bob_models,
            "bob_queries": bob_queries,
            "stories": snapshots,
        }


def test_both_take_and_refuse_the_same_cross_chain_steps(linera, simulated_chains):
    theirs = linera["chains"]["steps"]
    ours = simulated_chains["steps"]
    assert [s["step"] for s in theirs] == [name for name, _ in CROSS_CHAIN_STEPS]
    assert [s["step"] for s in ours] == [name for name, _ in CROSS_CHAIN_STEPS]
    for (name, refusal), mine, other in zip(CROSS_CHAIN_STEPS, ours, theirs, strict=True):
        assert mine["accepted"] == (refusal is None), (name, mine)
        assert other["accepted"] == (refusal is None), name
        if refusal is not None:
            assert refusal in mine["error"], (name, mine)


def test_bobs_registry_follows_alices_stream_as_the_simulators(linera, simulated_chains):
    chains = linera["chains"]
    assert chains["bob_following_alice"] is True
    followed = _model_rows(simulated_chains["followed"])
    assert _linera_model_rows(chains["bob_models_followed"]) == followed
    assert [row[:2] for row in followed] == [
        ("stories260K", "1"),
        ("stories260K", "2"),
        ("tiny", "0.1.0"),
    ]
    # After alice registered and retired version 3, bob's registry has it too, retired.
    later = _model_rows(simulated_chains["bob_models"])
    assert _linera_model_rows(chains["bob_models"]) == later
    assert ("stories260K", "3") in [row[:2] for row in later]
    assert [row[-1] for row in later if row[1] == "3"] == [True]


def test_bobs_queries_answer_as_the_simulators(linera, simulated_chains):
    ours = simulated_chains["bob_queries"]
    theirs = []
    for response in linera["chains"]["bob_queries"]:
        if "errors" in response:
            error = response["errors"][0]
            theirs.append((error["extensions"]["code"], _heights_out(error["message"])))
        else:
            theirs.append(("ok", response["data"]["model"]["version"]))
    assert theirs == ours
    assert ours[0] == ("ok", "2")
    assert ours[1][0] == "ModelRetired"


def test_a_story_bounces_off_carol_and_moves_to_bob_on_both(linera, simulated_chains):
    theirs = linera["chains"]["stories"]
    ours = simulated_chains["stories"]
    assert theirs == ours
    sent, refused, arrived, given = ours
    assert sent["alice"] == []  # in flight
    assert refused["carol"] == [] and [s["owner"] for s in refused["alice"]] == ["alice"]
    assert refused["carol_took_its_inbox"] and refused["alice_took_the_bounce"]
    # On Linera, carol's block cannot accept it: her client rejects the bundle, which bounces.
    assert linera["chains"]["carol_could_accept"] is False
    assert arrived["alice"] == [] and [s["owner"] for s in arrived["bob"]] == ["bob"]
    [story] = given["bob"]
    assert (story["id"], story["owner"], story["tokens"]) == ("1", "alice", 24)
    assert PROMPT + story["text"] == GOLDEN[: len(PROMPT + story["text"])]
