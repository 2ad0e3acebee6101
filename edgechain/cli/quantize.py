"""``edgechain quantize``: an f32 llama2.c checkpoint as an int8 (version 2, Q8_0) one."""

from __future__ import annotations

import argparse

NAME = "quantize"
HELP = "write an f32 llama2.c checkpoint as an int8 one (runq.c's version-2 Q8_0 format)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register quantize's arguments."""
    parser.add_argument("src", metavar="IN.bin", help="f32 llama2.c checkpoint")
    parser.add_argument("dst", metavar="OUT.bin", help="int8 checkpoint to write")
    parser.add_argument(
        "--group-size",
        type=int,
        metavar="N",
        help="values per scale (default: the largest power of two <= 64 dividing dim and "
        "hidden_dim)",
    )


def execute(args: argparse.Namespace) -> int:
    """Quantize and print what was written."""
    from edgechain.quantize import quantize_checkpoint

    result = quantize_checkpoint(args.src, args.dst, args.group_size)
    print(
        f"{result.path}: {result.output_bytes} bytes (from {result.input_bytes}), "
        f"int8 groups of {result.header.group_size}"
    )
    return 0
