"""Models stored as on-chain blobs: splitting, publishing, manifests, availability
(``missing-blobs``), tampering, resuming after ``kill -9``, and the service reading them back."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chain_helpers import FAST_TIMEOUT
from network_cli_helpers import REPO_ROOT, edgechain, serve_copies

from edgechain.chain.blobs import PublishDataBlob, blob_id
from edgechain.chain.network import Network
from edgechain.chain.policy import TESTNET, ResourcePolicy
from edgechain.client import Client
from edgechain.contract.manifest import plan_file, publish_chunks
from edgechain.contract.operations import FileRef, RegisterModel
from edgechain.errors import (
    BlobUnavailable,
    HashMismatch,
    OperationRejected,
    OracleBudgetExceeded,
    QuorumNotReached,
    StorageCorrupted,
    UsageError,
)
from edgechain.service.query import GenerateQuery
from edgechain.testing.models import ModelFiles
from edgechain.testing.weight_server import WeightServer

#: Small blobs, so that stories260K (1,056,540 + 6,227 bytes) needs 12 of them in 2 blocks.
SMALL = ResourcePolicy(name="small", maximum_blob_size=100_000, maximum_published_blobs=10)
PROMPT = "Once upon a time"


def _client(path: Path, policy: ResourcePolicy = SMALL, faulty: str | None = None) -> Client:
    net = Network.create(path, validators=4, vote_timeout=5 * FAST_TIMEOUT, policy=policy)
    if faulty:
        net.set_faults(faulty)
    return Client(net, cache_dir=path / "cache")


def _publish(client: Client, files: ModelFiles, name: str = "stories260K"):
    return client.publish_model(name, weights=files.weights, tokenizer=files.tokenizer, blobs=True)


def test_publish_splits_files_within_the_policy(tmp_path: Path, stories260k: ModelFiles) -> None:
    with _client(tmp_path / "n") as client:
        published = _publish(client, stories260k)
        assert (published.blobs.chunks, published.blobs.blocks) == (12, 2)
        weights = published.model.entry.weights
        assert weights.blake3 == stories260k.weights_blake3 and weights.urls == ()
        assert len(weights.chunks) == 11 and all(s == 100_000 for _, s in weights.chunks[:-1])
        assert sum(s for _, s in weights.chunks) == weights.size == 1_056_540
        data = stories260k.weights.read_bytes()
        assert weights.chunks[3][0] == blob_id(data[300_000:400_000])
        blocks = list(client.blocks())
        assert [len(b.block.operations) for b in blocks] == [10, 2, 1]
        # The manifest is certified after every chunk.
        assert blocks[2].block.operations[0].name == "RegisterModel"
        assert client.verify().blobs == 12


def test_identical_chunks_are_stored_once(tmp_path: Path, stories260k: ModelFiles) -> None:
    with _client(tmp_path / "n") as client:
        _publish(client, stories260k)
        size = client.network.storage.blob_bytes()
        again = _publish(client, stories260k, name="copy")
        assert (again.blobs.published, again.blobs.blocks) == (0, 0)
        assert client.network.storage.blob_bytes() == size == 1_056_540 + 6_227
        zeros = tmp_path / "zeros.bin"
        zeros.write_bytes(bytes(250_000))  # three chunks, two of them identical
        planned = plan_file(zeros, SMALL.chunk_size)
        assert len(planned.chunks) == 3 and planned.chunks[0].blob == planned.chunks[1].blob
        done = publish_chunks(client.chain, [planned], SMALL)
        assert (done.chunks, done.published, done.blocks) == (3, 2, 1)


def test_a_manifest_naming_an_unpublished_chunk_is_rejected(tmp_path: Path) -> None:
    with _client(tmp_path / "n") as client:
        chunk = blob_id(b"never published")
        ref = FileRef("1" * 64, 15, (), ((chunk, 15),))
        operation = RegisterModel("m", "1", ref, FileRef("2" * 64, 15, (), ((chunk, 15),)))
        with pytest.raises(OperationRejected, match="weights.chunks.0.: blob .* is not published"):
            client.chain.execute(client.chain.app_id("model-registry"), operation)
        with pytest.raises(OperationRejected, match="chunks add up to 15 bytes, not the file's"):
            FileRef("1" * 64, 16, (), ((chunk, 15),)).validate("weights")
        with pytest.raises(OperationRejected, match="weights.urls needs 1 to 8 URLs, got 0"):
            FileRef("1" * 64, 16, ()).validate("weights")


def test_missing_blobs_at_f_still_certifies(tmp_path: Path, stories260k: ModelFiles) -> None:
    with _client(tmp_path / "n", faulty="v4=missing-blobs") as client:
        published = _publish(client, stories260k)
        assert published.blobs.blocks == 2
        failures = [str(f) for f in client.chain.last_failures]
        assert failures == [] or all(f.startswith("v4: refused: missing blob") for f in failures)
        assert not client.network.validators[3].holds(published.model.entry.weights.chunks[0][0])
        # The service reads every chunk from the validators that hold it.
        text = client.generate(GenerateQuery("stories260K", PROMPT, temperature=0, max_tokens=20))
        assert text.collect().text.startswith(", there was a little girl named Lily")


def test_missing_blobs_at_f_plus_1_loses_the_quorum(
    tmp_path: Path, stories260k: ModelFiles
) -> None:
    with _client(tmp_path / "n", faulty="v3=missing-blobs,v4=missing-blobs") as client:
        with pytest.raises(QuorumNotReached) as caught:
            _publish(client, stories260k)
        message = str(caught.value)
        assert "2 of 4 validators signed, 3 needed" in message
        assert "v3: refused: missing blob" in message and "v4: refused: missing blob" in message
        assert client.chain.height == 0 and client.network.storage.blob_ids() == set()


def test_a_blob_no_validator_serves_is_unavailable(tmp_path: Path, stories260k: ModelFiles) -> None:
    with _client(tmp_path / "n") as client:
        _publish(client, stories260k)
        client.network.set_faults("v1=offline,v2=missing-blobs,v3=missing-blobs,v4=offline")
        query = GenerateQuery("stories260K", PROMPT, temperature=0, max_tokens=5)
        with pytest.raises(BlobUnavailable, match="chunk 0 .*no reachable validator holds it"):
            client.generate(query).collect()


def _tamper(path: Path, blob: bytes) -> None:
    db = sqlite3.connect(path / "chain.db")
    with db:
        db.execute("UPDATE blobs SET data = zeroblob(size) WHERE blob_id = ?", (blob,))
    db.close()


def test_a_tampered_stored_chunk_is_detected_and_named(
    tmp_path: Path, stories260k: ModelFiles
) -> None:
    path = tmp_path / "n"
    with _client(path) as client:
        published = _publish(client, stories260k)
    chunk = published.model.entry.weights.chunks[5][0]
    _tamper(path, chunk)
    with Client.open(path, cache_dir=tmp_path / "fresh") as client:
        with pytest.raises(StorageCorrupted, match=f"stored blob {chunk.hex()} .*is damaged"):
            client.verify()
        query = GenerateQuery("stories260K", PROMPT, temperature=0, max_tokens=5)
        with pytest.raises(HashMismatch, match=f"chunk 5 \\(blob {chunk.hex()[:16]}\\)"):
            client.generate(query).collect()
    result = edgechain("chain", "verify", "--dir", path)
    result.assert_user_error(
        4,
        f"stored blob {chunk.hex()}",
        "published at height 0",
        "chunk 5 of stories260K version 1 weights",
    )


_PUBLISH_SCRIPT = """
import sys
from edgechain.client import Client
with Client.open(sys.argv[1]) as client:
    client.publish_model("stories260K", weights=sys.argv[2], tokenizer=sys.argv[3], blobs=True)
