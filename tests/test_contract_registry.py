"""The model-registry contract: every rejection path, and certified queries."""

from dataclasses import replace

import blake3
import pytest
from chain_helpers import TOKENIZER_HASH, URL, file_ref, local_file_ref, register

from edgechain.chain import Network, Operation
from edgechain.chain.agreement import certify
from edgechain.chain.block import Block, Proposal, sign_proposal
from edgechain.chain.keys import generate_key, public_bytes
from edgechain.contract import FileRef, RegisterModel, RetireModel
from edgechain.contract.operations import MAX_FILE_SIZE
from edgechain.errors import (
    InputError,
    InvalidText,
    ModelNotFound,
    ModelRetired,
    OperationRejected,
    QuorumNotReached,
    Unauthorized,
    UsageError,
)


@pytest.fixture
def net(tmp_path):
    with Network.create(tmp_path / "net", validators=4) as network:
        yield network


@pytest.fixture
def chain(net):
    return net.default_chain()


@pytest.fixture
def app(chain):
    return chain.application("model-registry")


def _rejected(chain, app, op, match):
    height = chain.height
    with pytest.raises(OperationRejected, match=match):
        chain.execute(app.id, op)
    assert chain.height == height  # nothing committed


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", "-lead", ".lead", "a" * 65, "has space", "a/b", "é", "trailing\n"]
)
def test_bad_names(chain, app, name):
    _rejected(chain, app, register(name=name), "model name")


@pytest.mark.parametrize("name", ["a", "stories260K", "llama-2.7b_chat", "A" * 64])
def test_good_names(chain, app, name):
    assert chain.execute(app.id, register(name=name)).height == chain.height - 1


@pytest.mark.parametrize("version", ["", "1 0", "x" * 33, "1/2", "+1", "1\n"])
def test_bad_versions(chain, app, version):
    _rejected(chain, app, register(version=version), "model version")


def test_bad_format(chain, app):
    _rejected(chain, app, register(format="safetensors"), "format 'safetensors' is not supported")


def test_a_gguf_registration_names_one_file_for_weights_and_tokenizer(chain, app):
    # A GGUF file carries its tokenizer: the two references must be the same file.
    _rejected(chain, app, register(format="gguf"), "the two references must be equal")


@pytest.mark.parametrize(
    "digest", ["1" * 63, "1" * 65, "A" * 64, "g" * 64, "", 123, "1" * 64 + "\n"]
)
def test_bad_hashes(chain, app, digest):
    _rejected(chain, app, register(weights=file_ref(blake3=digest)), "weights.blake3")
    _rejected(chain, app, register(tokenizer=file_ref(blake3=digest)), "tokenizer.blake3")


@pytest.mark.parametrize("size", [0, -1, MAX_FILE_SIZE + 1])
def test_sizes_out_of_range(chain, app, size):
    _rejected(chain, app, register(weights=file_ref(size=size)), "weights.size .* <= 2 GiB")


@pytest.mark.parametrize("size", ["10", True])
def test_sizes_that_are_not_integers(chain, app, size):
    _rejected(chain, app, register(tokenizer=file_ref(size=size)), "tokenizer.size must be an int")


def test_size_limit_is_inclusive(chain, app):
    chain.execute(app.id, register(weights=file_ref(size=MAX_FILE_SIZE)))
    assert app.query_model("stories260K").entry.weights.size == 2 * 1024**3


@pytest.mark.parametrize(
    "urls, match",
    [
        ((), "needs 1 to 8"),
        ((URL,) * 9, "needs 1 to 8"),
        (("ftp://host/m.bin",), "not an http or https"),
        (("file:///etc/passwd",), "not an http or https"),
        (("http://",), "has no host"),
        (("http://host/a b",), "whitespace"),
        (("http://host/" + "a" * 2048,), "longer than 2048"),
        ((42,), "not a string"),
        (("http://[::1/",), "not a valid URL"),
        (("http://host:99999/m.bin",), "not a valid URL"),
        (("http://host:port/m.bin",), "not a valid URL"),
    ],
)
def test_bad_urls(chain, app, urls, match):
    _rejected(chain, app, register(weights=FileRef("1" * 64, 10, urls)), match)


