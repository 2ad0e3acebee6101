"""The pytest plugin's fixtures, used as a user would (they come from the installed plugin)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx
import pytest

from edgechain.chain.certificate import verify_certificate
from edgechain.client import Client
from edgechain.contract.operations import FileRef, RegisterModel, RetireModel
from edgechain.errors import ModelRetired, OperationRejected
from edgechain.service.fetch import FetchPolicy
from edgechain.service.runtime import GenerateQuery, ModelService
from edgechain.testing import models
from edgechain.testing.models import ModelFiles
from edgechain.testing.pytest_plugin import EmptyCacheClient
from edgechain.testing.weight_server import WeightServer

pytest_plugins = ["pytester"]


def test_edgechain_network_is_a_fresh_four_validator_network(
    edgechain_network: Client, tmp_path: Path
) -> None:
    status = edgechain_network.status()
    assert len(status.validators) == 4 and status.quorum == 3
    assert status.chains[0].blocks == 0
    assert Path(status.path).is_relative_to(tmp_path)
    assert edgechain_network.models() == []


def test_weight_server_serves_its_directory(
    weight_server: WeightServer, weight_server_dir: Path
) -> None:
    (weight_server_dir / "hello.bin").write_bytes(b"hello")
    response = httpx.get(weight_server.url("hello.bin"))
    assert response.status_code == 200 and response.content == b"hello"
    assert weight_server.request_count("hello.bin") == 1


def test_stories260k_has_the_known_hashes(stories260k: ModelFiles) -> None:
    import blake3

    assert blake3.blake3(stories260k.weights.read_bytes()).hexdigest() == (
        stories260k.weights_blake3
    )
    assert blake3.blake3(stories260k.tokenizer.read_bytes()).hexdigest() == (
        stories260k.tokenizer_blake3
    )


def test_publish_model_returns_the_certified_entry(
    publish_model, stories260k: ModelFiles, edgechain_network: Client, weight_server: WeightServer
) -> None:
    model = publish_model(
        "stories260K", stories260k.weights, stories260k.tokenizer, description="tiny"
    )
    assert model.entry.weights.blake3 == stories260k.weights_blake3
    assert model.entry.tokenizer.size == stories260k.tokenizer.stat().st_size
    assert model.entry.description == "tiny"
    verify_certificate(model.certificate, edgechain_network.network.committee)
    assert edgechain_network.model("stories260K") == model
    (url,) = model.entry.weights.urls
    assert httpx.get(url).content == stories260k.weights.read_bytes()
    assert weight_server.request_count() == 1  # just ours: publishing hashed the local file


def test_add_block_executes_registry_operations(add_block, edgechain_network: Client) -> None:
    file = FileRef("a" * 64, 10, ("http://127.0.0.1:1/w.bin",))
    certificate = add_block(RegisterModel(name="m", version="1", weights=file, tokenizer=file))
    assert certificate.height == 0
    assert edgechain_network.model("m").entry.weights == file
    add_block(RetireModel(name="m", version="1"))
    with pytest.raises(ModelRetired):
        edgechain_network.model("m")
    with pytest.raises(OperationRejected):
        add_block(RetireModel(name="m", version="1"))
    assert edgechain_network.chain.height == 2


def test_service_client_generates_with_the_published_model(
    publish_model, stories260k: ModelFiles, service_client: ModelService
) -> None:
    publish_model("stories260K", stories260k.weights, stories260k.tokenizer)
    query = GenerateQuery(
        model="stories260K", prompt="Once upon a time", temperature=0, max_tokens=20
    )
    stream = service_client.generate(query)
    record = stream.collect()
    assert record.text.startswith(", there was a little girl named Lily")
    assert record.seed_source == "derived"
    assert service_client.loaded_models() == [
        (stories260k.weights_blake3, stories260k.tokenizer_blake3)
    ]


def test_stories260k_fails_clearly_when_the_files_are_absent(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "no-models"
    empty.mkdir()
    monkeypatch.setenv("EDGECHAIN_MODELS_DIR", str(empty))
    # A checkout with no ../shared next to it. (A subprocess: an in-process pytest run would
    # reset the signal handlers wasmtime relies on for the rest of this session.)
    pytester.makeconftest(
        textwrap.dedent(
            f"""
            from pathlib import Path
            import edgechain.testing.models

            edgechain.testing.models._REPO_ROOT = Path({str(tmp_path / "checkout")!r})
            """
        )
    )
    pytester.makepyfile(
        textwrap.dedent(
            """
            def test_needs_the_model(stories260k):
                pass
            """
        )
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*stories260K (stories260K.bin, tok512.bin) not found*"])
    result.stdout.fnmatch_lines([f"*{empty}*EDGECHAIN_MODELS_DIR*"])


def test_service_client_runs_the_engine_chosen_on_the_command_line(
    service_client: ModelService, request: pytest.FixtureRequest
) -> None:
    assert service_client.engine.kind == request.config.getoption("--edgechain-engine")


def test_the_public_types_are_importable_from_edgechain() -> None:
    import edgechain
    from edgechain import Client as PublicClient
    from edgechain import GenerateQuery as PublicQuery
    from edgechain import HashMismatch, ServedModel
    from edgechain import ModelFiles as PublicFiles

    assert (PublicClient, PublicQuery, PublicFiles) == (Client, GenerateQuery, ModelFiles)
    assert issubclass(HashMismatch, edgechain.EdgechainError) and HashMismatch.exit_code == 6
    assert ServedModel.__module__ == "edgechain.testing.pytest_plugin"
    for name in edgechain.__all__:  # every advertised name resolves
        assert getattr(edgechain, name) is not None, name
    with pytest.raises(AttributeError):
        edgechain.NoSuchThing  # noqa: B018


def test_publish_model_exposes_the_served_urls(
    publish_model, stories260k: ModelFiles, weight_server: WeightServer
) -> None:
    model = publish_model("stories260K", stories260k.weights, stories260k.tokenizer)
    assert model.entry.weights.urls == (model.weights_url,)
    assert model.entry.tokenizer.urls == (model.tokenizer_url,)
    assert model.weights_url.startswith(weight_server.base_url)
    assert httpx.get(model.tokenizer_url).content == stories260k.tokenizer.read_bytes()
    assert model.weights_file.read_bytes() == stories260k.weights.read_bytes()


def test_a_tampered_model_fails_its_hash_check_from_an_empty_cache(
    publish_model,
    tamper_model,
    stories260k: ModelFiles,
    service_client: ModelService,
    empty_cache_client,
) -> None:
    from edgechain import HashMismatch

    model = publish_model("stories260K", stories260k.weights, stories260k.tokenizer)
    query = GenerateQuery(model="stories260K", prompt="Once", temperature=0, max_tokens=5)
    expected = service_client.generate(query).collect().text  # verified bytes now cached
    tamper_model(model, offset=1000)
    served, original = httpx.get(model.weights_url).content, stories260k.weights.read_bytes()
    assert served != original and len(served) == len(original)
    # The content-addressed cache rightly answers from the verified bytes it holds ...
    assert service_client.generate(query).collect().text == expected
    # ... while a service with an empty cache fetches the tampered bytes and refuses them.
    fresh = empty_cache_client()
    assert service_client.cache.directory != fresh.cache_dir.resolve()
    assert list(fresh.cache_dir.iterdir()) == []
    with pytest.raises(HashMismatch):
        fresh.generate(query).collect()
    tamper_model(model, file="tokenizer")
    with pytest.raises(ValueError):
        tamper_model(model, file="config")


QUICK = FetchPolicy(read_timeout=0.5, connect_timeout=0.5, total_timeout=5.0)


def test_the_fetch_policy_is_the_library_default_unless_overridden(
    edgechain_network: Client, edgechain_fetch_policy: FetchPolicy | None
) -> None:
    assert edgechain_fetch_policy is None
    assert edgechain_network.fetch_policy == FetchPolicy()


@pytest.mark.parametrize("edgechain_fetch_policy", [QUICK])  # overrides the fixture's value
def test_an_overridden_fetch_policy_reaches_every_client(
    edgechain_network: Client, empty_cache_client: EmptyCacheClient
) -> None:
    assert edgechain_network.fetch_policy == QUICK
    assert empty_cache_client().fetch_policy == QUICK


def test_the_model_locator_names_the_places_it_searched(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stories260k: ModelFiles
) -> None:
    monkeypatch.setattr(models, "_REPO_ROOT", tmp_path / "checkout")
    monkeypatch.setenv(models.MODELS_DIR_ENV, str(tmp_path / "none"))
    with pytest.raises(FileNotFoundError) as info:
        models.stories260k()
    assert str(tmp_path / "none") in str(info.value)
    assert str(tmp_path / "shared" / "models" / "stories260K") in str(info.value)
    monkeypatch.setenv(models.MODELS_DIR_ENV, str(stories260k.directory.parent))  # the parent
    assert models.stories260k() == stories260k
    assert models.stories260k_golden().startswith(b"Once upon a time")
