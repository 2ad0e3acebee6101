"""`edgechain generate` through the CLI: streamed stories, what was verified, failures.

These run the real wasm guest: a missing guest makes them fail (build it with
scripts/build_guest.sh), never skip.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from network_cli_helpers import edgechain, make_network

from edgechain.client import Client
from edgechain.contract.generation_request import Parameter, parameters
from edgechain.testing.models import ModelFiles, stories260k_golden
from edgechain.testing.weight_server import HostFault, WeightServer

PROMPT = "Once upon a time"


@pytest.fixture
def golden(stories260k: ModelFiles) -> str:
    """run.c's greedy output for PROMPT (256 positions), as text."""
    return stories260k_golden(stories260k).decode("utf-8")


def generate(net: Path, *args: str):
    return edgechain("generate", "--model", "stories260K", "--dir", net, *args)


def test_greedy_generation_streams_run_c_text_then_what_was_verified(
    stories_net: Path, golden: str, stories260k: ModelFiles
) -> None:
    result = generate(stories_net, "-i", PROMPT, "-t", "0", "-n", "60")
    assert result.code == 0, result.err
    assert result.out.startswith(PROMPT + ", there was a little girl named Lily")
    assert result.out.endswith("\n")
    assert golden.startswith(result.out[:-1])  # a prefix of run.c's own output
    err = result.err
    assert "verified: stories260K version 1" in err
    assert f"weights      blake3 {stories260k.weights_blake3}" in err
    assert f"tokenizer    blake3 {stories260k.tokenizer_blake3}" in err
    assert "certificate  height 0, block " in err and "(quorum 3 of 4)" in err
    assert "derived from the chain id, block hash, application id and query" in err
    assert "generated    60 tokens" in err and "tokens/s, stop: max_tokens" in err


def test_json_prints_the_final_record(stories_net: Path, stories260k: ModelFiles) -> None:
    result = generate(stories_net, "-i", PROMPT, "-s", "42", "-n", "20", "--json")
    assert result.code == 0, result.err
    record = result.json()
    assert record["seed"] == "42" and record["seed_source"] == "query"  # u64 as a string
    assert record["output_tokens"] == 20 and record["stop_reason"] == "max_tokens"
    assert record["model"]["weights"]["blake3"] == stories260k.weights_blake3
    assert record["model"]["certificate_height"] == 0
    assert record["timings"]["decode_tokens_per_s"] > 0
    assert PROMPT not in record["text"]  # the record holds the generated text only


def test_json_has_the_prompt_and_the_text_the_stream_prints_both(stories_net: Path) -> None:
    streamed = generate(stories_net, "-i", PROMPT, "-t", "0", "-n", "12")
    record = generate(stories_net, "-i", PROMPT, "-t", "0", "-n", "12", "--json").json()
    assert record["prompt"] == PROMPT and record["text"].startswith(", there was")
    assert streamed.out == record["prompt"] + record["text"] + "\n"


def test_the_same_query_on_the_same_state_repeats(stories_net: Path) -> None:
    derived = [generate(stories_net, "-i", PROMPT, "-n", "30", "--json").json() for _ in range(2)]
    assert derived[0]["seed_source"] == "derived"
    assert derived[0]["seed"] == derived[1]["seed"]
    assert derived[0]["text"] == derived[1]["text"]
    seeded = [
        generate(stories_net, "-i", PROMPT, "-n", "30", "-s", "7", "--json").json() for _ in "ab"
    ]
    assert seeded[0]["text"] == seeded[1]["text"] and seeded[0]["seed"] == "7"


def test_stop_strings_and_sampling_flags(stories_net: Path) -> None:
    result = generate(
        stories_net, "-i", PROMPT, "-t", "0", "--stop", "Lily", "-n", "100",
        "--repeat-penalty", "1.1", "-p", "0.5", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    record = result.json()
    assert record["stop_reason"] == "stop_string"
    assert record["text"].endswith("Lily")


def test_a_version_can_be_chosen(stories_net: Path) -> None:
    assert generate(stories_net, "--version", "1", "-n", "3").code == 0
    generate(stories_net, "--version", "9", "-n", "3").assert_user_error(6, "version 9")


def test_unknown_and_retired_models_are_service_errors(stories_net: Path) -> None:
    edgechain("generate", "--model", "nope", "--dir", stories_net).assert_user_error(
        6, "no model named nope"
    )
    retired = edgechain("model", "retire", "stories260K", "--version", "1", "--dir", stories_net)
    assert retired.code == 0
    generate(stories_net, "-i", PROMPT).assert_user_error(6, "retired")


def _out_of_range_flags() -> list[tuple[tuple[str, str], str]]:
    """Each number the request declares, just past each end of its range, as its flag: the
    refusal names the field and its range."""
    cases = []
    for name, spec in parameters().items():
        if spec.kind not in ("int", "float", "u64"):
            continue
        flag = f"-{spec.short}" if spec.short else Parameter.flag(name)
        refusal = f"{name} must be {spec.range_text()}"
        low, high = spec.minimum, spec.maximum
        assert low is not None and high is not None, name  # every number is bounded
        below = low if spec.exclusive_minimum else low - 1
        above = high * 2 if spec.kind == "float" else high + 1
        cases += [((flag, str(below)), refusal), ((flag, str(above)), refusal)]
    return cases


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [*_out_of_range_flags(), (("-t", "warm"), "temperature must be a number")],
)
def test_bad_parameters_are_usage_errors(
    stories_net: Path, flags: tuple[str, ...], fragment: str
) -> None:
    generate(stories_net, "-i", PROMPT, *flags).assert_user_error(2, fragment)