"""


def test_an_interrupted_publish_resumes_after_kill_9(
    tmp_path: Path, stories260k: ModelFiles
) -> None:
    path = tmp_path / "n"
    tiny = ResourcePolicy(name="tiny", maximum_blob_size=1000, maximum_published_blobs=1)
    Network.create(path, validators=4, policy=tiny).close()
    child = subprocess.Popen(
        [sys.executable, "-c", _PUBLISH_SCRIPT, path, stories260k.weights, stories260k.tokenizer],
        cwd=REPO_ROOT,
    )
    try:
        deadline = time.monotonic() + 120
        blocks = 0
        while blocks < 20 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
            db = sqlite3.connect(f"file:{path / 'chain.db'}?mode=ro", uri=True)
            blocks = db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0]
            db.close()
        assert child.poll() is None, "the publish ended before it could be interrupted"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    total = -(-1_056_540 // 1000) + -(-6_227 // 1000)
    with Client.open(path) as client:
        done_before = client.chain.height
        assert 20 <= done_before < total  # certified chunks survived, the rest did not
        assert client.models() == []
        resumed = _publish(client, stories260k)
        assert resumed.blobs.chunks == total
        assert resumed.blobs.published == total - done_before == resumed.blobs.blocks
        assert client.chain.height == total + 1
        assert client.verify().blobs == total


def test_a_story_minted_from_a_blob_model_within_the_oracle_limit(
    tmp_path: Path, stories260k: ModelFiles
) -> None:
    """Validators re-execute the mint's generation reading the model from blobs (no URL), within
    testnet's 10 s; past a 1 ms policy, the proposer refuses it naming the limit."""
    with _client(tmp_path / "n", policy=TESTNET) as client:
        _publish(client, stories260k)
        minted = client.mint_story(
            GenerateQuery("stories260K", PROMPT, temperature=0, max_tokens=8)
        )
        assert minted.certificate.height == 2 and minted.story.text
    hasty = ResourcePolicy(name="hasty", maximum_service_oracle_execution_ms=1)
    with _client(tmp_path / "h", policy=hasty) as client:
        _publish(client, stories260k)
        with pytest.raises(OracleBudgetExceeded, match="maximum_service_oracle_execution_ms is 1"):
            client.mint_story(GenerateQuery("stories260K", PROMPT, max_tokens=200))
        assert client.chain.height == 2  # blobs and manifest; no story


