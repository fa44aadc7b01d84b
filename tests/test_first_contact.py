"""First contact: a typo answers at once (before torch is imported), and the quickstart rewrites no tracked file."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Runs the CLI in a fresh interpreter and reports whether torch (or open_clip, timm) was imported by the time
# the error came back.
PROBE = """
import sys
from sidbench.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "open_clip", "timm", "torchvision") if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(rc)
"""


def _run(args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "SIDBENCH_CACHE": str(tmp_path / "cache"), "SIDBENCH_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    return proc, time.perf_counter() - start


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    for cls in ("0_real", "1_fake"):
        (tmp_path / "data" / cls).mkdir(parents=True)
    return tmp_path / "data"


CASES = [
    (["run", "--detectors", "nosuch"], "unknown detector 'nosuch'"),
    (["run", "--backbone", "nosuch"], "unknown backbone 'nosuch'"),
    (["run", "--detectors", "npr", "--backbone", "ViT-L-15:openai"], "unknown backbone 'ViT-L-15:openai'"),
    (["run", "--data", "{data}", "--detectors", "nosuch"], "unknown detector 'nosuch'"),
    (["run", "--data", "{data}", "--dataset", "nosuch"], "unknown dataset 'nosuch'"),
    (["run", "--data", "{data}", "--suite", "nosuch"], "unknown suite 'nosuch'"),
    (["run", "--perturb", "jpg:40"], "unknown perturbation 'jpg'"),
    (["train", "nosuch", "--data", "{data}", "--out", "{data}/out"], "unknown detector 'nosuch'"),
    (["train", "npr", "--backbone", "nosuch", "--data", "{data}", "--out", "{data}/out"], "unknown backbone 'nosuch'"),
    (["score", "--detectors", "nosuch", "{data}"], "unknown detector 'nosuch'"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_unknown_names_answer_before_torch(args, message, data, tmp_path):
    proc, seconds = _run([a.format(data=data) for a in args], tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if not l.startswith("HEAVY=")]
    assert len(lines) == 1 and message in lines[0], proc.stderr  # one line, no traceback
    assert "HEAVY=\n" in proc.stderr + "\n", f"imported {proc.stderr.split('HEAVY=')[-1]} before answering"
    assert seconds < 30  # under a second on an idle machine; generous for a loaded shared one
    assert not (tmp_path / "results").exists()  # nothing written


def test_quickstart_output_is_not_tracked():
    """The quickstart's default output folder is ignored by git and holds no committed file, so a fresh clone's
    `sidbench run` never rewrites a tracked file."""
    from sidbench.cli.run import QUICKSTART_OUT

    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", QUICKSTART_OUT], cwd=REPO, capture_output=True, text=True, check=True)
    assert tracked.stdout == ""
    for name in ("leaderboard.md", "run.json", "report/index.html", "checkpoints/npr.safetensors"):
        ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", f"{QUICKSTART_OUT}/{name}"], cwd=REPO)
        assert ignored.returncode == 0, f"{QUICKSTART_OUT}/{name} is not ignored by git"
