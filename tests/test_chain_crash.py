"""kill -9 during a stream of commits: reopening is clean and no certified block is lost."""

import os
import random
import signal
import subprocess
import sys
import time

from edgechain.chain import Network

WRITER = """
import sys
from edgechain.applications import register_applications
from edgechain.chain import Network
from edgechain.contract import FileRef, RegisterModel

register_applications()
net = Network.open(sys.argv[1])
chain = net.default_chain()
app = chain.application("model-registry")
ref = FileRef("ab" * 32, 4096, ("http://127.0.0.1:8000/model.bin",))
while True:
    cert = chain.execute(app.id, RegisterModel("crash", str(chain.height), ref, ref))
    # Printed only after the commit returned: every printed height is certified and durable.
    print(cert.height, flush=True)
"""


def _run_and_kill(path, after_lines: int, rng: random.Random) -> int:
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = -1
    try:
        for _ in range(after_lines):
            line = child.stdout.readline()
            assert line, f"writer died early: {child.stderr.read()}"
            last = int(line)
        time.sleep(rng.uniform(0, 0.003))  # land anywhere inside the next commit
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    return last


def test_kill_9_never_loses_a_certified_block(tmp_path):
    path = tmp_path / "net"
    Network.create(path, validators=4).close()
    rng = random.Random(7)
    for round_number in range(4):
        last_certified = _run_and_kill(path, after_lines=15 + 5 * round_number, rng=rng)
        with Network.open(path) as net:  # re-verifies every block, certificate and the state
            chain = net.default_chain()
            assert chain.height >= last_certified + 1
            stored = [b.height for b in chain.blocks()]
            assert stored == list(range(chain.height))
            app = chain.application("model-registry")
            assert app.query_model("crash", str(last_certified)).height == last_certified
