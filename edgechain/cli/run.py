"""``edgechain run``: llama2.c's ``run`` (generate mode) on either engine.

Flags and meanings follow run.c: ``-t`` temperature (0 = argmax), ``-p`` top-p, ``-s`` seed
(0 = time-based), ``-n`` positions including the prompt (0 = seq_len), ``-i`` prompt. The prompt
and the generated text stream to stdout exactly as run.c prints them (final newline included);
the seed and the achieved tokens/s go to stderr. Unlike run.c, out-of-range values are errors
rather than silently clamped.
"""

from __future__ import annotations

import argparse
import sys
import time

from edgechain.cli.common import read_text_file
from edgechain.errors import InvalidParameter

NAME = "run"
HELP = "generate text from a llama2.c checkpoint (run.c's flags)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register run's flags."""
    parser.add_argument("checkpoint", metavar="MODEL.bin", help="llama2.c checkpoint")
    parser.add_argument(
        "-z", "--tokenizer", required=True, metavar="TOKENIZER.bin", help="llama2.c tokenizer.bin"
    )
    parser.add_argument(
        "-t", "--temperature", type=float, default=1.0, help="0 = greedy argmax (default 1.0)"
    )
    parser.add_argument(
        "-p", "--top-p", type=float, default=0.9, help="nucleus sampling in (0, 1] (default 0.9)"
    )
    parser.add_argument(
        "-s", "--seed", type=int, default=0, help="random seed; 0 = time-based, as run.c (default)"
    )
    parser.add_argument(
        "-n",
        "--steps",
        type=int,
        default=256,
        help="positions including the prompt; 0 = the model's seq_len (default 256)",
    )
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("-i", "--prompt", default="", help="input prompt (default empty)")
    prompt.add_argument("-f", "--prompt-file", metavar="FILE", help="read the prompt (UTF-8)")
    parser.add_argument(
        "--engine", choices=("wasm", "native"), default="wasm", help="backend (default wasm)"
    )
    parser.add_argument(
        "--repeat-penalty", type=float, default=1.0, help=">= 1.0; 1 = off (default)"
    )


def execute(args: argparse.Namespace) -> int:
    """Load, generate and stream; returns the exit code."""
    from edgechain.service.engine import GenerationParams, open_engine

    if args.steps < 0:
        raise InvalidParameter(f"steps (-n) must be >= 0, got {args.steps}")
    if args.seed < 0:
        raise InvalidParameter(f"seed (-s) must be >= 0, got {args.seed}")
    seed = args.seed if args.seed > 0 else int(time.time())
    params = GenerationParams(
        temperature=args.temperature,
        top_p=args.top_p,
        seed=seed,
        max_positions=args.steps or None,
        repeat_penalty=args.repeat_penalty,
    ).validate()
    prompt = args.prompt
    if args.prompt_file is not None:
        prompt = read_text_file(args.prompt_file, "prompt file")
    engine = open_engine(args.engine)
    out = sys.stdout.buffer
    # Read by the engine straight into its weights: the process never holds the file's bytes.
    with engine.load_files(args.checkpoint, args.tokenizer) as model:
        generation = model.generate(prompt, params)
        print(f"seed: {seed}", file=sys.stderr)
        out.write(generation.prompt_data)
        out.flush()
        first_token_at = None
        try:
            for token in generation:
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                out.write(token.data)
                out.flush()
        finally:
            generation.cancel()
        finished_at = time.perf_counter()
    out.write(b"\n")
    out.flush()
    n = generation.generated_tokens
    if first_token_at is not None and n > 1 and finished_at > first_token_at:
        rate = (n - 1) / (finished_at - first_token_at)
        print(f"achieved tok/s: {rate:.2f} ({n} tokens, engine {args.engine})", file=sys.stderr)
    return 0
