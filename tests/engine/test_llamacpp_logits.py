"""The llama.cpp logit comparison's own logic (``python -m edgechain.bench.llamacpp_logits``),
without llama.cpp: a stand-in driver written here (the native engine's logits in the driver's
output format) and hand-made runs."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from edgechain.bench import llamacpp_logits as ll

FAKE_DRIVER = """#!{python}
# Stand-in for llamacpp-logits: the native engine's logits, {skew} added to every logit.
import struct, sys
from edgechain.service.engine import open_engine

model, steps, text, ids = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
with open_engine("native").load_files(model, None) as m:
    seq = [int(i) for i in ids]
    greedy = []
    for _ in range(steps):
        row = m.position_logits(seq)[-1]
        greedy.append(max(range(len(row)), key=lambda i: (row[i], -i)))
        seq.append(greedy[-1])
    rows = m.position_logits(seq)
    text_ids = m.encode(text)
out = sys.stdout.buffer
out.write(struct.pack("<4i", len(rows[0]), len(text_ids), len(ids), steps))
out.write(struct.pack(f"<{{len(text_ids)}}i", *text_ids))
out.write(struct.pack(f"<{{steps}}i", *greedy))
for row in rows:
    out.write(struct.pack(f"<{{len(row)}}f", *[v + {skew} for v in row]))
"""


def _fake_references(tmp_path: Path, skew: float) -> Path:
    driver = tmp_path / ll.DRIVER
    driver.write_text(FAKE_DRIVER.format(python=sys.executable, skew=skew))
    driver.chmod(driver.stat().st_mode | stat.S_IXUSR)
    return tmp_path


@pytest.mark.parametrize(("skew", "status"), [(0.0, 0), (1e-3, 1)])
def test_the_comparison_passes_equal_logits_and_fails_beyond_the_tolerance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], skew: float, status: int
) -> None:
    refs = _fake_references(tmp_path, skew)
    argv = ["--references", str(refs), "--archs", "llama,qwen3", "--types", "f32"]
    argv += ["--engines", "native", "--shape", "260K", "--steps", "3", "--head-dim", "16"]
    assert ll.main([*argv, "--json"]) == status
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["arch"] for r in rows] == ["llama", "qwen3", "qwen3 hd16"]
    for r in rows:
        assert r["positions"] > 3 and r["same_text_ids"] and r["same_bits"]
        assert r["argmax_agree"] == r["decisive"]  # a uniform shift moves no argmax
        assert r["max_abs"] == pytest.approx(skew, abs=1e-6)
        assert r["passed"] is (skew == 0.0)


def _run(rows: list[list[float]], greedy: list[int], prompt: int = 2) -> ll.LlamaCppRun:
    return ll.LlamaCppRun(text_ids=[1] * prompt, prompt=[1] * prompt, greedy=greedy, rows=rows)


def test_an_argmax_may_differ_only_where_llama_cpp_s_top_two_are_within_the_tolerance() -> None:
    tol = ll.TOLERANCES["q8_0"] / 2
    # Positions 0, 1 (prompt), 2 (after greedy token 0): llama.cpp's rows and the engine's.
    want = [[0.0, 1.0, 0.0], [1.0, 1.0 - tol, 0.0], [0.0, 0.0, 1.0]]
    got = [[0.0, 1.0, 0.0], [1.0 - tol, 1.0, 0.0], [0.0, 0.0, 1.0]]
    ref = _run(want, greedy=[0])
    near_tie = ll.compare("llama", "q8_0", "native", got, [1], ref)
    assert (near_tie.decisive, near_tie.argmax_agree) == (2, 2)
    assert near_tie.greedy_ok and near_tie.passed  # the first greedy token is a near-tie
    decisive = _run([want[0], [1.0, 0.0, 0.0], want[2]], greedy=[0])
    flipped = ll.compare("llama", "q8_0", "native", got, [1], decisive)
    assert not flipped.greedy_ok and not flipped.passed
    # An engine stopping early (end of sequence) is a prefix of llama.cpp's chain.
    assert ll.compare("llama", "q8_0", "native", want, [], ref).greedy_ok
