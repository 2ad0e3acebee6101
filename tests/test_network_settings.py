"""The story book's oracle settings saved in network.json: the block's oracle budget and each
validator's engine, chosen at `net up`, shown by `net status`, used by every later command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from network_cli_helpers import edgechain

from edgechain.chain.network import NETWORK_FILE, Network
from edgechain.chain.oracle import DEFAULT_ORACLE_BUDGET_S
from edgechain.client import Client
from edgechain.errors import StorageCorrupted


def saved(path: Path) -> dict:
    return json.loads((path / NETWORK_FILE).read_text())


def test_net_up_saves_the_settings_and_net_status_shows_them(tmp_path: Path) -> None:
    path = tmp_path / "net"
    up = edgechain(
        "net", "up", "--dir", path, "--oracle-budget", "12.5", "--engines", "v1=native,v2=wasm"
    )
    assert up.code == 0, up.err
    config = saved(path)
    assert config["oracle_budget_s"] == 12.5
    assert config["validator_engines"] == {
        "v1": "native",
        "v2": "wasm",
        "v3": "wasm",
        "v4": "native",
    }
    status = edgechain("net", "status", "--dir", path, "--json").json()
    assert status["oracle_budget_s"] == 12.5
    assert status["validator_engines"] == config["validator_engines"]
    text = edgechain("net", "status", "--dir", path).out
    assert "oracle budget 12.5 s per block" in text
    assert "honest  oracle on native" in text.splitlines()[2]  # v1

    # Reopening changes only what it is given, and keeps it.
    again = edgechain("net", "up", "--dir", path, "--engines", "v3=native")
    assert again.code == 0, again.err
    assert saved(path)["validator_engines"]["v3"] == "native"
    assert saved(path)["validator_engines"]["v1"] == "native"
    assert saved(path)["oracle_budget_s"] == 12.5
    with Client.open(path) as client:
        assert client.validator_engines == saved(path)["validator_engines"]
        assert client.network.oracle_budget_s == 12.5
        assert all(v.oracle_budget_s == 12.5 for v in client.network.validators)


def test_a_new_network_has_the_defaults(tmp_path: Path) -> None:
    with Network.create(tmp_path / "net") as net:
        assert net.oracle_budget_s == DEFAULT_ORACLE_BUDGET_S
        assert net.validator_engines == {"v1": "wasm", "v2": "native", "v3": "wasm", "v4": "native"}
    assert saved(tmp_path / "net")["oracle_budget_s"] is None


def test_bad_settings_are_refused_before_anything_is_created(tmp_path: Path) -> None:
    edgechain("net", "up", "--dir", tmp_path / "a", "--engines", "v9=native").assert_user_error(
        2, "--engines", "v9=native"
    )
    edgechain("net", "up", "--dir", tmp_path / "b", "--engines", "v1=gpu").assert_user_error(
        2, "v1=gpu"
    )
    edgechain("net", "up", "--dir", tmp_path / "c", "--oracle-budget", "0").assert_user_error(
        2, "oracle budget must be > 0"
    )
    over = edgechain(
        "net", "up", "--dir", tmp_path / "d", "--policy", "testnet", "--oracle-budget", "100"
    )
    over.assert_user_error(5, "maximum_service_oracle_execution_ms")
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_a_network_json_without_the_settings_opens_with_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "net"
    Network.create(path, oracle_budget_s=5, validator_engines="v1=native").close()
    config = saved(path)
    del config["oracle_budget_s"], config["validator_engines"]
    (path / NETWORK_FILE).write_text(json.dumps(config))
    with Network.open(path) as net:
        assert net.oracle_budget_s == DEFAULT_ORACLE_BUDGET_S
        assert net.validator_engines["v1"] == "wasm"


@pytest.mark.parametrize(
    ("key", "value"),
    [("oracle_budget_s", -1), ("oracle_budget_s", "10"), ("validator_engines", {"v1": "gpu"})],
)
def test_malformed_settings_in_network_json_are_reported(
    tmp_path: Path, key: str, value: object
) -> None:
    path = tmp_path / "net"
    Network.create(path).close()
    config = saved(path)
    config[key] = value
    (path / NETWORK_FILE).write_text(json.dumps(config))
    with pytest.raises(StorageCorrupted, match="network.json is malformed"):
        Network.open(path)


def test_story_mint_uses_the_saved_settings(stories_net: Path) -> None:
    assert edgechain("net", "up", "--dir", stories_net, "--engines", "v1=native").code == 0
    mint = ("story", "mint", "--model", "stories260K", "-i", "Lily", "-n", "8", "--json")
    minted = edgechain(*mint, "--dir", stories_net)
    assert minted.code == 0, minted.err
    assert minted.json()["validator_engines"] == saved(stories_net)["validator_engines"]
    assert minted.json()["validator_engines"]["v1"] == "native"
    # --engines on the mint lasts for that command only.
    once = edgechain(*mint, "--dir", stories_net, "--engines", "v1=wasm")
    assert once.json()["validator_engines"]["v1"] == "wasm"
    assert saved(stories_net)["validator_engines"]["v1"] == "native"

    # A saved budget too small for the story: every later mint is rejected (exit 5).
    assert edgechain("net", "up", "--dir", stories_net, "--oracle-budget", "0.001").code == 0
    long = ("story", "mint", "--model", "stories260K", "-i", "Lily", "-n", "400")
    edgechain(*long, "--dir", stories_net).assert_user_error(5, "oracle budget of 0.001 s")
    listed = edgechain("story", "list", "--dir", stories_net, "--json")
    assert len(listed.json()) == 2
