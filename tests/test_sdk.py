"""Applications users write (edgechain.sdk): the new -> publish -> create -> call -> query loop,
code loaded from certified blobs only, rejections, nondeterminism caught by the validators,
and every way a module or an argument can be refused, each in one line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from network_cli_helpers import edgechain, make_network

from edgechain.client import Client
from edgechain.errors import (
    InputError,
    InvalidParameter,
    OperationRejected,
    QuorumNotReached,
    ResourceLimitExceeded,
)
from edgechain.sdk.abi import Abi, decode
from edgechain.sdk.project import new_project


@pytest.fixture
def net(tmp_path: Path) -> Path:
    return make_network(tmp_path / "net")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return new_project("counter", tmp_path)


def test_the_loop_from_a_new_project_to_a_graphql_query(net: Path, tmp_path: Path) -> None:
    started = time.perf_counter()
    steps = [
        ("app", "new", "counter", "--path", tmp_path),
        ("app", "publish", tmp_path / "counter", "--json"),
    ]
    for step in steps:
        result = edgechain(*step, "--dir", net)
        assert result.code == 0, result.err
    module = result.json()["module_id"]
    created = edgechain("app", "create", module, "--argument", "1", "--dir", net, "--json")
    assert created.code == 0, created.err
    app = created.json()["application_id"]
    called = edgechain("app", "call", app[:12], '{"Increment": {"value": 2}}', "--dir", net)
    assert called.code == 0, called.err
    assert called.out.splitlines()[0] == "3"  # the operation's response
    queried = edgechain("app", "query", app, "{ value steps }", "--dir", net, "--json")
    assert queried.code == 0, queried.err
    assert json.loads(queried.out) == {"data": {"value": 3, "steps": [2]}}
    seconds = time.perf_counter() - started
    print(f"new -> publish -> create -> call -> query: {seconds:.1f} s")  # the figure, not a bound
    # The chain re-verifies in a new process, loading the code from its blobs.
    assert edgechain("chain", "verify", "--dir", net).code == 0
    listed = edgechain("app", "list", "--dir", net, "--json").json()
    assert [a["application_id"] for a in listed] == [app]


def test_the_generated_project_test_passes(project: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project / "tests")],
        capture_output=True, text=True, cwd=project.parent, stdin=subprocess.DEVNULL,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_validators_run_the_certified_code_not_the_working_tree(
    net: Path, project: Path
) -> None:
    with Client.open(net) as client:
        module = client.publish_module(project).module_id
        app = client.create_application(module, argument=10).application_id
        # Edit the working tree after publishing: the chain keeps running what it certified.
        contract = project / "contract.py"
        contract.write_text(contract.read_text().replace("+ operation.value", "- operation.value"))
        response, _ = client.call_application(app, {"Increment": {"value": 5}})
        assert response == 15
        assert client.publish_module(project).module_id != module  # other code, other module


def test_a_contract_that_raises_rejects_its_operation_and_stores_nothing(
    net: Path, project: Path
) -> None:
    with Client.open(net) as client:
        module = client.publish_module(project).module_id
        app = client.create_application(module, parameters={"max_step": 3}, argument=0)
        height = client.chain.height
        with pytest.raises(OperationRejected, match=r"value must be in 1\.\.3, got 9"):
            client.call_application(app.application_id, {"Increment": {"value": 9}})
        assert client.chain.height == height
    result = edgechain("app", "call", app.application_id.hex(), '{"Increment": {"value": 9}}',
                       "--dir", net)  # fmt: skip
    result.assert_user_error(5, "value must be in 1..3")


def test_a_nondeterministic_contract_is_not_certified(net: Path, project: Path) -> None:
    # No forbidden import, and still nondeterministic: each validator gets another object id.
    contract = project / "contract.py"
    contract.write_text(
        contract.read_text().replace(
            "self.state.steps.push(operation.value)",
            "self.state.steps.push(id(object()) % 1000)",
        )
    )
    with Client.open(net) as client:
        module = client.publish_module(project).module_id
        app = client.create_application(module, argument=0).application_id
        height = client.chain.height
        with pytest.raises(QuorumNotReached, match="different state hash"):
            client.call_application(app, {"Increment": {"value": 1}})
        assert client.chain.height == height


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("contract.py", "import random\n"), "contract.py:1: imports random"),
        (("contract.py", "def broken(:\n"), "contract.py:1:"),
        (("state.py", "raise RuntimeError('boom')\n"), "does not import: RuntimeError: boom"),
        (("service.py", "CounterService = None\n", True), "exactly one Service subclass"),
    ],
)
def test_a_module_that_cannot_run_is_refused_at_publish(
    net: Path, project: Path, edit: tuple, message: str
) -> None:
    name, text, *append = edit
    path = project / name
    path.write_text(path.read_text() + text if append else text + path.read_text())
    result = edgechain("app", "publish", project, "--dir", net)
    result.assert_user_error(3, message)
    with Client.open(net) as client:
        assert client.chain.height == 0  # nothing half-published


def test_a_module_over_the_blob_policy_is_refused(tmp_path: Path) -> None:
    net = tmp_path / "net"
    Client.up(net, policy="testnet").close()
    project = new_project("big", tmp_path)
    (project / "data.py").write_text("BLOB = '" + "x" * 1_000_100 + "'\n")
    with Client.open(net) as client, pytest.raises(ResourceLimitExceeded, match="data.py"):
        client.publish_module(project)


def test_a_bad_json_argument_names_the_field(net: Path, project: Path) -> None:
    assert edgechain("app", "publish", project, "--dir", net).code == 0
    create = ("app", "create", project, "--dir", net)
    edgechain(*create, "--parameters", '{"max_step": "x"}').assert_user_error(
        2, "parameters.max_step: expected an integer"
    )
    edgechain(*create, "--parameters", '{"limit": 1}').assert_user_error(2, "no field 'limit'")
    edgechain(*create, "--argument", "{").assert_user_error(2, "--argument: not JSON")
    assert edgechain(*create, "--argument", "0").code == 0
    call = ("app", "call", project, "--dir", net)
    edgechain(*call, '{"Decrement": {}}').assert_user_error(2, "no operation 'Decrement'")
    edgechain(*call, '{"Increment": {"value": true}}').assert_user_error(
        2, "Increment.value: expected an integer"
    )


def test_publishing_twice_is_a_no_op_and_apps_share_a_module(net: Path, project: Path) -> None:
    with Client.open(net) as client:
        first = client.publish_module(project)
        again = client.publish_module(project)
        assert again.unchanged and again.module_id == first.module_id
        a = client.create_application(first.module_id, argument=1).application_id
        b = client.create_application(first.module_id, argument=5).application_id
        assert a != b  # the id comes from the creating block
        assert client.query_application(a, {"query": "{ value }"})["data"] == {"value": 1}
        assert client.query_application(b, {"query": "{ value }"})["data"] == {"value": 5}


def test_the_abi_decodes_with_field_names() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Rate:
        model: str
        stars: int
        tags: list[str]

    abi = Abi(operations=(Rate,))
    assert abi.operation_from_json({"Rate": {"model": "m", "stars": 3, "tags": ["a"]}}) == Rate(
        "m", 3, ["a"]
    )
    with pytest.raises(InvalidParameter, match=r"Rate\.tags\[1\]: expected a string"):
        abi.operation_from_json({"Rate": {"model": "m", "stars": 3, "tags": ["a", 2]}})
    with pytest.raises(InvalidParameter, match=r"Rate\.stars: missing"):
        decode(Rate, {"model": "m", "tags": []}, "Rate")
    with pytest.raises(InvalidParameter, match="outside the signed 64-bit range"):
        decode(int, 2**64)


def test_app_new_refuses_a_bad_name_or_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter):
        new_project("Not-A-Name", tmp_path)
    new_project("counter", tmp_path)
    with pytest.raises(InputError, match="already exists"):
        new_project("counter", tmp_path)


def test_the_node_serves_a_created_application(net: Path, project: Path) -> None:
    from serve_helpers import running_node

    with Client.open(net) as client:
        module = client.publish_module(project).module_id
        app = client.create_application(module, argument=2).application_id.hex()
    with running_node(net) as node:
        listed = httpx.get(node.base_url + "/").json()["chains"][0]["applications"]
        assert {"kind": "application", "applicationId": app} in [
            {k: a[k] for k in ("kind", "applicationId")} for a in listed
        ]
        path = f"/chains/default/applications/{app[:12]}"
        assert node.data("{ value }", path=path) == {"value": 2}
        mutated = httpx.post(
            node.base_url + path, json={"query": "mutation { increment(value: 3) }"}, timeout=60
        ).json()
        assert mutated["data"] == {"increment": True} and mutated["certificate"]["signers"]
        assert node.data("{ value steps }", path=path) == {"value": 5, "steps": [3]}
        mutation = {"query": "mutation { increment(value: 1) }"}
        refused = httpx.get(node.base_url + path, params=mutation)
        assert refused.status_code == 405
        page = httpx.get(node.base_url + path, headers={"accept": "text/html"})
        assert page.status_code == 200 and "GraphiQL" in page.text
