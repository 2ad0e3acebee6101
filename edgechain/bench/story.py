"""Benchmark: the time to certify a story (the proposer generates it, the validators re-execute it
before voting) against one plain generation of the same query, one row per engine.

    python -m edgechain.bench.story [--shape 15M] [--tokens 256] [--validators 4]
                                    [--engines wasm,native,mixed] [--repeats 3] [--all-at-once]

A deterministic synthetic model of the shape is served over loopback and published on a fresh
network; each validator's oracle loads it once, checking a warm-up mint (not timed). Then the same
query (temperature 1.0, a fixed seed) runs as a plain ``generate`` and as a mint, in one run:
``proposer_s`` is the mint's generation, ``certify_s`` the block's certification (a quorum of
validators checks the story, more if one fails, verifying the block's token ids as a claim, in
parallel threads), and
``ratio`` is (proposer + certify) / generate (issue 23's goals: at most 1.5 native and mixed, 2
wasm, with 4 validators on 2 cores). A row's engine runs the proposer and every validator;
``mixed`` is the default assignment (wasm and native in turn). With fewer cores than validators
their runs share the cores.

Where the certification went: ``certify_phases`` splits ``certify_s`` into ``proposal_s``
(execute, hash and sign the block), ``votes_s`` (until a quorum signed), ``commit_s`` (store the
block, apply it to every replica) and ``rest_s`` (reading the minted story back); ``votes``
gives each validator's answer, in seconds from the start of the certification: ``asked_at`` and
``answered_at`` (``asked`` false: a quorum signed without it), ``prepare_s`` (the query
resolved against certified state), ``check_s`` (verifying the claim; ``warm``: the model was
already loaded), ``execute_s``, ``sign_s``, ``other_s`` (the rest of its answer: the block's
own checks, waits for its lock or the GIL) and whether its vote is in the certificate. A
quorum-first certification asks the validators whose engines check fastest first (native
before wasm on a ``mixed`` row, chain/agreement.py).

A row is ``--repeats`` rounds (a plain generation, then a mint of the same query, each round
its own seed), interleaved so that a drift of the machine's speed falls on both: the row's
figures are its median round's (by ``ratio``), and ``ratios`` lists every round's. One round
swings by a fifth on a quiet 2-core machine (a two-thread decode of a small model is sensitive
to scheduling), so a single round says little.

On a shared machine wall times swing with the other jobs: ``generate_cpu_s``,
``proposer_cpu_s`` (the mint's generation: the same work as the plain one, plus its receipt),
``certify_cpu_s`` and ``cpu_ratio`` ((proposer + certify) / generate, in this process's CPU
time) do not grow with the load. ``--all-at-once`` asks every validator at once
(``quorum_first`` false: the scheduling before issue 23), to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from typing import Any

from edgechain.bench.arguments import comma_separated
from edgechain.bench.network import BENCH_MODEL, synthetic_model_network
from edgechain.bench.rows import row_or_error
from edgechain.chain.certificate import Certificate
from edgechain.chain.oracle import OracleCall
from edgechain.service.engine import ENGINE_KINDS, open_engine
from edgechain.service.query import GenerateQuery

__all__ = ["run", "run_rows"]

ENGINE_CHOICES = (*ENGINE_KINDS, "mixed")


def run(
    shape_name: str,
    tokens: int,
    validators: int,
    engines: str | None,
    all_at_once: bool = False,
    repeats: int = 1,
) -> dict[str, object]:
    """Time ``repeats`` rounds of one plain generation and one certified mint of the same
    query; the median round's row. ``engines``: the engine of the proposer and every validator
    (None or "mixed": wasm proposer, validators wasm and native in turn); ``all_at_once``:
    every validator checks the mint's block, not a quorum first."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    single = engines if engines in ENGINE_KINDS else None
    options: dict[str, object] = {"validators": validators}
    if single is not None:
        options["engine"] = open_engine(single)
    with synthetic_model_network(shape_name, 1, **options) as c:
        if single is not None:
            c.validator_engines = {n: single for n in c.network.committee.names}
        _warm_up(c)
        c.network.quorum_first = not all_at_once
        rounds = [_round(c, tokens, seed=7 + i) for i in range(repeats)]
        row = sorted(rounds, key=lambda r: r["ratio"])[(repeats - 1) // 2]
        return {
            "shape": shape_name,
            "engines": engines or "mixed",
            **row,
            "validators": validators,
            "validator_engines": dict(c.validator_engines),
            "cores": os.cpu_count(),
            "quorum_first": not all_at_once,
            "repeats": repeats,
            "ratios": [r["ratio"] for r in rounds],
            "cpu_ratios": [r["cpu_ratio"] for r in rounds],
        }


def _round(c: Any, tokens: int, seed: int) -> dict[str, Any]:
    """One plain generation, then a certified mint of the same query: their times."""
    query = GenerateQuery(
        model=BENCH_MODEL, prompt="Once upon a time", temperature=1.0, seed=seed, max_tokens=tokens
    )
    started, cpu = time.perf_counter(), _cpu_s()
    record = c.generate(query).collect()
    generate_s, generate_cpu_s = time.perf_counter() - started, _cpu_s() - cpu
    started, cpu = time.perf_counter(), _cpu_s()
    generated = c.prepare_mint(query).generate()
    proposer_s, proposer_cpu_s = time.perf_counter() - started, _cpu_s() - cpu
    started, cpu = time.perf_counter(), _cpu_s()
    minted = c.certify_mint(generated)
    certify_s, certify_cpu_s = time.perf_counter() - started, _cpu_s() - cpu
    phases = _certify_phases(c.chain.last_phases, certify_s)
    timeline = _validator_timeline(c, minted.certificate, started)
    assert minted.story.tokens == record.output_tokens
    assert minted.story.text == record.text
    mint_s = proposer_s + certify_s
    return {
        "tokens": record.output_tokens,
        "stop_reason": record.stop_reason,
        "signers": len(minted.certificate.signers),
        "generate_s": round(generate_s, 3),
        "proposer_s": round(proposer_s, 3),
        "certify_s": round(certify_s, 3),
        "mint_s": round(mint_s, 3),
        "ratio": round(mint_s / generate_s, 2),
        "generate_cpu_s": round(generate_cpu_s, 3),
        "proposer_cpu_s": round(proposer_cpu_s, 3),
        "certify_cpu_s": round(certify_cpu_s, 3),
        "cpu_ratio": round((proposer_cpu_s + certify_cpu_s) / generate_cpu_s, 2),
        "certify_phases": phases,
        "votes": timeline,
    }


def _cpu_s() -> float:
    """This process's CPU time so far, every thread's (the validators' checks run in threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _warm_up(c: Any) -> None:
    """Mint a short story and have every validator check its block, so that each has the model
    loaded (a quorum certifies the mint without the others: they would load it in the timed
    one)."""
    warm = c.mint_story(GenerateQuery(model=BENCH_MODEL, prompt="warm", max_tokens=2))
    [operation] = c.chain.block(warm.certificate.height).block.operations
    for validator in c.network.validators:
        validator.oracle.response(OracleCall(c.chain.id, operation, timeout=600.0))


def _certify_phases(last: dict[str, float], certify_s: float) -> dict[str, float]:
    phases = {f"{name}_s": round(seconds, 3) for name, seconds in last.items()}
    phases["rest_s"] = round(certify_s - sum(last.values()), 3)
    return phases


def _validator_timeline(c: Any, certificate: Certificate, started: float) -> dict[str, object]:
    """Each validator's answer to the mint's block (the module's docstring)."""
    timeline: dict[str, object] = {}
    for validator in c.network.validators:
        times = validator.answer_times(certificate.block_hash)
        if times is None:
            timeline[validator.name] = {"asked": False}
            continue
        entry: dict[str, object] = {
            "asked_at": round(times.asked_at - started, 3),
            "answered_at": round(times.answered_at - started, 3),
        }
        for phases in times.oracle:  # the mint's block makes one oracle call
            # To the microsecond: a small model's check can take well under a millisecond.
            entry.update(
                (name, round(value, 6) if isinstance(value, float) else value)
                for name, value in phases.items()
            )
        accounted = times.checks_s + times.execute_s + times.sign_s
        entry.update(
            execute_s=round(times.execute_s, 3),
            sign_s=round(times.sign_s, 4),
            other_s=round(times.answered_at - times.asked_at - accounted, 4),
            signed=validator.name in certificate.signers,
        )
        timeline[validator.name] = entry
    return timeline


def run_rows(
    shape_name: str,
    tokens: int,
    validators: int,
    engines: list[str],
    all_at_once: bool = False,
    repeats: int = 1,
) -> list[dict[str, object]]:
    """One row per engine choice (an ``error`` entry for a row that failed)."""
    return [
        row_or_error(
            {"shape": shape_name, "engines": engine},
            lambda engine=engine: run(shape_name, tokens, validators, engine, all_at_once, repeats),
        )
        for engine in engines
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="15M")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument(
        "--engines",
        default="wasm,native",
        help="comma-separated rows: wasm, native (proposer and validators on it) or mixed "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="rounds per row, interleaved; the row is the median round (default %(default)s)",
    )
    parser.add_argument(
        "--all-at-once",
        action="store_true",
        help="every validator checks the block at once (the scheduling before quorum-first)",
    )
    args = parser.parse_args(argv)
    engines = comma_separated(args.engines)
    unknown = [e for e in engines if e not in ENGINE_CHOICES]
    if unknown or not engines:
        parser.error(f"--engines: choose from {', '.join(ENGINE_CHOICES)}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    rows = run_rows(
        args.shape, args.tokens, args.validators, engines, args.all_at_once, args.repeats
    )
    print(json.dumps(rows, indent=2))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
