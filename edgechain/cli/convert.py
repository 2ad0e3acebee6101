"""``edgechain convert``: a llama2.c checkpoint and its tokenizer as one GGUF file."""

from __future__ import annotations

import argparse

NAME = "convert"
HELP = "write a llama2.c checkpoint and its tokenizer.bin as one GGUF file (llama architecture)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register convert's arguments."""
    from edgechain.convert import TYPES

    parser.add_argument("src", metavar="MODEL.bin", help="f32 llama2.c checkpoint")
    parser.add_argument("dst", metavar="OUT.gguf", help="GGUF file to write")
    parser.add_argument("--tokenizer", required=True, metavar="TOK.bin", help="its tokenizer.bin")
    parser.add_argument(
        "--type",
        choices=TYPES,
        default="f32",
        help="tensor type of the matrices (q8_0, q4_0: those whose rows are whole blocks of 32; "
        "q4_k: llama.cpp's Q4_K_M mix, q6_k: Q6_K, for rows of whole 256-value blocks, else "
        "Q8_0; the others and the norms stay f32)",
    )


def execute(args: argparse.Namespace) -> int:
    """Convert and print what was written."""
    from edgechain.convert import convert_to_gguf

    result = convert_to_gguf(args.src, args.tokenizer, args.dst, args.type)
    types = "tensors: " + ", ".join(f"{n} {name}" for name, n in result.type_counts.items())
    print(f"{result.path}: {result.output_bytes} bytes, GGUF llama, {result.kind} ({types})")
    return 0