def test_https_and_several_urls_are_fine(chain, app):
    urls = ("https://mirror.example/m.bin", "http://127.0.0.1:8000/m.bin")
    chain.execute(app.id, register(weights=FileRef("1" * 64, 10, urls)))
    assert app.query_model("stories260K").entry.weights.urls == urls


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"description": "d" * 1025}, "description is longer than 1024"),
        ({"description": 5}, "description must be a string"),
        ({"license": "l" * 129}, "license is longer than 128"),
    ],
)
def test_bad_optional_fields(chain, app, changes, match):
    _rejected(chain, app, register(**changes), match)


@pytest.mark.parametrize(
    "payload, match",
    [
        ("not a map", "must be a map"),
        ({"name": "x"}, "is missing"),
        ({**register().to_payload(), "extra": 1}, "unknown fields extra"),
        ({**register().to_payload(), "weights": {"blake3": "1" * 64}}, "weights is missing"),
        ({**register().to_payload(), "weights": {**file_ref().to_payload(), "urls": URL}}, "list"),
    ],
)
def test_malformed_payloads(chain, app, payload, match):
    _rejected(chain, app, Operation(app.id, "RegisterModel", payload), match)


def test_unknown_operation(chain, app):
    _rejected(chain, app, Operation(app.id, "DeleteEverything", {}), "no operation")


def test_unknown_application(chain):
    with pytest.raises(OperationRejected, match="unknown application"):
        chain.execute(bytes(32), Operation(bytes(32), "RegisterModel", {}))
    assert chain.height == 0


def test_one_bad_operation_rejects_the_whole_block(chain, app):
    with pytest.raises(OperationRejected):
        chain.execute(app.id, register(version="1"), register(version="bad version"))
    assert chain.height == 0
    with pytest.raises(ModelNotFound):
        app.query_model("stories260K")


# --- authorization ----------------------------------------------------------------------------


@pytest.mark.parametrize("op", [register(), RetireModel("stories260K", "1")])
def test_only_the_owner_may_register_or_retire(chain, app, op):
    with pytest.raises(Unauthorized, match="must be signed by the chain owner"):
        chain.execute(app.id, op, signer=generate_key())
    assert chain.height == 0


def _raw_proposal(chain, app, op, key):
    """A block built and signed by hand: no local execution, no client check."""
    block = Block(
        chain.id,
        0,
        None,
        1,
        (Operation(app.id, op.operation_name, op.to_payload()),),
        public_bytes(key),
        chain.state_hash,
    )
    return Proposal(block, sign_proposal(block, key), block.hash())


def test_validators_refuse_a_block_the_contract_rejects(net, chain, app):
    # Bypass the owner's local check: the validators execute the block and refuse it themselves.
    proposal = _raw_proposal(chain, app, register(version="bad version"), chain.owner_key())
    with pytest.raises(QuorumNotReached, match="v1: refused: an operation was rejected"):
        certify(proposal, net.committee, net._pool, vote_timeout=1.0)


def test_validators_refuse_a_block_anyone_but_the_owner_signs(net, chain, app):
    proposal = _raw_proposal(chain, app, register(), generate_key())
    with pytest.raises(QuorumNotReached, match="v1: refused: the block is not signed by"):
        certify(proposal, net.committee, net._pool, vote_timeout=1.0)


# --- re-registration and retirement -----------------------------------------------------------


def test_reregistration_with_other_bytes_is_rejected(chain, app):
    chain.execute(app.id, register())
    _rejected(chain, app, register(weights=file_ref(blake3="3" * 64)), "already registered")
    _rejected(chain, app, register(tokenizer=file_ref(TOKENIZER_HASH, 513)), "already registered")


def test_reregistration_with_the_same_bytes_changes_nothing(chain, app):
    chain.execute(app.id, register())
    state_hash = chain.state_hash
    other_urls = replace(file_ref(), urls=("https://mirror.example/m.bin",))
    chain.execute(app.id, register(weights=other_urls))
    assert chain.state_hash == state_hash
    assert app.query_model("stories260K").height == 0


def test_retire_unknown_and_twice(chain, app):
    _rejected(chain, app, RetireModel("stories260K", "1"), "is not registered")
    chain.execute(app.id, register())
    chain.execute(app.id, RetireModel("stories260K", "1"))
    _rejected(chain, app, RetireModel("stories260K", "1"), "already retired")
    _rejected(chain, app, register(), "was retired at height 1")
    _rejected(chain, app, RetireModel("bad name", "1"), "model name")


# --- queries ----------------------------------------------------------------------------------


