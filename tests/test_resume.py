"""A run killed with SIGKILL and started again finishes with exactly the scores of an uninterrupted run."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from conftest import REPO, make_folder

PLUGINS = REPO / "tests" / "plugins_speed"


def committed(path: Path) -> list[dict]:
    """Complete rows of a (possibly torn) scores.csv."""
    text = path.read_text()
    text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(text.splitlines()))


def test_batch_size_changes_cpu_results_so_backbone_batches_are_fixed(tiny_backbone):
    """Why the harness pads: a batch of 1 takes another matmul path than a batch of 8 on CPU."""
    x = torch.randn(8, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    full = tiny_backbone.features(x, ["image_embed"])["image_embed"]
    one = tiny_backbone.features(x[:1], ["image_embed"])["image_embed"]
    padded = tiny_backbone.features(torch.cat([x[:1], torch.zeros(7, 3, 224, 224)]), ["image_embed"])["image_embed"]
    assert torch.equal(padded[0], full[0])  # neighbours do not matter at a fixed batch size
    if torch.equal(one[0], full[0]):  # pragma: no cover - depends on the BLAS build
        import warnings

        warnings.warn("this BLAS gives batch-size-independent results; padding is harmless here")


def test_sigkill_then_rerun_gives_the_uninterrupted_scores(tmp_path, monkeypatch):
    from sidbench.cli import main

    data = make_folder(tmp_path / "d", splits=("a", "b"), n=4)  # 16 images
    log = tmp_path / "scored.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO), "SIDBENCH_CACHE": str(tmp_path / "cache"),
           "SLOWPROBE_SLEEP": "0.25", "SLOWPROBE_LOG": str(log)}
    cmd = ["run", "--data", str(data), "--detectors", "slowprobe,clip_zeroshot", "--backbone", "clip-tiny",
           "--protocol", "center_crop", "--batch-size", "2", "--plugins-dir", str(PLUGINS), "--no-progress"]
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "sidbench.cli", *cmd, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (out / "scores.csv").exists() and len(committed(out / "scores.csv")) >= 8:  # two batches x two detectors
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (out / "metrics.csv").exists()
    rows = committed(out / "scores.csv")
    per_path: dict[str, set] = {}
    for r in rows:
        per_path.setdefault(r["path"], set()).add(r["detector"])
    finished = {p for p, dets in per_path.items() if dets == {"slowprobe", "clip_zeroshot"}}
    assert 2 <= len(finished) < 16

    log.unlink()
    monkeypatch.setenv("SLOWPROBE_LOG", str(log))
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))  # the killed run's cache entries are reused
    assert main([*cmd, "--out", str(out)]) == 0  # the same command again: resumes
    resumed_work = sum(int(n) for n in log.read_text().split())
    log.unlink()
    assert main([*cmd, "--out", str(tmp_path / "clean"), "--no-cache"]) == 0  # uninterrupted, no cache
    assert resumed_work == 16 - len(finished)  # finished images were not scored again
    got, want = (out / "scores.csv").read_text(), (tmp_path / "clean" / "scores.csv").read_text()
    assert len(want.splitlines()) == 1 + 2 * 16
    assert got == want  # bit-identical logits, each image once
    assert (out / "metrics.csv").read_text() == (tmp_path / "clean" / "metrics.csv").read_text()
