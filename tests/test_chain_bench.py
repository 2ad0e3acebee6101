from edgechain.bench.chain import main, run_chain_benchmark


def test_benchmark_reports_every_committee_size(tmp_path):
    result = run_chain_benchmark((1, 4), blocks=5, reopen_blocks=20, workdir=tmp_path)
    assert [(r.validators, r.quorum, r.blocks) for r in result.commits] == [(1, 1, 5), (4, 3, 5)]
    assert all(r.blocks_per_second > 0 and r.db_bytes_per_block > 0 for r in result.commits)
    assert result.reopen is not None and result.reopen.blocks == 20
    assert "reopen + re-verify of 20 blocks" in result.format()
    assert list(tmp_path.iterdir()) == []  # networks are deleted afterwards


def test_benchmark_entry_point(capsys):
    assert main(["--validators", "1", "--blocks", "2", "--reopen-blocks", "0", "--json"]) == 0
    assert '"blocks_per_second"' in capsys.readouterr().out


def test_chains_benchmark_runs_each_chain_in_its_own_process(capsys):
    assert main(["--chains", "2", "--blocks", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("chains")
    assert [line.split()[:2] for line in lines[1:]] == [["1", "3"], ["2", "3"]]
    assert lines[1].endswith("1.00x")  # the one-chain row, added when not asked for