def test_the_blob_benchmark_reports_its_figures(tmp_path: Path) -> None:
    from edgechain.bench.blobs import run

    result = run("260K", "testnet", tmp_path)
    assert (result.chunks, result.blocks) == (3, 2)  # two weight chunks, a tokenizer; a manifest
    assert 1.0 <= result.db_bytes_per_weight_byte < 1.5
    assert result.read_gb_per_s > 0 and result.first_query_seconds > 0


def test_the_proposer_checks_the_blobs_it_carries(tmp_path: Path) -> None:
    with _client(tmp_path / "n") as client:
        chain = client.chain
        data = b"chunk bytes"
        publish = PublishDataBlob(blob_id(data), len(data)).operation(chain.id)
        with pytest.raises(UsageError, match="the bytes given do not match it"):
            chain.propose([publish], blobs={blob_id(data): b"other bytes"})
        with pytest.raises(UsageError, match="is carried but no operation publishes it"):
            chain.propose([publish], blobs={blob_id(data): data, blob_id(b"x"): b"x"})
        with pytest.raises(UsageError, match="references blob .* which is not stored"):
            chain.propose([publish])  # published without its bytes, and never stored
        assert chain.height == 0
        chain.propose([publish], blobs={blob_id(data): data})
        chain.propose([publish])  # published again: stored already, nothing to carry
        assert chain.height == 2 and client.network.storage.blob(blob_id(data)) == data


def test_urls_stay_an_option_beside_blobs(
    tmp_path: Path, stories260k: ModelFiles, weight_server: WeightServer, weight_server_dir: Path
) -> None:
    """A manifest may also name URLs: they serve the file when no validator holds a chunk."""
    serve_copies(stories260k, weight_server_dir)
    with _client(tmp_path / "n") as client:
        published = client.publish_model(
            "stories260K",
            weights=stories260k.weights,
            tokenizer=stories260k.tokenizer,
            weights_urls=[weight_server.url("stories260K.bin")],
            tokenizer_urls=[weight_server.url("tok512.bin")],
            blobs=True,
        )
        assert published.model.entry.weights.urls == (weight_server.url("stories260K.bin"),)
        assert len(published.model.entry.weights.chunks) == 11
        client.network.set_faults(",".join(f"v{i}=missing-blobs" for i in range(1, 5)))
        checked = weight_server.request_count("stories260K.bin")  # publish checked the URL
        query = GenerateQuery("stories260K", PROMPT, temperature=0, max_tokens=5)
        assert client.generate(query).collect().output_tokens == 5
        assert weight_server.request_count("stories260K.bin") == checked + 1
