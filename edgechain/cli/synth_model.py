"""``edgechain synth-model``: a deterministic random model of a real stories shape, as a
llama2.c checkpoint (and tokenizer.bin) or as a GGUF file of one of the engine's architectures."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgechain.errors import InputError, InvalidParameter

NAME = "synth-model"
HELP = "write a deterministic random model (llama2.c checkpoint + tokenizer, or GGUF) of a shape"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register synth-model's flags."""
    from edgechain.convert import TYPES
    from edgechain.testing.synth import SHAPES
    from edgechain.testing.synth_gguf import ARCHITECTURES

    parser.add_argument(
        "--shape",
        required=True,
        help=f"one of {', '.join(SHAPES)} (the stories models' shapes, TinyLlama's 1.1B, "
        "1.3M: the smallest with rows of whole K-quant blocks)",
    )
    parser.add_argument("--seed", type=int, default=0, help="weights seed (default 0)")
    parser.add_argument("out", metavar="OUT", help="checkpoint (.bin) or GGUF file to write")
    parser.add_argument(
        "--tokenizer", metavar="OUT_TOK.bin", help="also write a matching synthetic tokenizer.bin"
    )
    parser.add_argument(
        "--format",
        choices=("llama2c", "gguf"),
        default="llama2c",
        help="llama2c (default): checkpoint + tokenizer.bin; gguf: one file with the tokenizer",
    )
    parser.add_argument(
        "--arch",
        choices=ARCHITECTURES,
        default="llama",
        help="GGUF architecture (--format gguf): llama, qwen2 (q/k/v biases), qwen3 (q/k norms)",
    )
    parser.add_argument(
        "--head-dim",
        type=int,
        metavar="N",
        help="GGUF heads of N values instead of dim / heads (--format gguf; Qwen3-0.6B: 128)",
    )
    parser.add_argument(
        "--chat-template",
        metavar="NAME|FILE",
        help="GGUF tokenizer.chat_template (--format gguf): chatml, qwen3, llama3, zephyr, "
        "strict (edgechain.testing.chat_templates) or a Jinja file",
    )
    parser.add_argument(
        "--type",
        choices=TYPES,
        default="f32",
        help="GGUF matrices' tensor type (--format gguf), as `edgechain convert --type`",
    )


def execute(args: argparse.Namespace) -> int:
    """Write the files and print their sizes and BLAKE3 hashes."""
    import blake3

    from edgechain.testing.synth import shape_named, synthesize
    from edgechain.testing.synth_gguf import synthesize_gguf

    shape = shape_named(args.shape)
    if not 0 <= args.seed < 2**64:
        raise InvalidParameter(f"seed must be in [0, 2^64), got {args.seed}")
    gguf = args.format == "gguf"
    if gguf and args.tokenizer:
        raise InvalidParameter("--tokenizer: a GGUF file carries its own tokenizer")
    gguf_only = (args.arch != "llama", args.type != "f32", args.head_dim, args.chat_template)
    if not gguf and any(x not in (None, False) for x in gguf_only):
        raise InvalidParameter(
            "--arch, --type, --head-dim and --chat-template apply to --format gguf only"
        )
    template = _chat_template(args.chat_template)
    out = Path(args.out)
    tokenizer = Path(args.tokenizer) if args.tokenizer else None
    for path in (out, tokenizer):
        if path is not None and not path.parent.is_dir():
            raise InputError(f"output directory does not exist: {path.parent}")
    try:
        if gguf:
            synthesize_gguf(
                shape, args.arch, args.seed, out, args.type, args.head_dim, template
            )
        else:
            synthesize(shape, args.seed, out, tokenizer)
    except OSError as err:
        raise InputError(f"cannot write {err.filename or out}: {err.strerror or err}") from None
    for path in (out, tokenizer):
        if path is not None:
            digest = blake3.blake3(max_threads=blake3.blake3.AUTO)
            digest.update_mmap(path)
            print(f"{path}: {path.stat().st_size} bytes, blake3 {digest.hexdigest()}")
    return 0


def _chat_template(value: str | None) -> str | None:
    """A named template's source, or a Jinja file's text."""
    from edgechain.cli.common import read_text_file
    from edgechain.testing.chat_templates import TEMPLATES

    if value is None:
        return None
    if value in TEMPLATES:
        return TEMPLATES[value]
    return read_text_file(value, "chat template", 1 << 20)
