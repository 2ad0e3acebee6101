"""Moves tokens from alice's chain to bob's forever, one line per step, until killed
(tests/test_messages.py kills it with SIGKILL at various points)."""

from __future__ import annotations

import sys

from edgechain.client import Client


def main(net: str, app: str, bob: str) -> None:
    step = 0
    while True:
        with Client.open(net) as alice:
            alice.call_application(app, {"Transfer": {"to_chain": bob, "amount": 1}})
        print(f"sent {step}", flush=True)
        with Client.open(net, chain="bob") as receiver:
            receiver.process_inbox()
        print(f"taken {step}", flush=True)
        step += 1


if __name__ == "__main__":
    main(*sys.argv[1:4])
