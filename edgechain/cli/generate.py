"""``edgechain generate``: a ``generate`` query on the service, over certified state only.

The service looks the model up in certified state, fetches the weights and tokenizer from the
registered URLs (or its cache), checks their BLAKE3 hashes against the certified ones and only
then runs them. The prompt and the tokens stream to stdout as ``edgechain run`` prints them;
what was verified goes to stderr (``--json`` prints the final record instead).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from edgechain.chain.network import Network
from edgechain.cli.network_options import (
    add_dir_option,
    certificate_line,
    network_dir,
    print_json,
)
from edgechain.cli.progress import ProgressBar
from edgechain.client import Client
from edgechain.service.fetch import FetchPolicy
from edgechain.service.runtime import GenerateQuery, GenerationRecord, QueryStream

NAME = "generate"
HELP = "generate text with a certified model (the service verifies its hashes first)"

_DEFAULTS = {f.name: f.default for f in fields(GenerateQuery)}

_EXAMPLES = """\
examples:
  edgechain generate --model stories260K -i "Once upon a time" -n 100
  edgechain generate --model stories260K -i "Once upon a time" -t 0 --json
  edgechain generate --model stories260K -i "Lily" -s 42 --stop "." --version 1
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register generate's flags (run.c's letters where they mean the same)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EXAMPLES
    parser.add_argument("--model", required=True, metavar="NAME", help="registered model name")
    parser.add_argument("--version", default=None, help="model version (default latest active)")
    parser.add_argument("-i", "--prompt", default="", help="input prompt (default empty)")
    parser.add_argument(
        "-t",
        "--temperature",
        type=float,
        default=None,
        help=f"0 = greedy argmax (default {_DEFAULTS['temperature']})",
    )
    parser.add_argument(
        "-p",
        "--top-p",
        type=float,
        default=None,
        help=f"nucleus sampling in (0, 1] (default {_DEFAULTS['top_p']})",
    )
    parser.add_argument(
        "-s",
        "--seed",
        type=int,
        default=None,
        help="random seed (default: derived from the chain id, the certified block hash, the "
        "application id and the query, so the same query on the same state repeats)",
    )
    parser.add_argument(
        "-n",
        "--max-tokens",
        type=int,
        default=None,
        help=f"tokens to generate at most (default {_DEFAULTS['max_tokens']})",
    )
    parser.add_argument(
        "--stop",
        action="append",
        default=[],
        metavar="S",
        help="stop when the text contains S (repeatable)",
    )
    parser.add_argument(
        "--repeat-penalty",
        type=float,
        default=None,
        help=f">= 1.0; 1 = off (default {_DEFAULTS['repeat_penalty']})",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST",
        help="also let the service fetch from HOST (only loopback is allowed by default)",
    )
    parser.add_argument(
        "--engine", choices=("wasm", "native"), default="wasm", help="backend (default wasm)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the final record as JSON, not the stream"
    )
    add_dir_option(parser)


def execute(args: argparse.Namespace) -> int:
    """Run the query, stream it, report what was verified; returns the exit code."""
    from edgechain.service.engine import open_engine

    given = {
        "version": args.version,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "seed": args.seed,
        "max_tokens": args.max_tokens,
        "repeat_penalty": args.repeat_penalty,
    }
    query = GenerateQuery(
        model=args.model,
        prompt=args.prompt,
        stop=tuple(args.stop),
        **{k: v for k, v in given.items() if v is not None},
    )
    policy = FetchPolicy().with_hosts(*args.allow_host)
    # The network first: a missing network is reported before a missing engine.
    network = Network.open(network_dir(args))
    try:
        engine = open_engine(args.engine)
    except BaseException:
        network.close()
        raise
    with Client(network, engine=engine, fetch_policy=policy) as client:
        bar = ProgressBar()  # the model's first download, on a terminal
        try:
            stream = client.generate(query, progress=lambda f, d, t: bar(f"downloading {f}", d, t))
        finally:
            bar.close()
        if args.json:
            record = stream.collect()
            print_json(record.to_dict())
            return 0
        record = _stream(stream)
        committee = client.network.committee
        for line in verified_lines(record, committee.quorum, len(committee.members)):
            print(line, file=sys.stderr)
    return 0


def _stream(stream: QueryStream) -> GenerationRecord:
    out = sys.stdout.buffer
    out.write(stream.prompt_text.encode("utf-8"))
    out.flush()
    try:
        for token in stream:
            out.write(token.data)
            out.flush()
    except KeyboardInterrupt:
        stream.cancel()
        raise
    out.write(b"\n")
    out.flush()
    assert stream.record is not None
    return stream.record


def verified_lines(record: GenerationRecord, quorum: int, validators: int) -> list[str]:
    """What a query ran on and how it went, for a human (the examples print it too)."""
    model = record.model
    entry = model.entry
    how = (
        "given with the query"
        if record.seed_source == "query"
        else "derived from the chain id, block hash, application id and query"
    )
    return [
        f"verified: {entry.name} version {entry.version}",
        f"  weights      blake3 {entry.weights.blake3} ({entry.weights.size:,} bytes)",
        f"  tokenizer    blake3 {entry.tokenizer.blake3} ({entry.tokenizer.size:,} bytes)",
        f"  certificate  {certificate_line(model.certificate, quorum, validators)}",
        f"  seed         {record.seed} ({how})",
        f"  generated    {record.output_tokens} tokens after {record.input_tokens} prompt tokens, "
        f"{record.timings.decode_tokens_per_s:.1f} tokens/s, stop: {record.stop_reason}",
    ]
