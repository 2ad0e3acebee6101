"""``edgechain generate``: a ``generate`` query on the service, over certified state only.

The service looks the model up in certified state, fetches the weights and tokenizer from the
registered URLs (or its cache), checks their BLAKE3 hashes against the certified ones and only
then runs them. The prompt and the tokens stream to stdout as ``edgechain run`` prints them;
what was verified goes to stderr (``--json`` prints the final record instead).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from typing import Any, Protocol

from edgechain.chain.committee import Committee
from edgechain.cli.network_options import (
    add_allow_host_option,
    add_dir_option,
    add_engine_option,
    add_json_option,
    open_engine_client,
)
from edgechain.cli.progress import ProgressBar
from edgechain.cli.render import certificate_line, print_json
from edgechain.contract.registry import CertifiedModel
from edgechain.errors import InvalidParameter
from edgechain.service.query import GenerateQuery, Parameter, defaults, parameters, required
from edgechain.service.query_stream import QueryStream
from edgechain.service.records import GenerationRecord

NAME = "generate"
HELP = (
    "generate text with a certified model (the service verifies its hashes first; -n counts "
    "new tokens, the prompt's excluded)"
)

_EXAMPLES = """\
examples:
  edgechain generate --model stories260K -i "Once upon a time" -n 100
  edgechain generate --model stories260K -i "Once upon a time" -t 0 --json
  edgechain generate --model stories260K -i "Lily" -s 42 --stop "." --version 1

-n counts new tokens here (the prompt excluded); `edgechain run -n` counts positions including
the prompt, as llama2.c's run.c does. The same query with a larger -n extends the same story:
the token budget and --stop do not enter the derived seed.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register generate's flags: one per field of the query (service/query.py), with
    run.c's letters where they mean the same."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EXAMPLES
    add_query_arguments(parser)
    add_allow_host_option(parser)
    add_engine_option(parser)
    parser.add_argument(
        "--receipt",
        metavar="FILE",
        default=None,
        help="also write the generation's receipt to FILE (replay it with `edgechain receipt "
        "verify FILE`; docs/receipts.md)",
    )
    add_json_option(parser, "print the final record as JSON, not the stream")
    add_dir_option(parser)


_METAVARS = {"model": "NAME", "prompt": "TEXT", "messages": "JSON", "stop": "S"}


def add_query_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`GenerateQuery` field; unset flags take the query's defaults."""
    defaults_ = defaults()
    for name, spec in parameters().items():
        flags = ([f"-{spec.short}"] if spec.short else []) + [Parameter.flag(name)]
        options: dict[str, Any] = {
            "dest": name,
            "default": None,
            "metavar": _METAVARS.get(name, name.split("_")[-1].upper()),
            "help": spec.describe(defaults_.get(name)),
        }
        if name in required():
            options["required"] = True
        if spec.kind == "texts":
            options["action"] = "append"
        elif spec.kind not in ("text",):
            options["type"] = _parser(spec, name)
        parser.add_argument(*flags, **options)


def _parser(spec: Parameter, name: str) -> Any:
    def parse(text: str) -> Any:
        try:
            return spec.parse(text, name)
        except InvalidParameter as err:  # argparse reports it as a usage error (exit 2)
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = spec.kind
    return parse


def query_from_args(args: argparse.Namespace) -> GenerateQuery:
    """The query the flags describe (validated: InvalidParameter, InvalidText)."""
    given = {name: getattr(args, name) for name in parameters()}
    if given["stop"] is not None:
        given["stop"] = tuple(given["stop"])
    return GenerateQuery(**{k: v for k, v in given.items() if v is not None})


def execute(args: argparse.Namespace) -> int:
    """Run the query, report what was verified, stream it; returns the exit code."""
    query = query_from_args(args)
    with open_engine_client(args) as client:
        bar = ProgressBar()  # the model's first download, on a terminal
        try:
            stream = client.generate(query, progress=lambda f, d, t: bar(f"downloading {f}", d, t))
        finally:
            bar.close()
        if args.json:
            record = stream.collect()
            _write_receipt(args, stream)
            print_json(record.to_dict())
            return 0
        # What runs is verified before the first token: say so before the story.
        for line in verified_lines(stream, client.network.committee):
            print(line, file=sys.stderr)
        sys.stderr.flush()
        record = _stream(stream)
        print(generated_line(record), file=sys.stderr)
        receipt = _write_receipt(args, stream)
        if receipt is not None:
            print(f"  receipt      {receipt.hash} in {args.receipt}", file=sys.stderr)
    return 0


def _write_receipt(args: argparse.Namespace, stream: QueryStream) -> Any:
    if args.receipt is None:
        return None
    from edgechain.service.receipt import build_receipt

    receipt = build_receipt(stream)
    receipt.save(args.receipt)
    return receipt


def _stream(stream: QueryStream) -> GenerationRecord:
    out = sys.stdout.buffer
    try:
        # The first step runs the prompt: a failure there (a prompt that does not fit) is
        # reported before anything is printed, so stdout never holds half a story.
        first = next(stream, None)
        out.write(stream.prompt_text.encode("utf-8"))
        out.flush()
        for token in itertools.chain([first] if first is not None else [], stream):
            out.write(token.data)
            out.flush()
    except KeyboardInterrupt:
        stream.cancel()
        raise
    out.write(b"\n")
    out.flush()
    assert stream.record is not None
    return stream.record


class _Verified(Protocol):
    model: CertifiedModel
    seed: int
    seed_source: str


def verified_lines(run: _Verified, committee: Committee) -> list[str]:
    """What a query runs on (a :class:`QueryStream` before its first token, or the final
    :class:`GenerationRecord`), for a human (the examples print it too)."""
    model = run.model
    entry = model.entry
    how = (
        "given with the query"
        if run.seed_source == "query"
        else "derived from the chain id, block hash, application id and query"
    )
    return [
        f"verified: {entry.name} version {entry.version}",
        f"  weights      blake3 {entry.weights.blake3} ({entry.weights.size:,} bytes)",
        f"  tokenizer    blake3 {entry.tokenizer.blake3} ({entry.tokenizer.size:,} bytes)",
        f"  certificate  {certificate_line(model.certificate, committee)}",
        f"  seed         {run.seed} ({how})",
    ]


def generated_line(record: GenerationRecord) -> str:
    """How the generation went: token counts, speed, why it stopped."""
    return (
        f"  generated    {record.output_tokens} tokens after {record.input_tokens} prompt tokens, "
        f"{record.timings.decode_tokens_per_s:.1f} tokens/s, stop: {record.stop_reason}"
    )
