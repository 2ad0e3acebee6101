"""``edgechain run``: llama2.c's ``run`` on either engine, generate or chat mode.

Flags and meanings follow run.c: ``-t`` temperature (0 = argmax), ``-p`` top-p, ``-s`` seed
(0 = time-based), ``-n`` positions including the prompt (0 = seq_len), ``-i`` prompt, ``-m``
mode (generate, chat), ``-y`` system prompt (chat). In generate mode the prompt and the
generated text stream to stdout exactly as run.c prints them (final newline included); the seed
and the achieved tokens/s go to stderr. Chat mode reads user turns from stdin (``-i`` is the
first) and prints ``User: `` / ``Assistant: `` as run.c does, until stdin ends or the positions
are used up (see ``edgechain.service.engine.chat``). Unlike run.c, out-of-range values are
errors rather than silently clamped.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Iterable
from typing import BinaryIO

from edgechain.cli.common import add_threads_option, engine_options, read_text_file
from edgechain.errors import ContextFull, InvalidParameter, InvalidText
from edgechain.files import PROMPT_FILE_MAX_BYTES
from edgechain.service.engine import ENGINE_KINDS
from edgechain.service.engine.base import (
    GenerationParams,
    LoadedModel,
    StopReason,
    Token,
    text_to_utf8,
)

NAME = "run"
HELP = (
    "generate text or chat with a llama2.c checkpoint (run.c's flags and modes: -n counts "
    "positions, the prompt's included)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register run's flags."""
    parser.add_argument(
        "checkpoint", metavar="MODEL", help="llama2.c checkpoint, or a GGUF file (tokenizer inside)"
    )
    parser.add_argument(
        "-z",
        "--tokenizer",
        metavar="TOKENIZER.bin",
        help="llama2.c tokenizer.bin (required for a llama2.c checkpoint; none for GGUF)",
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
        help="positions including the prompt (run.c's -n; `generate -n` counts new tokens "
        "instead); 0 = the model's seq_len (default 256)",
    )
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument(
        "-i", "--prompt", default=None, help="input prompt; in chat mode the first user turn"
    )
    prompt.add_argument("-f", "--prompt-file", metavar="FILE", help="read the prompt (UTF-8)")
    parser.add_argument(
        "--engine", choices=ENGINE_KINDS, default="wasm", help="backend (default wasm)"
    )
    add_threads_option(parser)
    parser.add_argument(
        "--repeat-penalty", type=float, default=1.0, help=">= 1.0; 1 = off (default)"
    )
    parser.add_argument(
        "-m",
        "--mode",
        choices=("generate", "chat"),
        default="generate",
        help="generate (default) or chat (user turns from stdin; a GGUF file's own chat "
        "template, Llama 2's [INST] for a llama2.c checkpoint)",
    )
    parser.add_argument(
        "-y",
        "--system-prompt",
        default=None,
        metavar="TEXT",
        help="chat mode's system prompt (default: asked on stdin, as run.c does)",
    )


def execute(args: argparse.Namespace) -> int:
    """Load, generate and stream; returns the exit code."""
    from edgechain.service.engine import open_engine

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
        prompt = read_text_file(args.prompt_file, "prompt file", PROMPT_FILE_MAX_BYTES)
    # Odd text is refused before anything is loaded or printed.
    for what, text in (("prompt", prompt), ("system prompt", args.system_prompt)):
        if text is not None:
            text_to_utf8(text, what)
    engine = open_engine(args.engine, **engine_options(args))
    # Read by the engine straight into its weights: the process never holds the file's bytes.
    with engine.load_files(args.checkpoint, args.tokenizer) as model:
        print(f"seed: {seed}", file=sys.stderr)
        if args.mode == "chat":
            generated, first_token_at, finished_at = _chat(model, params, prompt, args)
        else:
            generated, first_token_at, finished_at = _generate(model, params, prompt or "")
    n = generated
    if first_token_at is not None and n > 1 and finished_at > first_token_at:
        rate = (n - 1) / (finished_at - first_token_at)
        print(f"achieved tok/s: {rate:.2f} ({n} tokens, engine {args.engine})", file=sys.stderr)
    return 0


def _generate(
    model: LoadedModel, params: GenerationParams, prompt: str
) -> tuple[int, float | None, float]:
    """run.c's generate(): the prompt, then the tokens, then a newline."""
    out = sys.stdout.buffer
    generation = model.generate(prompt, params)
    first_token_at = None
    try:
        # The first step runs the prompt: a failure there is reported before anything is
        # printed.
        first = next(generation, None)
        out.write(generation.prompt_data)
        out.flush()
        tokens = itertools.chain([first] if first is not None else [], generation)
        first_token_at = _write_tokens(tokens, out, first_token_at)
    finally:
        generation.cancel()
    finished_at = time.perf_counter()
    out.write(b"\n")
    out.flush()
    return generation.generated_tokens, first_token_at, finished_at


def _write_tokens(
    tokens: Iterable[Token], out: BinaryIO, first_token_at: float | None
) -> float | None:
    """Write each token's bytes as it comes; returns when the first token came (or the
    ``first_token_at`` already known)."""
    for token in tokens:
        if first_token_at is None:
            first_token_at = time.perf_counter()
        out.write(token.data)
        out.flush()
    return first_token_at


def _chat(
    model: LoadedModel, params: GenerationParams, prompt: str | None, args: argparse.Namespace
) -> tuple[int, float | None, float]:
    """run.c's chat(): user turns from stdin, the assistant's answers streamed."""
    from edgechain.service.engine.chat import ChatSession

    out = sys.stdout.buffer
    system = args.system_prompt
    if system is None:
        system = _read_line("Enter system prompt (optional): ") or ""
    chat = ChatSession(model, params, system=system, templated=_is_gguf(args.checkpoint))
    user = prompt
    generated, first_token_at = 0, None
    while not chat.over:
        if user is None:
            user = _read_line("User: ")
            if user is None:  # stdin ended: so does the conversation
                break
        try:
            generation = chat.reply(user)
        except ContextFull:
            break  # the dialogue has filled the context, as run.c's loop ends at seq_len
        user = None
        out.write(b"Assistant: ")
        out.flush()
        try:
            first_token_at = _write_tokens(generation, out, first_token_at)
        except BaseException:
            generation.cancel()
            raise
        generated += generation.generated_tokens
        if generation.stop_reason == StopReason.END_OF_SEQUENCE:
            out.write(b"\n")  # run.c ends an answer's line when it samples the end token
        out.flush()
    chat.close()
    out.write(b"\n")
    out.flush()
    return generated, first_token_at, time.perf_counter()


def _is_gguf(path: str) -> bool:
    """Whether the model file is GGUF (its chat template renders the turns)."""
    from edgechain.service.engine.files import GGUF_MAGIC

    with open(path, "rb") as f:
        return f.read(len(GGUF_MAGIC)) == GGUF_MAGIC


def _read_line(guide: str) -> str | None:
    """run.c's read_stdin: print ``guide``, read one line (without its newline); None at EOF."""
    sys.stdout.write(guide)
    sys.stdout.flush()
    line = sys.stdin.buffer.readline() if sys.stdin is not None else b""
    if not line:
        return None
    try:
        return line.rstrip(b"\n").decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidText(f"stdin is not valid UTF-8 (byte 0x{line[err.start]:02x})") from None
