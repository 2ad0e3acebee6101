"""The model registry and the story book are edgechain.sdk applications (issue 21, item 4),
and a network directory made before they were, or before the SDK existed, reads as it did:
the stored format is unchanged (``edgechain-network/1``, storage schema 1), its blocks
re-execute to the same certified state hashes (the built-ins' operations and state keep their
bytes), its models and stories read back, and it takes new blocks, an application users write
among them. A directory of another format is refused with one line naming it.

The fixtures were made by tests/fixtures/make_network_before_builtins_on_sdk.py, on the commit
before this change (``..._builtins_on_sdk``) and on the one before the SDK (``..._sdk``,
0842e95): two registrations, a retirement, a mint, a transfer."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from network_cli_helpers import edgechain

from edgechain.applications import MODEL_REGISTRY, STORY_BOOK
from edgechain.chain.network import NETWORK_FORMAT
from edgechain.client import Client
from edgechain.contract.registry import (
    APPLICATION_NAME,
    KEY_PREFIX,
    ModelRegistryContract,
    ModelRegistryService,
    RegistryState,
)
from edgechain.contract.story_book import StoryBookContract, StoryBookService, StoryNotFound
from edgechain.errors import ModelRetired, Unauthorized
from edgechain.sdk import Contract, Service, runtime
from edgechain.sdk.loader import SdkModule
from edgechain.sdk.project import new_project

FIXTURES = Path(__file__).parent / "fixtures"
#: fixture archive -> the network directory it holds
OLD_NETWORKS = {
    "network_before_builtins_on_sdk.tar.xz": "pre_builtins_net",
    "network_before_sdk.tar.xz": "pre_sdk_net",
}


@pytest.fixture(params=sorted(OLD_NETWORKS))
def old_net(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    with tarfile.open(FIXTURES / request.param) as archive:
        archive.extractall(tmp_path, filter="data")
    return tmp_path / OLD_NETWORKS[request.param]


def test_the_built_ins_are_a_contract_and_a_service_of_the_sdk() -> None:
    assert issubclass(ModelRegistryContract, Contract)
    assert issubclass(ModelRegistryService, Service)
    assert issubclass(StoryBookContract, Contract) and issubclass(StoryBookService, Service)
    assert ModelRegistryContract.state_type is RegistryState
    for kind in (MODEL_REGISTRY, STORY_BOOK):
        assert not kind.runs_user_code  # deterministic by construction: executions are shared
    module = SdkModule(ModelRegistryContract, ModelRegistryService)
    assert [t.__name__ for t in module.contract_class.abi.operations] == [
        "RegisterModel",
        "RetireModel",
        "FollowRegistry",
    ]
    # The SDK's runtime reads the registry's entries where the registry stores them.
    assert (runtime.REGISTRY, runtime._MODEL_PREFIX) == (APPLICATION_NAME, KEY_PREFIX)


def test_a_network_made_before_re_executes_to_the_same_state_hashes(old_net: Path) -> None:
    config = json.loads((old_net / "network.json").read_text())
    assert config["format"] == NETWORK_FORMAT  # the format did not change: nothing to migrate
    with Client.open(old_net) as client:
        report = client.verify()
        assert (report.chains, report.blocks) == (1, 5)
        models = client.models()
        assert [(m.entry.name, m.entry.version, m.entry.retired) for m in models] == [
            ("stories260K", "1", False),
            ("stories260K", "2", True),
        ]
        assert models[0].entry.description == "tiny" and models[1].entry.license == "MIT"
        assert models[1].height == 2 and models[0].height == 0
        models[0].verify(client.network.committee)
        assert client.model("stories260K").entry.version == "1"
        with pytest.raises(ModelRetired):
            client.model("stories260K", "2")
        [story] = client.stories()
        assert (story.id, story.tokens, story.minted_height) == (1, 12, 3)
        assert story.text == ", there was a little girl named Lily. She"
        assert story.owner == "ab" * 32 and client.story(1) == story
        with pytest.raises(StoryNotFound):
            client.story(2)
        # It goes on: the owner no longer holds story 1, and a new retirement is certified.
        with pytest.raises(Unauthorized, match="belongs to abababab"):
            client.transfer_story(1, client.chain.owner.hex())
        assert client.retire_model("stories260K", "1").height == 5
        assert client.verify().blocks == 6


def test_a_network_made_before_takes_an_application_users_write(
    old_net: Path, tmp_path: Path
) -> None:
    project = new_project("counter", tmp_path)
    with Client.open(old_net) as client:
        module = client.publish_module(project).module_id
        app = client.create_application(module, argument=1).application_id
        response, _ = client.call_application(app, {"Increment": {"value": 2}})
        assert response == 3
        assert [m.entry.version for m in client.models(include_retired=False)] == ["1"]
        client.verify()


@pytest.mark.parametrize(
    ("edit", "shown"),
    [
        (lambda c: {**c, "format": "edgechain-network/0"}, "unknown format 'edgechain-network/0'"),
        (lambda c: {k: v for k, v in c.items() if k != "format"}, "unknown format None"),
    ],
)
def test_a_network_of_another_format_is_refused_in_one_line(
    old_net: Path, edit: Any, shown: str
) -> None:
    config_path = old_net / "network.json"
    config_path.write_text(json.dumps(edit(json.loads(config_path.read_text()))))
    result = edgechain("model", "list", "--dir", old_net)
    result.assert_user_error(4, "network.json is malformed", shown)
    assert result.err.count("\n") == 1
