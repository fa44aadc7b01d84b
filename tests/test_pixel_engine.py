"""Pixel detectors on the engine: native-resolution batching by size, logits cached, fitting through
data.batches, and a run that mixes a pixel detector with a CLIP head in one leaderboard."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sidbench.cli import main

from conftest import make_folder, write_image

PLUGIN_DIR = str(Path(__file__).parent / "plugins")


def probe_calls():
    """The calls seen by the pixel probe loaded from tests/plugins (another test may load a copy of it from
    elsewhere: that module has another name suffix and its own list)."""
    own = (Path(PLUGIN_DIR) / "pixel_probe.py").resolve()
    return next(m for n, m in sys.modules.items() if n.startswith("sidbench_plugin_pixel_probe")
                and Path(getattr(m, "__file__", "")).resolve() == own).CALLS


def run_cli(*args):
    return main(["run", "--plugins-dir", PLUGIN_DIR, "--backbone", "clip-tiny", "--no-progress", *args])


@pytest.fixture
def mixed_sizes(tmp_path):
    root = make_folder(tmp_path / "data", splits=("a",), n=3, size=(64, 64), seed=1)
    rng = np.random.default_rng(2)
    for i in range(3):  # another size in the same split
        write_image(root / "a" / "0_real" / f"w{i}.png", rng, (48, 80))
        write_image(root / "a" / "1_fake" / f"w{i}.png", rng, (48, 80), fake=True)
    return root


def test_native_resolution_batches_equal_sizes_and_pads_them(mixed_sizes, tmp_path):
    from sidbench.registry import load_detector  # noqa: F401  (plugins load through the CLI)

    out = tmp_path / "o"
    assert run_cli("--data", str(mixed_sizes), "--detectors", "checker_probe,clip_zeroshot", "--out", str(out),
                   "--batch-size", "4", "--no-cache") == 0
    calls = probe_calls()
    assert {c[0] for c in calls} == {4}  # every batch padded to the fixed size
    assert sorted({c[1:] for c in calls}) == [(48, 80), (64, 64)]  # one size per batch
    scores = pd.read_csv(out / "scores.csv")
    assert sorted(scores.detector.value_counts().items()) == [("checker_probe", 12), ("clip_zeroshot", 12)]
    row = scores[scores.detector == "checker_probe"].iloc[0]
    assert row.protocol == "native"
    # the logit is the network on the whole image, independently recomputed
    from PIL import Image
    import torchvision.transforms.functional as TF

    x = TF.normalize(TF.to_tensor(Image.open(row.path).convert("RGB")), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    energy = (x[:, 1:, :] - x[:, :-1, :]).abs().mean().item()
    assert row.logit == pytest.approx(energy - 1.0, rel=1e-5, abs=1e-6)
    board = (out / "leaderboard.md").read_text()
    assert "checker_probe" in board and "clip_zeroshot" in board


def test_pixel_logits_are_cached(mixed_sizes, tmp_path, monkeypatch):
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    assert run_cli("--data", str(mixed_sizes), "--detectors", "checker_probe", "--out", str(tmp_path / "o1")) == 0
    calls = probe_calls()
    n = len(calls)
    assert n > 0
    assert run_cli("--data", str(mixed_sizes), "--detectors", "checker_probe", "--out", str(tmp_path / "o2")) == 0
    assert len(calls) == n  # served from the cache: the network did not run again
    a, b = (pd.read_csv(tmp_path / o / "scores.csv") for o in ("o1", "o2"))
    np.testing.assert_array_equal(a.logit, b.logit)


def test_pixel_detector_fits_through_batches_and_resumes(tmp_path):
    data = make_folder(tmp_path / "test", splits=("x",), n=4, size=(64, 64), seed=3)
    train = make_folder(tmp_path / "train", splits=("t",), n=8, size=(80, 80), seed=4)
    out = tmp_path / "o"
    args = ("--data", str(data), "--train", str(train), "--detectors", "checker_probe.fit", "--out", str(out))
    assert run_cli(*args) == 0
    assert (out / "checkpoints" / "checker_probe.fit.safetensors").is_file()
    metrics = pd.read_csv(out / "metrics.csv").set_index("split")
    assert metrics.loc["mean:all", "acc"] > 0.8
    first = pd.read_csv(out / "scores.csv")
    assert run_cli(*args) == 0
    pd.testing.assert_frame_equal(first, pd.read_csv(out / "scores.csv"))


def test_train_command_fits_a_pixel_detector(tmp_path, capsys):
    train = make_folder(tmp_path / "train", splits=("t",), n=6, size=(64, 64), seed=5)
    ckpt = tmp_path / "probe.safetensors"
    assert main(["train", "checker_probe.fit", "--plugins-dir", PLUGIN_DIR, "--data", str(train), "--out", str(ckpt),
                 "--no-progress"]) == 0
    assert "its own network" in capsys.readouterr().err and ckpt.is_file()
    from sidbench.api.checkpoints import load_tensors

    tensors, meta = load_tensors(ckpt)
    assert meta["detector"] == "checker_probe.fit" and meta["backbone"] is None
    assert set(tensors) == {"head.weight", "head.bias"} and torch.isfinite(tensors["head.weight"]).all()


def test_validation_scores_run_the_network_in_eval_mode(tmp_path):
    """data.scores() on a pixel detector mid-fit runs its network as the reference trainers validate (model.eval():
    BatchNorm on its running statistics, left unchanged) and hands it back in training mode."""
    from sidbench.api import Record
    from sidbench.engine.fitting import EngineFitData
    from sidbench.registry import load_detector

    root = make_folder(tmp_path / "d", splits=("a",), n=3, size=(40, 40), seed=2)
    records = [Record(str(p), int("1_fake" in str(p)), "a") for p in sorted(root.rglob("*.png"))]
    det = load_detector("npr")
    torch.manual_seed(0)
    det.net = det.build_network()
    for m in det.net.modules():  # running statistics unlike any batch's, so train-mode BatchNorm would differ
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(0.3)
            m.running_var.fill_(2.0)
    data = EngineFitData(records, val=records, protocol=det.preprocess, pixels=det.pixel_input, device="cpu")
    buffers = {k: v.clone() for k, v in det.net.state_dict().items()}
    det.net.train()
    mid_fit, labels = data.scores(det, "val")
    assert det.net.training  # handed back in training mode
    assert all(torch.equal(v, det.net.state_dict()[k]) for k, v in buffers.items())  # running statistics unchanged
    det.net.eval()
    evaluated, _ = data.scores(det, "val")
    np.testing.assert_array_equal(mid_fit, evaluated)
    assert len(labels) == 6
