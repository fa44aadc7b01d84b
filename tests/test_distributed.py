"""torchrun with two gloo processes gives the same results as one process."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO, make_folder

PLUGINS = REPO / "tests" / "plugins_speed"


def test_two_ranks_match_one_process(tmp_path, monkeypatch):
    from sidbench.cli import main

    pytest.importorskip("torch.distributed")
    data = make_folder(tmp_path / "d", splits=("a", "b"), n=3, seed=1)
    train = make_folder(tmp_path / "t", splits=("t",), n=4, seed=2)
    ckpt = tmp_path / "meanprobe.safetensors"  # fitting happens on one process, before the torchrun job
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "train-cache"))
    assert main(["train", "meanprobe", "--data", str(train), "--out", str(ckpt), "--backbone", "clip-tiny",
                 "--device", "cpu", "--plugins-dir", str(PLUGINS), "--no-progress"]) == 0
    cmd = ["run", "--data", str(data), "--detectors", f"meanprobe@{ckpt},clip_zeroshot",
           "--backbone", "clip-tiny", "--protocol", "center_crop", "--batch-size", "2", "--device", "cpu",
           "--plugins-dir", str(PLUGINS), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "SIDBENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    dist = tmp_path / "dist"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "sidbench.cli", *cmd, "--out", str(dist)],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(dist.glob("scores.rank*"))  # merged by rank 0
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "single-cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun rank (OMP_NUM_THREADS=1): CPU reductions depend on it
    try:
        assert main([*cmd, "--out", str(tmp_path / "single"), "--no-cache"]) == 0
    finally:
        torch.set_num_threads(threads)
    for name in ("scores.csv", "metrics.csv", "skipped.csv", "leaderboard.md"):
        assert (dist / name).read_text() == (tmp_path / "single" / name).read_text(), name
    assert len((dist / "scores.csv").read_text().splitlines()) == 1 + 2 * 12


def test_torchrun_refuses_to_fit_in_one_line(tmp_path):
    data = make_folder(tmp_path / "d", splits=("a",), n=2, seed=1)
    train = make_folder(tmp_path / "t", splits=("t",), n=2, seed=2)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SIDBENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "sidbench.cli", "run", "--data", str(data), "--train", str(train), "--detectors",
                           "meanprobe", "--backbone", "clip-tiny", "--device", "cpu", "--plugins-dir", str(PLUGINS),
                           "--no-progress", "--out", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode != 0
    line = "sidbench: error: detector(s) meanprobe need fitting, which torchrun does not do: fit first with"
    assert proc.stderr.count(line) == 2, proc.stderr[-3000:]  # every rank, one line each
    assert not (tmp_path / "out").exists()  # refused before the results folder is touched
