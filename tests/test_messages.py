"""Microchains and the messages between them (chain/messages.py): a token application sends
tracked messages from alice's chain to bob's, bob's inbox takes them in order and exactly once,
a refused credit bounces back, validators refuse invented, reordered or repeated bundles, and
every chain re-verifies with its messages."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from network_cli_helpers import edgechain, make_network

from edgechain.chain.block import Block, Operation, Proposal, sign_proposal
from edgechain.chain.keys import generate_key
from edgechain.chain.messages import IncomingBundle, Message
from edgechain.chain.validator import ProposalRefused
from edgechain.client import Client
from edgechain.errors import OperationRejected, Unauthorized, UsageError

TOKENS = Path(__file__).parent / "apps" / "tokens"


@pytest.fixture
def net(tmp_path: Path) -> Path:
    return make_network(tmp_path / "net")


def _setup(client: Client) -> tuple[str, str]:
    """alice (the default chain) creates the tokens app and mints 100; bob's chain is opened.
    Returns (app id hex, bob's chain id hex)."""
    bob = client.open_chain("bob")
    module = client.publish_module(TOKENS).module_id
    app = client.create_application(module, parameters={"max_credit": 50}).application_id.hex()
    client.call_application(app, {"Mint": {"amount": 100}})
    return app, bob.id.hex()


def _transfer(client: Client, app: str, to_chain: str, amount: int, **options: object) -> None:
    """``client``'s chain sends ``amount`` of the tokens app to chain ``to_chain`` (hex id)."""
    client.call_application(app, {"Transfer": {"to_chain": to_chain, "amount": amount, **options}})


def _balance(client: Client, app: str) -> dict:
    return client.query_application(app, {"query": "{ balance received bounced }"})["data"]


def test_a_transfer_waits_in_the_inbox_then_executes_once(net: Path) -> None:
    with Client.open(net) as alice:
        app, bob_id = _setup(alice)
        _transfer(alice, app, bob_id, 30)
        assert _balance(alice, app)["balance"] == 70
    with Client.open(net, chain="bob") as bob:
        [bundle] = bob.inbox()
        assert [m.payload for m in bundle.messages] == [["Credit", {"amount": 30}]]
        certificate = bob.process_inbox()
        assert certificate is not None and certificate.height == 0
        # bob's chain learnt the application from the message: same id, its own state.
        assert _balance(bob, app) == {"balance": 30, "received": [30], "bounced": 0}
        assert bob.inbox() == [] and bob.process_inbox() is None  # taken once
        block = bob.chain.block(0).block
        assert len(block.incoming) == 1 and block.operations == ()
    assert edgechain("chain", "verify", "--dir", net).code == 0


def test_a_refused_tracked_message_bounces_back_to_its_sender(net: Path) -> None:
    with Client.open(net) as alice:
        app, bob_id = _setup(alice)
        _transfer(alice, app, bob_id, 20)
        _transfer(alice, app, bob_id, 60)
    with Client.open(net, chain="bob") as bob:
        bob.process_inbox()  # takes both bundles: 20 accepted, 60 refused (over max_credit)
        assert _balance(bob, app) == {"balance": 20, "received": [20], "bounced": 0}
        [bounce] = bob.chain.block(0).block.outgoing
        assert bounce.bouncing and bounce.recipient != bob.chain.id
    with Client.open(net) as alice:
        assert _balance(alice, app)["balance"] == 20  # 100 - 20 - 60, the bounce not yet taken
        alice.process_inbox()
        assert _balance(alice, app) == {"balance": 80, "received": [], "bounced": 1}
    assert edgechain("chain", "verify", "--dir", net).code == 0


def test_an_untracked_refused_message_is_lost_not_bounced(net: Path) -> None:
    with Client.open(net) as alice:
        app, bob_id = _setup(alice)
        _transfer(alice, app, bob_id, 60, tracked=False)
    with Client.open(net, chain="bob") as bob:
        bob.process_inbox()
        assert bob.chain.block(0).block.outgoing == ()
        # A rejected message changes nothing on bob's chain (it did not even learn the app).
        assert bob.applications() == []


def test_the_owners_next_block_takes_the_inbox_with_its_operations(net: Path) -> None:
    with Client.open(net) as alice:
        app, bob_id = _setup(alice)
        _transfer(alice, app, bob_id, 10)
        _transfer(alice, app, bob_id, 5)
    with Client.open(net, chain="bob") as bob:
        bob.process_inbox()
        _transfer(bob, app, alice_id(net), 15)
    with Client.open(net) as alice:
        alice.call_application(app, {"Mint": {"amount": 1}})  # takes bob's transfer too
        assert _balance(alice, app)["balance"] == 100 - 15 + 15 + 1
        assert len(alice.chain.block(alice.chain.height - 1).block.incoming) == 1


def alice_id(net: Path) -> str:
    with Client.open(net) as client:
        return client.chain.id.hex()


def test_a_message_to_a_chain_that_does_not_exist_stores_nothing(net: Path) -> None:
    with Client.open(net) as alice:
        app, _ = _setup(alice)
        height = alice.chain.height
        with pytest.raises(UsageError, match="which does not exist"):
            _transfer(alice, app, "ab" * 32, 1)
        assert alice.chain.height == height
        assert _balance(alice, app)["balance"] == 100


def test_only_the_owner_processes_a_chains_inbox(net: Path) -> None:
    with Client.open(net) as client:
        client.open_chain("carol", owner="cd" * 32)  # someone else's key
    with (
        Client.open(net, chain="carol") as carol,
        pytest.raises(Unauthorized, match="you do not own chain 'carol'"),
    ):
        carol.process_inbox()
    result = edgechain("chain", "process-inbox", "--chain", "carol", "--dir", net)
    assert result.code == 5 and "you do not own chain 'carol'" in result.err
    assert "Traceback" not in result.err


def _propose_raw(
    client: Client, chain_name: str, incoming: tuple, operations: tuple = ()
) -> None:
    """Ask the validators to vote on a block with ``incoming`` and ``operations`` built by hand
    (no client checks)."""
    chain = client.network.chain(chain_name)
    key = chain.owner_key()
    block = Block(
        chain.id, chain.height, chain.head_hash, chain.head.timestamp_us + 1, operations,
        key.public_key().public_bytes_raw(), chain.state_hash, incoming, (),
    )  # fmt: skip
    proposal = Proposal(block, sign_proposal(block, key), block.hash())
    client.network.validators[0].handle_proposal(proposal)


def test_only_a_chains_owner_proposes_its_blocks(net: Path) -> None:
    with Client.open(net) as alice:
        app, _ = _setup(alice)
        chain = alice.network.chain("default")
        height = chain.height
        mint = Operation(bytes.fromhex(app), "Mint", {"amount": 5})
        with pytest.raises(Unauthorized, match="only chain 'default''s owner"):
            chain.propose([mint], signer=generate_key())  # the tokens contract itself lets anyone
        assert chain.height == height
        assert _balance(alice, app)["balance"] == 100


def test_validators_refuse_invented_skipped_reordered_and_repeated_bundles(net: Path) -> None:
    with Client.open(net) as alice:
        app, bob_id = _setup(alice)
        for amount in (30, 10):
            _transfer(alice, app, bob_id, amount)
        first, second = alice.network.chain("bob").inbox()
        more = dataclasses.replace(first.messages[0], payload=["Credit", {"amount": 1000}])
        with pytest.raises(ProposalRefused, match="not the ones that block sent here"):
            _propose_raw(alice, "bob", (dataclasses.replace(first, messages=(more,)),))
        invented = IncomingBundle(first.origin, first.height + 9, first.block_hash, first.messages)
        with pytest.raises(ProposalRefused, match="no certified block there"):
            _propose_raw(alice, "bob", (invented,))
        with pytest.raises(ProposalRefused, match="has message 1 where 0 is next"):
            _propose_raw(alice, "bob", (second,))  # skips the first
        with pytest.raises(ProposalRefused, match="has message 1 where 0 is next"):
            _propose_raw(alice, "bob", (second, first))  # reordered
        alice.network.chain("bob").process_inbox()
        with pytest.raises(ProposalRefused, match="has message 0 where 2 is next"):
            _propose_raw(alice, "bob", (first,))  # taken again


def test_an_application_created_on_alices_chain_runs_on_bobs_with_its_own_state(
    net: Path,
) -> None:
    with Client.open(net) as alice:
        app, _ = _setup(alice)
        # bob has never heard of it: the call's block brings it (UseApplication) and runs Mint.
        response, _ = alice.call_application(app, {"Mint": {"amount": 7}}, chain="bob")
        assert response == 7
        bob = alice.network.chain("bob")
        names = [op.name for op in bob.block(0).block.operations]
        assert names == ["UseApplication", "Mint"]
        assert [a.app_id.hex() for a in alice.applications(chain="bob")] == [app]
        alice.call_application(app, {"Mint": {"amount": 1}}, chain="bob")  # known now
        assert [op.name for op in bob.block(1).block.operations] == ["Mint"]
        assert _balance(alice, app)["balance"] == 100
        on_bob = alice.query_application(app, {"query": "{ balance }"}, chain="bob")
        assert on_bob["data"]["balance"] == 8
        assert alice.verify().chains == 2
    result = edgechain("app", "call", app[:12], '{"Mint": {"amount": 2}}', "--chain", "bob",
                       "--dir", net)  # fmt: skip
    assert result.code == 0 and result.out.splitlines()[0] == "10", result.err
    listed = edgechain("app", "list", "--chain", "bob", "--dir", net)
    assert "created on another chain" in listed.out


def test_validators_refuse_an_application_described_otherwise_than_created(net: Path) -> None:
    with Client.open(net) as alice:
        app, _ = _setup(alice)
        alice.call_application(app, {"Mint": {"amount": 1}}, chain="bob")
        honest = alice.network.chain("bob").block(0).block.operations[0]
        forged = dataclasses.replace(
            honest, payload={**honest.payload, "parameters": {"max_credit": 10**9}}
        )
        bob = alice.network.chain("bob")
        with pytest.raises(ProposalRefused, match="module or parameters are not the ones created"):
            _propose_raw(alice, "bob", (), (forged,))
        elsewhere = dataclasses.replace(honest, payload={**honest.payload, "height": 0})
        with pytest.raises(ProposalRefused, match="not the application's description"):
            _propose_raw(alice, "bob", (), (elsewhere,))
        assert bob.height == 1


def test_blocks_without_messages_keep_their_format_and_hash() -> None:
    message = Message(b"r" * 32, 0, b"a" * 32, ["Credit", {"amount": 1}], tracked=True)
    plain = Block(b"c" * 32, 0, None, 1, (), b"s" * 32, b"h" * 32)
    assert plain.to_value()[0] == 1 and len(plain.to_value()) == 8
    with_messages = dataclasses.replace(plain, outgoing=(message,))
    assert with_messages.to_value()[0] == 2
    assert Block.decode(with_messages.encode()) == with_messages
    assert Block.decode(plain.encode()) == plain


def test_a_contract_cannot_send_outside_a_block() -> None:
    from edgechain.chain.application import OperationContext, send_message

    ctx = OperationContext(b"c" * 32, b"a" * 32, 0, 0, b"s" * 32, b"s" * 32)
    with pytest.raises(OperationRejected, match="only be sent while a block executes"):
        send_message(ctx, None, b"r" * 32, 1)  # type: ignore[arg-type]


def _in_flight(client: Client, chain: str) -> int:
    """The credits waiting in ``chain``'s inbox."""
    return sum(
        m.payload[1]["amount"] for b in client.network.chain(chain).inbox() for m in b.messages
    )


@pytest.mark.parametrize("lines_before_kill", [1, 2, 5])
def test_a_kill_between_send_and_execution_loses_and_duplicates_nothing(
    net: Path, lines_before_kill: int
) -> None:
    with Client.open(net) as alice:
        app, bob_id = _setup(alice)
    worker = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "message_worker.py"), str(net), app, bob_id],
        stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert worker.stdout is not None
    for _ in range(lines_before_kill):
        assert worker.stdout.readline()  # it got this far; the kill lands in the next step
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert edgechain("chain", "verify", "--dir", net).code == 0
    with Client.open(net) as alice:
        mine = _balance(alice, app)["balance"]
        waiting = _in_flight(alice, "bob")
    with Client.open(net, chain="bob") as bob:
        theirs = _balance(bob, app)["balance"] if bob.applications() else 0
        assert mine + waiting + theirs == 100  # every token somewhere, once
        bob.process_inbox()
        assert bob.inbox() == []
        assert mine + _balance(bob, app)["balance"] == 100


def test_a_chain_follows_an_event_stream_past_events_first_then_new_ones(net: Path) -> None:
    with Client.open(net) as alice:
        app, bob_id = _setup(alice)  # the Mint of 100 is event 0 of alice's "mints"
        _transfer(alice, app, bob_id, 10)
        alice_chain = alice.chain.id.hex()
    with Client.open(net, chain="bob") as bob:
        bob.process_inbox()  # bob learns the application from the transfer
        bob.call_application(app, {"Follow": {"chain": alice_chain}})
    with Client.open(net) as alice:
        alice.process_inbox()  # takes bob's subscription: event 0 goes to bob
        alice.call_application(app, {"Mint": {"amount": 5}})  # event 1, to its follower
        alice.call_application(app, {"Mint": {"amount": 6}})  # event 2
    with Client.open(net, chain="bob") as bob:
        bob.process_inbox()
        body = bob.query_application(app, {"query": "{ followed }"})
        assert "errors" not in body, body
        followed = body["data"]["followed"]
        assert followed == [
            [alice_chain, "0", "100"],
            [alice_chain, "1", "5"],
            [alice_chain, "2", "6"],
        ]
    assert edgechain("chain", "verify", "--dir", net).code == 0
