"""Multi-node under torchrun, on the CPU with gloo: two torchrun agents on 127.0.0.1 (``--nnodes 2``) score like
one process, each rank writes its own feature-cache shard and a later run is served from the shards, nothing is
fitted under torchrun, and a failure on rank 0 in a step the others wait for ends both ranks at once with the
same one-line error."""
from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import REPO, make_folder

pytest.importorskip("torch.distributed")
PLUGINS = REPO / "tests" / "plugins_speed"
COMMON = ["--backbone", "clip-tiny", "--protocol", "center_crop", "--batch-size", "2", "--device", "cpu",
          "--plugins-dir", str(PLUGINS), "--no-progress"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_agents(target: list[str], env: dict[str, str], timeout: float = 240) -> list[subprocess.CompletedProcess]:
    """Two torchrun agents (one process each) meeting on 127.0.0.1, as two machines would; each agent's output
    is its own rank's."""
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                               "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--node_rank",
                               str(node), "--max_restarts", "0", *target],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for node in (0, 1)]
    done = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return done


def environment(tmp_path: Path, cache: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "SIDBENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1",
            "SIDBENCH_DIST_TIMEOUT": "30"}  # minutes: a rank left waiting would hang far past the test's limit


def rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM features").fetchone()[0]


def test_two_agents_match_one_process_and_their_shards_serve_a_second_run(tmp_path, monkeypatch, capsys):
    from sidbench.cli import main

    data = make_folder(tmp_path / "d", splits=("a", "b"), n=3, seed=1)
    train = make_folder(tmp_path / "t", splits=("t",), n=4, seed=2)
    ckpt = tmp_path / "meanprobe.safetensors"
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "train-cache"))
    # fitting is a one-process job before the scoring job
    assert main(["train", "meanprobe", "--data", str(train), "--out", str(ckpt), *COMMON[:2], "--device", "cpu",
                 "--plugins-dir", str(PLUGINS), "--no-progress"]) == 0
    cmd = ["run", "--data", str(data), "--detectors", f"meanprobe@{ckpt},clip_zeroshot", *COMMON]
    cache = tmp_path / "cache"
    dist = tmp_path / "dist"
    agents = two_agents(["-m", "sidbench.cli", *cmd, "--out", str(dist)], environment(tmp_path, cache))
    for a in agents:
        assert a.returncode == 0, a.stderr[-3000:]
    assert not list(dist.glob("scores.rank*"))  # merged by rank 0
    shards = cache / "features"
    assert not (shards / "features-v2.sqlite").exists()  # every rank wrote only its own shard
    assert rows(shards / "features-v2.rank0.sqlite") > 0 and rows(shards / "features-v2.rank1.sqlite") > 0

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun rank (OMP_NUM_THREADS=1): CPU reductions and the numerics key
    try:
        monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "single-cache"))
        assert main([*cmd, "--out", str(tmp_path / "single"), "--no-cache"]) == 0
        monkeypatch.setenv("SIDBENCH_CACHE", str(cache))  # one process reads both ranks' shards
        capsys.readouterr()
        assert main([*cmd, "--out", str(tmp_path / "again")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert "12 image(s) served, 0 entries stored" in capsys.readouterr().err
    assert not (shards / "features-v2.sqlite").exists() or rows(shards / "features-v2.sqlite") == 0
    for name in ("scores.csv", "metrics.csv", "skipped.csv"):
        want = (tmp_path / "single" / name).read_text()
        assert (dist / name).read_text() == want, name
        assert (tmp_path / "again" / name).read_text() == want, name
    assert len((dist / "scores.csv").read_text().splitlines()) == 1 + 2 * 12

    monkeypatch.setenv("SIDBENCH_CACHE", str(cache))
    capsys.readouterr()
    assert main(["cache", "info"]) == 0
    info = capsys.readouterr().out
    assert "features-v2.rank0.sqlite" in info and "features-v2.rank1.sqlite" in info
    assert main(["cache", "clear"]) == 0
    assert "features-v2.rank0.sqlite, features-v2.rank1.sqlite" in capsys.readouterr().out
    assert rows(shards / "features-v2.rank0.sqlite") == 0 == rows(shards / "features-v2.rank1.sqlite")


INJECT = """
import os, sys
from sidbench.api.errors import SidbenchError
from sidbench.run import orchestrate

def prune_fails_on_rank0(*args, **kwargs):
    if os.environ["RANK"] == "0":
        raise SidbenchError("injected: rank 0 could not prune the stale rows")

orchestrate.prune_stale_rows = prune_fails_on_rank0
from sidbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_failure_on_rank0_in_a_main_first_step_ends_both_ranks_with_its_error(tmp_path):
    data = make_folder(tmp_path / "d", splits=("a",), n=2, seed=1)
    script = tmp_path / "inject.py"
    script.write_text(INJECT)
    t0 = time.time()
    agents = two_agents([str(script), "run", "--data", str(data), "--detectors", "clip_zeroshot", *COMMON,
                         "--out", str(tmp_path / "out")], environment(tmp_path, tmp_path / "cache"), timeout=180)
    assert time.time() - t0 < 180
    for a in agents:  # each agent's output is one rank's: both print the one line, neither a traceback of ours
        assert a.returncode != 0
        assert "sidbench: error: injected: rank 0 could not prune the stale rows" in a.stderr, a.stderr[-3000:]
        assert "prune_fails_on_rank0" not in a.stderr


def test_each_rank_writes_its_shard_and_reads_the_others(tmp_path, caplog):
    from sidbench.engine.cache import FeatureCache

    root = tmp_path / "features"
    one, two = torch.arange(6.0).reshape(2, 3), torch.ones(1, 3)
    rank1 = FeatureCache(root, rank=1)
    rank1.put_many([("k1", "f", "b", one[0]), ("k2", "f", "b", one[1])])
    rank1.close()
    single = FeatureCache(root)
    single.put_many([("k3", "f", "b", two[0])])
    single.close()
    (root / "features-v2.rank7.sqlite").write_bytes(b"SQLite format 3\x00" + os.urandom(4000))  # a damaged shard
    rank0 = FeatureCache(root, rank=0)
    got = rank0.get_many(["k1", "k2", "k3", "k4"])
    assert sorted(got) == ["k1", "k2", "k3"] and torch.equal(got["k2"], one[1]) and torch.equal(got["k3"], two[0])
    rank0.put_many([("k4", "f", "b", two[0])])
    rank0.close()
    assert not rank0.faults and "damaged" not in caplog.text  # another rank's database failing to read is a miss
    assert rows(root / "features-v2.rank0.sqlite") == 1 and rows(root / "features-v2.rank1.sqlite") == 2
    assert rows(root / "features-v2.sqlite") == 1
    info = FeatureCache(root).info()
    assert info["entries"] == 4 and info["damaged"].startswith("features-v2.rank7.sqlite")
    done = FeatureCache(root).clear()
    assert done.entries == 4 and str(root / "features-v2.rank7.sqlite") in done.removed
    assert rows(root / "features-v2.rank1.sqlite") == 0


def test_nothing_is_fitted_under_torchrun(tmp_path):
    from sidbench.api.errors import FitRequiredError
    from sidbench.run.distributed import Dist
    from sidbench.run.orchestrate import check_fitted_for_torchrun

    needs = SimpleNamespace(name="meanprobe", fitted=False)
    ready = SimpleNamespace(name="clip_zeroshot", fitted=True)
    check_fitted_for_torchrun([needs, ready], tmp_path, Dist())  # one process fits
    check_fitted_for_torchrun([ready], tmp_path, Dist(0, 2))
    with pytest.raises(FitRequiredError, match=r"fit first with `sidbench train .*`sidbench run --train` on one "
                                               r"process, then attach the checkpoint \(--detectors meanprobe@CKPT\)"):
        check_fitted_for_torchrun([needs, ready], tmp_path, Dist(1, 2))


def test_timeout_from_the_environment(monkeypatch):
    from datetime import timedelta

    from sidbench.api.errors import SidbenchError
    from sidbench.run.distributed import TIMEOUT, timeout

    monkeypatch.delenv("SIDBENCH_DIST_TIMEOUT", raising=False)
    assert timeout() == TIMEOUT <= timedelta(hours=1)
    monkeypatch.setenv("SIDBENCH_DIST_TIMEOUT", "2.5")
    assert timeout() == timedelta(minutes=2.5)
    monkeypatch.setenv("SIDBENCH_DIST_TIMEOUT", "soon")
    with pytest.raises(SidbenchError, match="positive number of minutes"):
        timeout()
