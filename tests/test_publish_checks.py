"""What `model publish` checks before it certifies: every URL serves the hashed bytes, and a
publish of what certified state already holds adds no block."""

from __future__ import annotations

from pathlib import Path

import pytest
from network_cli_helpers import edgechain, make_network
from service_helpers import publish_stories

from edgechain.client import Client
from edgechain.errors import FetchError, HashMismatch
from edgechain.testing.models import ModelFiles
from edgechain.testing.weight_server import Fault, WeightServer


@pytest.fixture
def net(tmp_path: Path) -> Path:
    return make_network(tmp_path / "net")


def publish(net: Path, stories260k: ModelFiles, weights_url: str, tokenizer_url: str, *extra: str):
    return edgechain(
        "model", "publish", "stories260K", "--dir", net,
        "--weights", stories260k.weights, "--tokenizer", stories260k.tokenizer,
        "--weights-url", weights_url, "--tokenizer-url", tokenizer_url, *extra,
    )  # fmt: skip


def blocks(net: Path) -> int:
    with Client.open(net) as client:
        return client.status().chains[0].blocks


def test_a_url_that_serves_nothing_is_refused_and_nothing_is_certified(
    net: Path, served: WeightServer, stories260k: ModelFiles
) -> None:
    result = publish(net, stories260k, served.url("typo.bin"), served.url("tok512.bin"))
    result.assert_user_error(6, "weights", served.url("typo.bin"), "--no-check-urls")
    assert blocks(net) == 0


def test_a_url_that_serves_other_bytes_is_refused(
    net: Path, served: WeightServer, stories260k: ModelFiles
) -> None:
    # The right size is not enough: one flipped byte and the URL is refused.
    served.inject("tok512.bin", Fault(corrupt_offset=3))
    result = publish(net, stories260k, served.url("stories260K.bin"), served.url("tok512.bin"))
    result.assert_user_error(6, "tokenizer URL", "serves other bytes")
    assert blocks(net) == 0


def test_publish_says_which_urls_it_checked(
    net: Path, served: WeightServer, stories260k: ModelFiles
) -> None:
    weights_url, tokenizer_url = served.url("stories260K.bin"), served.url("tok512.bin")
    result = publish(net, stories260k, weights_url, tokenizer_url)
    assert result.code == 0, result.err
    assert f"checked      {weights_url} serves the weights" in result.out
    assert f"checked      {tokenizer_url} serves the tokenizer" in result.out
    assert served.request_count("stories260K.bin") == 1
    shown = publish(net, stories260k, weights_url, tokenizer_url, "--json").json()
    assert shown["unchanged"] is True  # the same again: see below


def test_no_check_urls_certifies_a_host_that_is_not_up_yet(
    net: Path, stories260k: ModelFiles
) -> None:
    dead = "http://127.0.0.1:9/stories260K.bin"
    result = publish(net, stories260k, dead, "http://127.0.0.1:9/tok512.bin", "--no-check-urls")
    assert result.code == 0, result.err
    assert "not checked  its URLs (--no-check-urls)" in result.out
    assert blocks(net) == 1


def test_the_library_checks_urls_too(
    tmp_path: Path, served: WeightServer, stories260k: ModelFiles
) -> None:
    with Client.up(tmp_path / "net") as client:
        with pytest.raises(FetchError, match="typo"):
            client.publish_model(
                "m",
                weights=stories260k.weights,
                tokenizer=stories260k.tokenizer,
                weights_urls=[served.url("typo.bin")],
                tokenizer_urls=[served.url("tok512.bin")],
            )
        served.inject("stories260K.bin", Fault(corrupt_offset=0))
        with pytest.raises(HashMismatch):
            publish_stories(client, served.base_url)
        assert client.status().chains[0].blocks == 0
        published = publish_stories(client, served.base_url, check_urls=False)
        assert published.checked_urls == () and not published.unchanged


def test_publishing_what_is_already_certified_adds_no_block(
    net: Path, served: WeightServer, stories260k: ModelFiles
) -> None:
    weights_url, tokenizer_url = served.url("stories260K.bin"), served.url("tok512.bin")
    assert publish(net, stories260k, weights_url, tokenizer_url).code == 0
    assert blocks(net) == 1
    again = publish(net, stories260k, weights_url, tokenizer_url)
    assert again.code == 0, again.err
    assert "already certified with these bytes (block 0): nothing to publish" in again.out
    assert blocks(net) == 1
    # Other bytes under the same name and version are still refused by the contract.
    other = edgechain(
        "model", "publish", "stories260K", "--dir", net,
        "--weights", stories260k.weights, "--tokenizer", stories260k.weights,
        "--weights-url", weights_url, "--tokenizer-url", weights_url,
    )  # fmt: skip
    assert other.code != 0 and blocks(net) == 1


def test_a_blobs_rerun_of_a_finished_publish_adds_no_block(
    net: Path, stories260k: ModelFiles
) -> None:
    args = ("model", "publish", "stories260K", "--dir", net, "--weights", stories260k.weights,
            "--tokenizer", stories260k.tokenizer, "--blobs")  # fmt: skip
    assert edgechain(*args).code == 0
    before = blocks(net)
    again = edgechain(*args)
    assert again.code == 0, again.err
    assert "nothing to publish" in again.out and blocks(net) == before
