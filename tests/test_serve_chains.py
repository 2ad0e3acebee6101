"""The node across chains: the root GraphQL's ``notifications(chainId)`` subscription streams
each new block of a chain (committed by another process here), and an application users wrote
is served on every chain that knows it, with that chain's state."""

from __future__ import annotations

import json
from pathlib import Path

from network_cli_helpers import make_network
from serve_helpers import running_node

from edgechain.client import Client

TOKENS = Path(__file__).parent / "apps" / "tokens"

NOTIFICATIONS = 'subscription { notifications(chainId: "bob", since: 0) { chainId height hash } }'


def test_notifications_stream_every_new_block_of_a_chain(tmp_path: Path) -> None:
    from websockets.sync.client import connect

    net = make_network(tmp_path / "net")
    with Client.open(net) as client:
        client.open_chain("bob")
    with running_node(net) as node:
        url = "ws" + node.base_url.removeprefix("http") + "/"
        with connect(url, subprotocols=["graphql-transport-ws"], open_timeout=30) as ws:
            ws.send(json.dumps({"type": "connection_init"}))
            assert json.loads(ws.recv(timeout=30))["type"] == "connection_ack"
            subscribe = {"id": "1", "type": "subscribe", "payload": {"query": NOTIFICATIONS}}
            ws.send(json.dumps(subscribe))
            # Blocks committed by another process (this one) while the subscription runs.
            with Client.open(net, chain="bob") as bob:
                module = bob.publish_module(TOKENS).module_id
                app = bob.create_application(module).application_id.hex()
                bob.call_application(app, {"Mint": {"amount": 7}})
                expected = [(b.block.height, b.block_hash.hex()) for b in bob.chain.blocks()]
                bob_id = bob.chain.id.hex()
            received = []
            while len(received) < len(expected):
                message = json.loads(ws.recv(timeout=120))
                assert message["type"] == "next", message
                received.append(message["payload"]["data"]["notifications"])
            ws.send(json.dumps({"id": "1", "type": "complete"}))
        assert [(n["height"], n["hash"]) for n in received] == expected
        assert {n["chainId"] for n in received} == {bob_id}
        # bob's application is served at bob's chain, with bob's state.
        path = f"/chains/bob/applications/{app}"
        assert node.data("{ balance }", path=path) == {"balance": 7}
        index = node.data("{ chains { name applications { applicationId graphql } } }", path="/")
        bob_apps = next(c for c in index["chains"] if c["name"] == "bob")["applications"]
        assert [a["applicationId"] for a in bob_apps] == [app]
