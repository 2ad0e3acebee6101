"""Receipts: written by `generate --receipt`, replayed by `receipt verify` on both engines and
from a copied network; every field tampered in turn is refused, naming the field or the token.

These run the real wasm guest and the native module: a missing build fails them, never skips.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from network_cli_helpers import edgechain
from service_helpers import record_claims, record_hints

from edgechain.chain.encoding import decode, encode
from edgechain.client import Client
from edgechain.errors import CertificateError, InvalidReceipt, ReceiptMismatch
from edgechain.service.engine import open_engine
from edgechain.service.query import GenerateQuery
from edgechain.service.receipt import Receipt, build_receipt, token_ids_hash, verify_receipt
from edgechain.testing.weight_server import WeightServer

PROMPT = "Once upon a time"


def make_receipt(client: Client, **query: Any) -> Receipt:
    stream = client.generate(GenerateQuery(model="stories260K", prompt=PROMPT, **query))
    stream.collect()
    return build_receipt(stream)


def test_the_check_generate_then_verify_on_both_engines_and_a_copied_network(
    stories_net: Path, tmp_path: Path
) -> None:
    receipt_file = tmp_path / "r.json"
    made = edgechain(
        "generate", "--model", "stories260K", "-i", PROMPT, "-t", "1.0", "-n", "40",
        "--receipt", receipt_file, "--dir", stories_net,
    )  # fmt: skip
    assert made.code == 0, made.err
    assert "receipt " in made.err
    data = json.loads(receipt_file.read_text())
    assert data["format"] == "edgechain-receipt/v1"
    assert len(data["receipt"]["output"]["token_ids"]) == 40
    assert made.out.rstrip("\n").endswith(data["receipt"]["output"]["text"])

    for engine in ("wasm", "native"):
        result = edgechain(
            "receipt", "verify", receipt_file, "--engine", engine, "--dir", stories_net
        )
        assert result.code == 0, result.err
        assert "40 tokens on " + engine in result.out

    copied = tmp_path / "copy"
    shutil.copytree(stories_net, copied)
    result = edgechain("receipt", "verify", receipt_file, "--dir", copied, "--json")
    assert result.code == 0, result.err
    assert result.json()["tokens"] == 40 and result.json()["receipt_hash"] == data["hash"]

    # One character of the text changed: refused, naming the token.
    text = data["receipt"]["output"]["text"]
    at = len(text) // 2
    changed = "x" if text[at] != "x" else "y"
    data["receipt"]["output"]["text"] = text[:at] + changed + text[at + 1 :]
    receipt_file.write_text(json.dumps(data))
    refused = edgechain("receipt", "verify", receipt_file, "--dir", stories_net)
    refused.assert_user_error(7, "token ")


def test_a_receipt_is_canonical_and_replays_on_native_after_wasm(stories_net: Path) -> None:
    with Client.open(stories_net) as client:
        receipt = make_receipt(client, temperature=1.0, max_tokens=30)
    assert decode(encode(receipt.body)) == receipt.body
    assert Receipt.from_json(json.loads(receipt.dumps())).body == receipt.body
    assert receipt.body["seed"]["source"] == "derived"
    assert receipt.body["output"]["token_ids_blake3"] == token_ids_hash(receipt.token_ids)
    with Client.open(stories_net, engine=open_engine("native")) as client:
        result = verify_receipt(Receipt.from_json(receipt.to_json()), client)
    assert result.tokens == 30 and result.engine == "native"


@pytest.fixture
def receipt_and_client(stories_net: Path) -> Iterator[tuple[Receipt, Client]]:
    with Client.open(stories_net) as client:
        yield make_receipt(client, temperature=1.0, max_tokens=24), client


def _tampered(receipt: Receipt, path: str, value: Any, rehash: bool = False) -> Receipt:
    data = copy.deepcopy(receipt.to_json())
    node = data["receipt"]
    *parents, last = path.split(".")
    for name in parents:
        node = node[name]
    node[last] = value(node[last]) if callable(value) else value
    parsed = Receipt.from_json(data)
    if rehash:
        parsed = Receipt(parsed.body, parsed.hash)
    return parsed


def _other_hex(value: str) -> str:
    return ("0" if value[0] != "0" else "1") + value[1:]


#: (field, how to change it, the error class, what the message names)
TAMPERINGS = [
    ("chain_id", _other_hex, CertificateError, "chain_id"),
    ("application_id", _other_hex, CertificateError, "application_id"),
    ("model.name", "stories15M", CertificateError, "model"),
    ("model.version", "2", CertificateError, "model"),
    ("certificate", lambda c: {**c, "height": c["height"] + 1}, CertificateError, "height"),
    (
        "certificate",
        lambda c: {**c, "signatures": c["signatures"][:2]},
        CertificateError,
        "quorum",
    ),
    ("weights_blake3", _other_hex, CertificateError, "weights_blake3"),
    ("tokenizer_blake3", _other_hex, CertificateError, "tokenizer_blake3"),
    ("engine.guest_blake3", _other_hex, ReceiptMismatch, "engine.guest_blake3"),
    ("engine.settings", {"float": "f64"}, ReceiptMismatch, "engine.settings"),
    (
        "certificate",
        lambda c: {**c, "state_hash": _other_hex(c["state_hash"])},
        CertificateError,
        "signature",
    ),
    ("seed.value", lambda v: str(int(v) ^ 1), ReceiptMismatch, "seed.value"),
    ("seed.source", "query", ReceiptMismatch, "seed.inputs"),
    ("seed.inputs", [], ReceiptMismatch, "seed.inputs"),
    ("seed.derivation", "edgechain/seed/v1", ReceiptMismatch, "seed.derivation"),
    ("parameters.temperature", "0.5", ReceiptMismatch, "seed.value"),
    ("parameters.top_p", "0.5", ReceiptMismatch, "seed.value"),
    ("parameters.repeat_penalty", "1.5", ReceiptMismatch, "seed.value"),
    ("parameters.repeat_window", 3, ReceiptMismatch, "seed.value"),
    ("parameters.max_tokens", 23, ReceiptMismatch, "token 23"),
    ("parameters.stop", ["the"], ReceiptMismatch, "token "),
    ("prompt", "Once upon a tim", ReceiptMismatch, "seed.value"),
    ("output.token_ids", lambda ids: [ids[0] ^ 1, *ids[1:]], ReceiptMismatch, "token_ids"),
    ("output.token_ids_blake3", _other_hex, ReceiptMismatch, "output.token_ids_blake3"),
    ("output.text", lambda t: t[:-1], ReceiptMismatch, "token "),
    ("output.stop_reason", "end_of_sequence", ReceiptMismatch, "output.stop_reason"),
]


@pytest.mark.parametrize(
    ("path", "change", "error", "named"),
    TAMPERINGS,
    ids=[f"{t[0]}-{i}" for i, t in enumerate(TAMPERINGS)],
)
def test_each_field_tampered_is_refused_naming_it(
    receipt_and_client: tuple[Receipt, Client], path: str, change: Any, error: type, named: str
) -> None:
    receipt, client = receipt_and_client
    tampered = _tampered(receipt, path, change)
    with pytest.raises(error, match=named.replace(".", r"\.")):
        verify_receipt(tampered, client)


def test_token_ids_changed_with_their_hash_name_the_diverging_token(
    receipt_and_client: tuple[Receipt, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receipt's token ids are verified as a claim; a false one is then replayed (with them
    as hints, which change nothing) to name the diverging token. A true one is never replayed."""
    receipt, client = receipt_and_client
    hints = record_hints(monkeypatch)
    claims = record_claims(monkeypatch)
    ids = receipt.token_ids
    ids[5] = (ids[5] + 1) % 512
    data = copy.deepcopy(receipt.to_json())
    data["receipt"]["output"]["token_ids"] = ids
    data["receipt"]["output"]["token_ids_blake3"] = token_ids_hash(ids)
    with pytest.raises(ReceiptMismatch, match=f"token 5: the receipt has id {ids[5]}, the replay"):
        verify_receipt(Receipt.from_json(data), client)
    assert hints == [ids] and claims == [ids]
    assert verify_receipt(receipt, client).tokens == 24
    assert hints == [ids] and claims == [ids, receipt.token_ids]