def test_bytes_that_do_not_match_the_certified_hash_never_run(
    stories_net: Path, served: WeightServer
) -> None:
    served.inject("stories260K.bin", HostFault(corrupt_offset=1000))
    result = generate(stories_net, "-i", PROMPT)
    result.assert_user_error(6, "BLAKE3 mismatch")
    assert result.out == ""  # not even the prompt: nothing ran


def test_an_unreachable_weight_server_is_a_service_error(
    stories_net: Path, served: WeightServer
) -> None:
    served.stop()
    generate(stories_net, "-i", PROMPT).assert_user_error(6, "connection failed")


def test_generate_needs_a_network(tmp_path: Path) -> None:
    edgechain("generate", "--model", "m", "--dir", tmp_path / "nowhere").assert_user_error(
        4, "no edgechain network"
    )
    edgechain("generate", "--dir", tmp_path).assert_user_error(2, "--model")


def test_a_hub_host_is_refused_unless_allowed(tmp_path: Path, stories260k: ModelFiles) -> None:
    net = make_network(tmp_path / "net")
    with Client.open(net) as client:
        client.publish_model(
            "stories260K",
            weights=stories260k.weights,
            tokenizer=stories260k.tokenizer,
            weights_urls=["https://hub.invalid/stories260K.bin"],
            tokenizer_urls=["https://hub.invalid/tok512.bin"],
            check_urls=False,  # the point: a host no service may reach
        )
    generate(net, "-i", PROMPT).assert_user_error(6, "host not allowed")
    # Allowed: the fetch is attempted (and fails: .invalid never resolves).
    allowed = generate(net, "-i", PROMPT, "--allow-host", "hub.invalid")
    allowed.assert_user_error(6, "hub.invalid")
    assert "host not allowed" not in allowed.err


def test_both_engines_tell_the_same_story(stories_net: Path) -> None:
    records = [
        generate(stories_net, "-i", PROMPT, "-n", "40", "-s", "3", "--engine", kind, "--json")
        .json()
        for kind in ("wasm", "native")
    ]
    assert records[0]["text"] == records[1]["text"]
    assert records[0]["output_tokens"] == records[1]["output_tokens"] == 40


def test_what_was_verified_comes_before_the_story_and_the_counts_after(stories_net: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edgechain.cli", "generate", "--model", "stories260K",
         "--dir", str(stories_net), "-i", PROMPT, "-t", "0", "-n", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    out = done.stdout
    order = [out.index(s) for s in ("verified:", "  seed ", PROMPT, "  generated    20 tokens")]
    assert order == sorted(order), out


def test_a_larger_budget_extends_the_same_story(stories_net: Path) -> None:
    texts = [
        generate(stories_net, "-i", "Lily", "-t", "1.0", "-n", str(n), "--json").json()["text"]
        for n in (20, 60)
    ]
    assert texts[1].startswith(texts[0]) and len(texts[1]) > len(texts[0])


def test_json_seeds_are_decimal_strings(stories_net: Path) -> None:
    seed = 2**64 - 1  # a double would make it 18446744073709551616
    record = generate(stories_net, "-i", PROMPT, "-s", str(seed), "-n", "3", "--json").json()
    assert record["seed"] == str(seed)
    assert isinstance(generate(stories_net, "-n", "3", "--json").json()["seed"], str)


def test_a_prompt_too_long_prints_nothing_before_the_error(stories_net: Path) -> None:
    result = generate(stories_net, "-i", "dog " * 600)
    result.assert_user_error(7, "prompt too long")
    assert result.out == ""  # the prompt is not echoed first
    assert "verified:" not in result.err
