"""``edgechain synth-model``: a deterministic random checkpoint of a real stories shape."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgechain.errors import InputError, InvalidParameter

NAME = "synth-model"
HELP = "write a deterministic random llama2.c checkpoint (and tokenizer) of a stories shape"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register synth-model's flags."""
    from edgechain.testing.synth import SHAPES

    parser.add_argument(
        "--shape",
        required=True,
        help=f"one of {', '.join(SHAPES)} (the stories models' shapes, TinyLlama's 1.1B)",
    )
    parser.add_argument("--seed", type=int, default=0, help="weights seed (default 0)")
    parser.add_argument("out", metavar="OUT.bin", help="checkpoint to write")
    parser.add_argument(
        "--tokenizer", metavar="OUT_TOK.bin", help="also write a matching synthetic tokenizer.bin"
    )


def execute(args: argparse.Namespace) -> int:
    """Write the files and print their sizes and BLAKE3 hashes."""
    import blake3

    from edgechain.testing.synth import shape_named, synthesize

    shape = shape_named(args.shape)
    if not 0 <= args.seed < 2**64:
        raise InvalidParameter(f"seed must be in [0, 2^64), got {args.seed}")
    out = Path(args.out)
    tokenizer = Path(args.tokenizer) if args.tokenizer else None
    for path in (out, tokenizer):
        if path is not None and not path.parent.is_dir():
            raise InputError(f"output directory does not exist: {path.parent}")
    try:
        synthesize(shape, args.seed, out, tokenizer)
    except OSError as err:
        raise InputError(f"cannot write {err.filename or out}: {err.strerror or err}") from None
    for path in (out, tokenizer):
        if path is not None:
            digest = blake3.blake3(max_threads=blake3.blake3.AUTO)
            digest.update_mmap(path)
            print(f"{path}: {path.stat().st_size} bytes, blake3 {digest.hexdigest()}")
    return 0
