"""Determinism: independent replicas (other processes, hash seeds, dict orders) agree."""

import os
import subprocess
import sys

from chain_helpers import register

from edgechain.chain import Network

REPLICA = """
import sys
from edgechain.applications import register_applications
from edgechain.chain.application import application_id, execute_operations
from edgechain.chain.block import Operation
from edgechain.chain.state import ChainState

register_applications()
reverse = sys.argv[1] == "reverse"
chain_id, owner = bytes(range(32)), bytes(range(32, 64))
app = application_id(chain_id, "model-registry")
state = ChainState(chain_id)


def payload(name, version):
    ref = {"blake3": "cd" * 32, "size": 10, "urls": ["https://example.org/m.bin"]}
    items = [("name", name), ("version", version), ("format", "llama2c"),
             ("weights", ref), ("tokenizer", dict(reversed(ref.items())) if reverse else ref)]
    return dict(reversed(items) if reverse else items)


blocks = [[("RegisterModel", payload(f"m{i}", str(j))) for j in range(3)] for i in range(20)]
blocks.append([("RetireModel", {"name": "m3", "version": "1"})])
for height, ops in enumerate(blocks):
    operations = [Operation(app, name, p) for name, p in ops]
    writes = execute_operations(state, height=height, timestamp_us=1000 + height, signer=owner,
                                chain_owner=owner, operations=operations)
    state.apply(writes)
print(state.hash().hex())
"""

# Pinned: a change means stored chains written before it no longer verify.
EXPECTED_STATE_HASH = "5062fff84da5c77f1f0c1512ee58f7f21d7188c6a06d8bf90abddbbd408b3978"


def _replica_hash(order: str, hash_seed: str) -> str:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    out = subprocess.run(
        [sys.executable, "-c", REPLICA, order], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_independent_replicas_reach_the_same_state_hash():
    first = _replica_hash("forward", "1")
    second = _replica_hash("reverse", "2")
    assert len(first) == 64
    assert first == second
    assert first == EXPECTED_STATE_HASH


def test_every_honest_validator_and_a_reopened_replica_agree(tmp_path):
    path = tmp_path / "net"
    with Network.create(path, validators=5) as net:
        chain = net.default_chain()
        app = chain.application("model-registry")
        for version in range(5):
            chain.execute(app.id, register(version=str(version)))
        hashes = {v.state_hash(chain.id) for v in net.validators}
        assert hashes == {chain.state_hash}
        certified = chain.state_hash
    with Network.open(path) as net:
        assert net.default_chain().state_hash == certified