def test_a_consistent_forgery_of_a_query_seed_still_diverges(
    receipt_and_client: tuple[Receipt, Client],
) -> None:
    """Claiming a user-chosen seed (inputs emptied, hash recomputed) replays another story."""
    receipt, client = receipt_and_client
    data = copy.deepcopy(receipt.to_json())
    data["receipt"]["seed"].update(source="query", derivation=None, inputs=[], value="7")
    forged = Receipt.from_json(data)
    with pytest.raises(ReceiptMismatch, match="token "):
        verify_receipt(Receipt(forged.body, forged.hash), client)


def test_the_untouched_receipt_verifies_and_the_hash_field_is_checked(
    receipt_and_client: tuple[Receipt, Client],
) -> None:
    receipt, client = receipt_and_client
    assert verify_receipt(Receipt.from_json(receipt.to_json()), client).tokens == 24
    data = receipt.to_json()
    data["hash"] = _other_hex(data["hash"])
    with pytest.raises(ReceiptMismatch, match="hash"):
        verify_receipt(Receipt.from_json(data), client)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d.update(format="v0"), "format"),
        (lambda d: d["receipt"].pop("prompt"), "prompt: missing"),
        (lambda d: d["receipt"].update(extra=1), "extra: not a receipt field"),
        (lambda d: d["receipt"]["parameters"].update(temperature=1.0), "parameters.temperature"),
        (lambda d: d["receipt"]["parameters"].update(top_p="0.90"), "parameters.top_p"),
        (lambda d: d["receipt"]["seed"].update(value=str(2**64)), "seed.value"),
        (lambda d: d["receipt"]["output"].update(token_ids=[-1]), "output.token_ids"),
    ],
)
def test_malformed_receipts_are_input_errors(
    receipt_and_client: tuple[Receipt, Client], change: Any, named: str
) -> None:
    receipt, _ = receipt_and_client
    data = copy.deepcopy(receipt.to_json())
    change(data)
    with pytest.raises(InvalidReceipt, match=named):
        Receipt.from_json(data)


