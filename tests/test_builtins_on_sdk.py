"""The model registry and the story book are edgechain.sdk applications (issue 21, item 4),
and a network directory made before they were reads as it did: its blocks re-execute to the
same certified state hashes (the built-ins' operations and state keep their bytes), its
models and stories read back, and it takes new blocks. The fixture was made by
tests/fixtures/make_network_before_builtins_on_sdk.py on the commit before the change."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from edgechain.applications import MODEL_REGISTRY, STORY_BOOK
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

FIXTURE = Path(__file__).parent / "fixtures" / "network_before_builtins_on_sdk.tar.xz"


@pytest.fixture
def old_net(tmp_path: Path) -> Path:
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(tmp_path, filter="data")
    return tmp_path / "pre_builtins_net"


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
    ]
    # The SDK's runtime reads the registry's entries where the registry stores them.
    assert (runtime.REGISTRY, runtime._MODEL_PREFIX) == (APPLICATION_NAME, KEY_PREFIX)


def test_a_network_made_before_re_executes_to_the_same_state_hashes(old_net: Path) -> None:
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
