"""A fitted feature detector's checkpoint brings its backbone: ``NAME@ckpt`` reads the features it was fitted
on without ``--backbone``, and a ``--backbone`` that names another one is a one-line error naming both."""
from __future__ import annotations

import pandas as pd
import pytest

from sidbench.cli import main

from conftest import make_folder


def test_a_checkpoint_fitted_on_clip_tiny_runs_on_clip_tiny_without_being_told(tmp_path, capsys):
    train = make_folder(tmp_path / "train", splits=("a",), n=4, seed=1)
    data = make_folder(tmp_path / "data", splits=("b",), n=2, seed=2)
    ckpt = tmp_path / "univfd.safetensors"
    assert main(["train", "univfd", "--data", str(train), "--backbone", "clip-tiny", "--out", str(ckpt),
                 "--no-progress", "--set", "max_epochs=1"]) == 0
    out = tmp_path / "o"
    assert main(["run", "--data", str(data), "--detectors", f"univfd@{ckpt}", "--out", str(out), "--no-progress"]) == 0
    assert len(pd.read_csv(out / "scores.csv")) == 4  # scored on clip-tiny: ViT-L-14 weights are not here
    import json

    info = json.loads((out / "run.json").read_text())["detectors"][0]
    # what the checkpoint was fitted on travels with it (the leaderboard's seen-in-training marks use it)
    assert info["training_data"] == ["a"] and info["training"]["splits"] == ["a"]
    assert info["training"]["n_real"] == 4 and info["training"]["n_fake"] == 4
    assert info["training"]["roots"] == [str(train)] and info["weights"]["sha256"]
    capsys.readouterr()
    assert main(["run", "--data", str(data), "--detectors", f"univfd@{ckpt}", "--backbone", "ViT-B-32:random",
                 "--out", str(tmp_path / "o2"), "--no-progress"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ViT-B-32:random" in err and "clip-tiny" in err


def test_a_run_that_fits_records_its_checkpoint_from_the_first_run(tmp_path):
    import hashlib
    import json

    train = make_folder(tmp_path / "train", splits=("a",), n=3, seed=1)
    data = make_folder(tmp_path / "data", splits=("b",), n=1, seed=2)
    out = tmp_path / "o"
    assert main(["run", "--data", str(data), "--train", str(train), "--detectors", "univfd", "--backbone", "clip-tiny",
                 "--set", "max_epochs=1", "--out", str(out), "--no-progress"]) == 0
    info = json.loads((out / "run.json").read_text())["detectors"][0]
    ckpt = out / "checkpoints" / "univfd.progan.safetensors"
    assert info["checkpoint"] == {"path": str(ckpt), "sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest()}
    assert info["training"]["generators"] == ["a"] and "fit" in info