def test_cli_refuses_a_bad_certificate_with_exit_4_and_garbage_with_exit_3(
    receipt_and_client: tuple[Receipt, Client], tmp_path: Path, stories_net: Path
) -> None:
    receipt, _ = receipt_and_client
    data = copy.deepcopy(receipt.to_json())
    signature = data["receipt"]["certificate"]["signatures"][0]
    signature["signature"] = _other_hex(signature["signature"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    edgechain("receipt", "verify", bad, "--dir", stories_net).assert_user_error(4, "signature")
    bad.write_text("not json")
    edgechain("receipt", "verify", bad, "--dir", stories_net).assert_user_error(3, "not JSON")
    missing = tmp_path / "missing.json"
    edgechain("receipt", "verify", missing, "--dir", stories_net).assert_user_error(3, "receipt")


def test_without_a_cache_the_weights_are_fetched_by_their_certified_hash(
    stories_net: Path, tmp_path: Path, served: WeightServer
) -> None:
    receipt_file = tmp_path / "r.json"
    with Client.open(stories_net) as client:
        make_receipt(client, temperature=1.0, max_tokens=16).save(receipt_file)
    copied = tmp_path / "copy"
    shutil.copytree(stories_net, copied)
    shutil.rmtree(copied / "cache")
    result = edgechain("receipt", "verify", receipt_file, "--dir", copied, "--engine", "native")
    assert result.code == 0, result.err
    assert (copied / "cache").is_dir()  # fetched, verified and stored

    served.stop()  # nowhere to fetch from, nothing cached: a service error, not a mismatch
    shutil.rmtree(copied / "cache")
    edgechain("receipt", "verify", receipt_file, "--dir", copied).assert_user_error(6)


def test_a_receipt_of_a_model_retired_since_still_verifies(stories_net: Path) -> None:
    with Client.open(stories_net) as client:
        receipt = make_receipt(client, temperature=0.5, max_tokens=10, seed=11)
        client.retire_model("stories260K", "1")
        assert verify_receipt(Receipt.from_json(receipt.to_json()), client).tokens == 10