def test_queries_return_height_block_and_certificate(net, chain, app):
    chain.execute(app.id, register(version="1", description="tiny", license="MIT"))
    chain.execute(app.id, register(name="other"))
    chain.execute(app.id, register(version="2"))
    latest = app.query_model("stories260K")
    assert (latest.entry.version, latest.height) == ("2", 2)
    assert latest.block_hash == chain.block(2).block_hash
    assert (latest.chain_id, latest.app_id) == (chain.id, app.id)
    latest.verify(net.committee)
    first = app.query_model("stories260K", "1")
    assert (first.height, first.entry.description, first.entry.license) == (0, "tiny", "MIT")
    assert first.entry.registered_by == chain.owner
    listed = [(m.entry.name, m.entry.version, m.height) for m in app.list_models()]
    assert listed == [("other", "1", 1), ("stories260K", "1", 0), ("stories260K", "2", 2)]


def test_latest_active_version_skips_retired(chain, app):
    chain.execute(app.id, register(version="1"))
    chain.execute(app.id, register(version="2"))
    chain.execute(app.id, RetireModel("stories260K", "2"))
    assert app.query_model("stories260K").entry.version == "1"
    with pytest.raises(ModelRetired, match="version 2 was retired at height 2"):
        app.query_model("stories260K", "2")
    chain.execute(app.id, RetireModel("stories260K", "1"))
    with pytest.raises(ModelRetired, match="every version"):
        app.query_model("stories260K")
    retired = app.list_models()
    assert [(m.entry.version, m.height, m.entry.retired) for m in retired] == [
        ("1", 3, True),
        ("2", 2, True),
    ]
    assert app.list_models(include_retired=False) == []


def test_unknown_models(chain, app):
    with pytest.raises(ModelNotFound, match="no model named nope"):
        app.query_model("nope")
    chain.execute(app.id, register())
    with pytest.raises(ModelNotFound, match="no model stories260K version 9"):
        app.query_model("stories260K", "9")
    # A name that is a prefix of another must not match it.
    with pytest.raises(ModelNotFound):
        app.query_model("stories")


def test_register_model_round_trips_its_payload():
    op = register(description="d", license="MIT")
    assert RegisterModel.from_payload(op.to_payload()) == op


def test_blocks_over_one_mebibyte_are_refused(chain, app):
    description = "d" * 1000
    ops = [register(version=str(i), description=description) for i in range(1100)]
    with pytest.raises(UsageError, match="limited to 1048576 bytes"):
        chain.execute(app.id, *ops)
    assert chain.height == 0


def test_a_file_ref_of_a_local_file_as_publish_builds_it(tmp_path):
    data = bytes(range(256)) * 5000
    (tmp_path / "model.bin").write_bytes(data)
    ref = local_file_ref(tmp_path / "model.bin", URL)
    assert ref == FileRef(blake3.blake3(data).hexdigest(), len(data), (URL,))
    ref.validate("weights")
    with pytest.raises(InputError, match="no such file"):
        local_file_ref(tmp_path / "missing.bin", URL)


# --- text that is not UTF-8, and the one file-size limit ----------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: register(name="m\udcff"), "model name"),
        (lambda: register(version="\ud800"), "model version"),
        (lambda: register(description="ok \udcff"), "description"),
        (lambda: register(license="\udfff"), "license"),
        (lambda: file_ref(url="http://h/\udcff"), "file URL"),
        (lambda: RetireModel("m", "\udcff"), "model version"),
        (lambda: RetireModel("\ud800", "1"), "model name"),
    ],
)
def test_text_that_is_not_utf8_is_refused_when_the_operation_is_built(build, field):
    with pytest.raises(InvalidText, match=f"^{field} is not valid UTF-8 text"):
        build()


def test_undecodable_bytes_are_named_as_bytes_and_surrogates_as_code_points():
    with pytest.raises(InvalidText, match="undecodable byte 0xff at character 3"):
        register(name="abc\udcff")
    with pytest.raises(InvalidText, match="lone surrogate U\\+D800 at character 0"):
        register(name="\ud800")


def test_queries_refuse_text_that_is_not_utf8(app):
    with pytest.raises(InvalidText, match="model name"):
        app.query_model("\udcff")
    with pytest.raises(InvalidText, match="model version"):
        app.query_model("m", "\ud800")


def test_the_fetcher_caps_downloads_at_the_contracts_file_limit():
    from edgechain.service.fetch import FetchPolicy

    assert FetchPolicy().max_bytes == MAX_FILE_SIZE == 2 * 1024**3
