"""The edgechain story, end to end, in a few seconds.

1. start a local network of mock validators (some of them faulty, if you like),
2. serve the stories260K files over loopback and publish their BLAKE3 hashes through the
   registry contract: the validators certify the block,
3. ask the service for a story: it reads the model's entry from certified state only, fetches
   the weights and tokenizer, checks their hashes against the certified ones and runs them in
   the Wasm guest,
4. print what was verified.

    python examples/story_demo.py
    python examples/story_demo.py --validators 7 --faulty v2=offline,v5=wrong-state -s 42

Without ``--models-dir`` the files are taken from where :mod:`edgechain.testing.models` finds
them (``$EDGECHAIN_MODELS_DIR``, else ``<repo>/../shared/models/stories260K``); when they are
not there either, the demo registers the model hub's URLs with the known hashes and
the service downloads them itself (the hub's hosts are added to its allow-list).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgechain.cli import CliParser
from edgechain.cli.generate import generated_line, verified_lines
from edgechain.client import Client
from edgechain.contract.operations import FileRef, RegisterModel
from edgechain.errors import EdgechainError, InputError
from edgechain.service.fetch import FetchPolicy
from edgechain.service.runtime import GenerateQuery
from edgechain.testing.models import (
    STORIES260K,
    STORIES260K_TOKENIZER,
    STORIES260K_TOKENIZER_BLAKE3,
    STORIES260K_WEIGHTS,
    STORIES260K_WEIGHTS_BLAKE3,
    ModelFiles,
    locate_stories260k,
)
from edgechain.testing.weight_server import WeightServer

MODEL = STORIES260K
WEIGHTS, TOKENIZER = STORIES260K_WEIGHTS, STORIES260K_TOKENIZER

# The published files, for the hub path (sizes and hashes: shared/models/stories260K/README.md).
HUB_BASE = "https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K/"
HUB_FILES = {
    WEIGHTS: FileRef(
        STORIES260K_WEIGHTS_BLAKE3,
        1_056_540,
        (HUB_BASE + WEIGHTS,),
    ),
    TOKENIZER: FileRef(
        STORIES260K_TOKENIZER_BLAKE3,
        6_227,
        (HUB_BASE + TOKENIZER,),
    ),
}
# The hub answers with a redirect to its CDN; every hop is checked against the allow-list.
HUB_HOSTS = ("huggingface.co", "cdn-lfs.huggingface.co", "cdn-lfs.hf.co", "cas-bridge.xethub.hf.co")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = CliParser(prog="story_demo.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=None, help="holds the two files")
    parser.add_argument("--dir", type=Path, default=None, help="network dir (default: temp)")
    parser.add_argument("--validators", type=int, default=4, help="committee size (default 4)")
    parser.add_argument(
        "--faulty", default="v4=offline", help="fault spec (default v4=offline; '' for none)"
    )
    parser.add_argument("-i", "--prompt", default="Once upon a time")
    parser.add_argument("-t", "--temperature", type=float, default=0.8)
    parser.add_argument("-s", "--seed", type=int, default=None, help="default: derived")
    parser.add_argument("-n", "--max-tokens", type=int, default=200)
    return parser.parse_args(argv)


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


@contextlib.contextmanager
def network_dir(explicit: Path | None) -> Iterator[Path]:
    if explicit is not None:
        yield explicit
        return
    with tempfile.TemporaryDirectory(prefix="edgechain-demo-") as tmp:
        yield Path(tmp) / "net"


def publish_local(client: Client, models_dir: Path, server: WeightServer) -> None:
    """Hash the local files and register them with their loopback URLs."""
    client.publish_served(
        MODEL,
        weights=models_dir / WEIGHTS,
        tokenizer=models_dir / TOKENIZER,
        server=server,
        description="Karpathy's stories260K (TinyStories), served over loopback",
        license="MIT",
    )


def publish_hub(client: Client) -> None:
    """Register the hub's URLs with the known hashes; nothing is downloaded here."""
    client.register_model(
        RegisterModel(
            MODEL,
            "1",
            weights=HUB_FILES[WEIGHTS],
            tokenizer=HUB_FILES[TOKENIZER],
            description="Karpathy's stories260K (TinyStories), from the model hub",
            license="MIT",
        )
    )


def run(args: argparse.Namespace) -> int:
    models_dir = args.models_dir
    if models_dir is not None and not models_dir.is_dir():
        raise InputError(f"--models-dir {models_dir}: no such directory")
    if models_dir is None:
        found = locate_stories260k()
        models_dir = found.directory if isinstance(found, ModelFiles) else None
    policy = FetchPolicy() if models_dir is not None else FetchPolicy().with_hosts(*HUB_HOSTS)
    with contextlib.ExitStack() as stack:
        path = stack.enter_context(network_dir(args.dir))
        client = stack.enter_context(
            Client.up(path, validators=args.validators, faulty=args.faulty, fetch_policy=policy)
        )
        status = client.status()
        faulty = [f"{v.name}={v.fault}" for v in status.validators if v.fault]
        say(
            f"network: {len(status.validators)} validators in {path}; a certificate needs "
            f"{status.quorum} signatures; faulty: {', '.join(faulty) or 'none'}"
        )
        if models_dir is not None:
            server = stack.enter_context(WeightServer(models_dir))
            say(f"serving {models_dir} at {server.base_url}")
            publish_local(client, models_dir, server)
        else:
            say(f"no local model files: registering {HUB_BASE} (the service downloads them)")
            publish_hub(client)
        model = client.model(MODEL)
        say(
            f"published {MODEL} version {model.entry.version}: certified at height "
            f"{model.height} by {', '.join(model.certificate.signers)}"
        )

        say("what the service verified before running the model, then the story")
        query = GenerateQuery(
            model=MODEL,
            prompt=args.prompt,
            temperature=args.temperature,
            seed=args.seed,
            max_tokens=args.max_tokens,
        )
        stream = client.generate(query)
        committee = client.network.committee
        # Verified before the first token: the hashes, the certificate, the seed.
        for line in verified_lines(stream, committee):
            print(line)
        out = sys.stdout.buffer
        out.write(stream.prompt_text.encode())
        for token in stream:
            out.write(token.data)
            out.flush()
        out.write(b"\n")
        out.flush()
        assert stream.record is not None
        print(generated_line(stream.record))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except EdgechainError as err:
        sys.stdout.flush()
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
