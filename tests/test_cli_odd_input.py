"""Odd input at every CLI front door is one typed ``error:`` line with the README's exit code.

Each case runs ``edgechain`` as a subprocess with CI=true and no stdin. ``{X}`` is an
undecodable argv byte (0xff): Python sees it as the lone surrogate U+DCFF, and subprocess turns it
back into the byte. The generate command's own flags are covered by its own tests.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from network_cli_helpers import REPO_ROOT, make_network

from edgechain.testing.models import stories260k

# (id, argv (split on spaces; {placeholders} filled in per test), exit code, part of the error)
FILES = "--dir {net} --weights {w} --tokenizer {t} --weights-url {u} --tokenizer-url {u}"
P = "model publish m " + FILES
P_URL = "model publish m --dir {net} --tokenizer {t} --tokenizer-url {u} --weights"
P_FILE = P_URL.replace("--weights", "--weights-url {u} --weights")
RUN = "run {w} -z {t}"
CASES: list[tuple[str, str, int, str]] = [
    # model publish / retire / show: text is checked where the operation or query is built
    ("publish NAME", "model publish {X} " + FILES, 3, "model name is not valid UTF-8"),
    ("publish --version", P + " --version {X}", 3, "model version is not valid UTF-8"),
    ("publish --description", P + " --description a{X}", 3, "description is not valid UTF-8"),
    ("publish --license", P + " --license {X}", 3, "license is not valid UTF-8"),
    ("publish --weights-url", P + " --weights-url http://h/{X}", 3, "weights URL"),
    ("publish --tokenizer-url", P + " --tokenizer-url http://h/{X}", 3, "tokenizer URL"),
    ("publish --weights URL", P_URL + " http://127.0.0.1:9/{X}", 3, "weights is not valid UTF-8"),
    ("publish --weights empty", P_FILE + " {empty}", 2, "not an empty string"),
    ("publish --weights odd file", P_FILE + " {tmp}/{X}", 3, "no such file"),
    ("publish --weights /dev/null", P_FILE + " /dev/null", 3, "character device, not a regular"),
    ("publish --weights a directory", P_FILE + " {tmp}", 3, "directory"),
    ("publish empty --version", P + " --version {empty}", 5, "model version"),
    ("publish long --license", P + " --license {long}", 5, "longer than 128"),
    ("retire NAME", "model retire {X} --version 1 --dir {net}", 3, "model name"),
    ("retire --version", "model retire m --version {X} --dir {net}", 3, "model version"),
    ("show NAME", "model show {X} --dir {net}", 3, "model name is not valid UTF-8"),
    ("list --dir odd", "model list --dir {tmp}/{X}", 4, "no edgechain network"),
    # chain show: HEIGHT is bounded, the bounds named
    ("chain show huge", "chain show {HUGE} --dir {net}", 2, "outside 0..9223372036854775807"),
    ("chain show -huge", "chain show --dir {net} -- -{HUGE}", 2, "outside 0.."),
    ("chain show -1", "chain show --dir {net} -- -1", 2, "outside 0.."),
    ("chain show 1e3", "chain show 1e3 --dir {net}", 2, "invalid int value"),
    ("chain show odd", "chain show {X} --dir {net}", 2, "invalid int value"),
    ("chain show absent", "chain show 5 --dir {net}", 2, "no block at height 5"),
    ("chain verify --dir file", "chain verify --dir {file}", 4, "no edgechain network"),
    # net up: --dir must be (or become) a directory that takes files
    ("net up --dir file", "net up --dir {file}", 3, "is not a directory"),
    ("net up --dir under a file", "net up --dir {file}/sub", 3, "Not a directory"),
    ("net up --dir /proc/x", "net up --dir /proc/edgechain-x", 3, "cannot create a network"),
    ("net up --dir /proc/self", "net up --dir /proc/self", 3, "cannot create a network"),
    ("net up --validators huge", "net up --dir {tmp}/n --validators {HUGE}", 2, "1 and 100"),
    ("net up --validators 0", "net up --dir {tmp}/n --validators 0", 2, "1 and 100"),
    ("net up --faulty odd", "net up --dir {tmp}/n --faulty {X}", 2, "fault"),
    ("net up --faulty nan", "net up --dir {tmp}/n --faulty v1=slow:nan", 2, "nan"),
    ("net up --faulty inf", "net up --dir {tmp}/n --faulty v1=slow:inf", 2, "inf"),
    ("net status --dir file", "net status --dir {file}", 4, "no edgechain network"),
    # bench: checked before anything is synthesised or measured
    ("bench --cache-dir file", "bench --cache-dir {file}", 3, "is not a directory"),
    ("bench --cache-dir /proc", "bench --cache-dir /proc/edgechain-x", 3, "cannot create"),
    ("bench --steps huge", "bench --steps {HUGE}", 2, "outside 2..1048576"),
    ("bench --steps 1", "bench --steps 1", 2, "outside 2..1048576"),
    ("bench --steps nan", "bench --steps nan", 2, "invalid int value"),
    ("bench --seed -1", "bench --seed -1", 2, "outside 0..18446744073709551615"),
    ("bench --seed huge", "bench --seed {HUGE}", 2, "outside 0.."),
    ("bench --shapes odd", "bench --shapes {X}", 2, "unknown shape"),
    ("bench --shapes empty", "bench --shapes ,", 2, "empty"),
    ("bench --prompt odd", "bench --prompt {X} --cache-dir {tmp}/c", 3, "--prompt"),
    # synth-model, serve, run
    ("synth-model --seed -1", "synth-model --shape 260K --seed -1 {tmp}/s.bin", 2, "seed"),
    ("synth-model OUT dir", "synth-model --shape 260K {tmp}", 3, "cannot write"),
    ("synth-model --shape odd", "synth-model --shape {X} {tmp}/s.bin", 2, "unknown shape"),
    ("serve --port huge", "serve --dir {net} --port {HUGE}", 2, "65535"),
    ("serve --port -1", "serve --dir {net} --port -1", 2, "65535"),
    ("serve --host odd", "serve --dir {net} --port 0 --host {X}", 3, "--host"),
    ("serve --dir file", "serve --dir {file} --port 0", 4, "no edgechain network"),
    ("run -z odd path", "run {w} -z {tmp}/{X}", 3, "tokenizer not found"),
    ("run MODEL odd path", "run {tmp}/{X} -z {t}", 3, "checkpoint not found"),
    ("run MODEL a directory", "run {tmp} -z {t}", 3, "directory"),
    ("run MODEL too short", "run {file} -z {t}", 3, "header"),
    ("run -i odd", RUN + " -n 4 -i {X}", 3, "not valid UTF-8"),
    ("run -f odd path", RUN + " -f {tmp}/{X}", 3, "not found"),
    ("run -n huge", RUN + " -n {HUGE}", 2, "99999999999999999999"),
    ("run -s huge", RUN + " -s {HUGE}", 2, "seed"),
    ("run -t nan", RUN + " -t nan", 2, "finite"),
    ("run -p inf", RUN + " -p inf", 2, "top_p"),
    ("run --repeat-penalty nan", RUN + " --repeat-penalty nan", 2, "finite"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("odd")
    (tmp / "afile").write_text("x")
    found = stories260k((REPO_ROOT,))
    return {
        "net": str(make_network(tmp / "net")),
        "file": str(tmp / "afile"),
        "tmp": str(tmp),
        "w": str(found.weights),
        "t": str(found.tokenizer),
        "u": "http://127.0.0.1:9/f",
        "X": "\udcff",  # an undecodable argv byte, as Python sees it
        "HUGE": "99999999999999999999",
        "empty": "",
        "long": "x" * 200,
    }


@pytest.mark.parametrize(
    ("args", "code", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_odd_input_is_one_typed_error_line(
    places: dict[str, str], args: str, code: int, fragment: str
) -> None:
    argv = [a.format(**places) for a in args.split(" ")]
    env = {k: v for k, v in os.environ.items() if k != "EDGECHAIN_DIR"}
    env.update(CI="true", EDGECHAIN_CACHE_DIR=os.path.join(places["tmp"], "cache"))
    done = subprocess.run(
        [sys.executable, "-m", "edgechain.cli", *argv],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )
    err = done.stderr.decode("utf-8", "backslashreplace")
    assert "Traceback" not in err, err
    assert done.returncode == code, f"exit {done.returncode}, wanted {code}: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert done.stdout == b"", done.stdout


def test_refused_publishes_and_retires_certified_nothing(places: dict[str, str]) -> None:
    # Runs after the cases above (same module network): every refusal left the chain empty.
    done = subprocess.run(
        [sys.executable, "-m", "edgechain.cli", "chain", "verify", "--dir", places["net"],
         "--json"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"blocks": 0' in done.stdout
