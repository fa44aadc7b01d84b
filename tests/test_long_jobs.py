"""Long jobs: a fit killed with SIGKILL resumes at its last finished epoch and ends with the same scores as an
uninterrupted one; --quiet prints only the leaderboard; no progress bars when the output is not a terminal."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

NPR = ["--detectors", "npr", "--set", "npr:epochs=3", "--set", "npr:batch_size=8", "--set", "npr:image_size=32",
       "--set", "npr:crop_size=32", "--set", "npr:load_size=32", "--set", "npr:classes=all", "--set", "npr:lr=0.002",
       "--set", "npr:keep=best", "--protocol", "center_crop", "--no-cache"]

# Runs the CLI, but SIGKILLs itself right after the epoch state of epoch KILL_AFTER is written: a real kill at a
# known point (mid-fit, nothing cleaned up), instead of a race against a timer.
KILLER = """
import os, signal, sys
from sidbench.api import fitting
save = fitting.EpochState.save
def save_then_die(self, epochs_done, objects, extras=None):
    save(self, epochs_done, objects, extras)
    if epochs_done == int(os.environ["KILL_AFTER"]):
        os.kill(os.getpid(), signal.SIGKILL)
fitting.EpochState.save = save_then_die
from sidbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _images(folder: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for label, cls in ((0, "0_real"), (1, "1_fake")):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
            if label:  # the fakes are smoother: something NPR's residual can learn in a few epochs
                img = img.filter(ImageFilter.GaussianBlur(1.0))
            img.save(folder / cls / f"{i}.png")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("longjobs")
    for name, n, seed in (("train", 8, 0), ("val", 4, 1), ("test", 4, 2)):
        _images(root / name, n, seed)
    return root


def _sidbench(args: list[str], cwd: Path, script: str | None = None, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "SIDBENCH_CACHE": str(cwd / "cache"), "SIDBENCH_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
                **env}
    cmd = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "sidbench", *args]
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)


def _scores(out: Path) -> dict[tuple[str, str], str]:
    with open(out / "scores.csv", newline="") as f:
        return {(r["path"], r["perturbation"]): r["logit"] for r in csv.DictReader(f)}


@pytest.mark.slow  # four CLI runs in subprocesses (a minute on an idle 2-core machine)
def test_sigkilled_fit_resumes_at_its_last_epoch(data, tmp_path):
    common = ["run", "--data", str(data / "test"), "--train", str(data / "train"), "--val", str(data / "val"), *NPR]
    whole = _sidbench([*common, "--out", str(tmp_path / "whole")], tmp_path)
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "killed"
    killed = _sidbench([*common, "--out", str(out)], tmp_path, script=KILLER, KILL_AFTER="1")
    assert killed.returncode == -9, killed.stderr  # SIGKILL: no clean-up ran
    assert (out / "checkpoints" / "npr.progan4.epoch-state.pt").is_file()
    assert not (out / "checkpoints" / "npr.progan4.safetensors").exists()

    resumed = _sidbench([*common, "--out", str(out)], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 1" in resumed.stderr  # progress goes to stderr, the leaderboard to stdout
    assert "epoch 1:" not in resumed.stderr and "epoch 2:" in resumed.stderr  # epoch 1 was not run again
    assert resumed.stdout == (out / "leaderboard.md").read_text()
    assert _scores(out) == _scores(tmp_path / "whole")  # the same model, to the last digit
    assert not (out / "checkpoints" / "npr.progan4.epoch-state.pt").exists()  # removed once the checkpoint is saved

    quiet = _sidbench([*common, "--out", str(out), "--quiet"], tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == (out / "leaderboard.md").read_text()  # nothing but the leaderboard
    assert "loaded the checkpoint" not in quiet.stderr and "images scored" not in quiet.stderr  # no progress lines
    assert "\r" not in resumed.stderr and "it/s" not in resumed.stderr  # no progress bars into a pipe


class _Stop(BaseException):
    """Stands in for an interruption right after an epoch's state is saved."""


@pytest.mark.slow  # three short fits of real architectures (about a minute each on a loaded 2-core machine)
@pytest.mark.parametrize("name,options", [
    ("ladeda", ["max_epochs=3", "patience=1"]),  # early stopping: the stopper's state is resumed too
    ("freqnet", ["epochs=3"]),
])
def test_interrupted_train_resumes_with_the_same_model(name, options, data, tmp_path, monkeypatch):
    """`sidbench train` interrupted after epoch 1 and run again ends with the same weights as one run."""
    from safetensors.torch import load_file

    from sidbench.api import fitting
    from sidbench.cli import main

    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    args = ["train", name, "--data", str(data / "train"), "--val", str(data / "val"), "--no-progress",
            *[a for o in [*options, "batch_size=8", "image_size=32", "crop_size=32", "load_size=32", "classes=all"]
              for a in ("--set", o)]]
    assert main([*args, "--out", str(tmp_path / "whole.safetensors")]) == 0

    save = fitting.EpochState.save

    def save_then_stop(self, epochs_done, objects, extras=None):
        save(self, epochs_done, objects, extras)
        if epochs_done == 1:
            raise _Stop

    out = tmp_path / "resumed.safetensors"
    monkeypatch.setattr(fitting.EpochState, "save", save_then_stop)
    with pytest.raises(_Stop):
        main([*args, "--out", str(out)])
    assert Path(f"{out}.epoch-state.pt").is_file() and not out.exists()
    monkeypatch.setattr(fitting.EpochState, "save", save)
    assert main([*args, "--out", str(out)]) == 0
    assert not Path(f"{out}.epoch-state.pt").exists()
    whole, resumed = load_file(tmp_path / "whole.safetensors"), load_file(out)
    assert whole.keys() == resumed.keys()
    assert all(bool((whole[k] == resumed[k]).all()) for k in whole)
