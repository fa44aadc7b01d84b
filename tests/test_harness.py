"""End-to-end runs on generated folders: results folder contract, determinism, fitting, one backbone pass."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sidbench.cli import main

PLUGIN_DIR = str(Path(__file__).parent / "plugins")


def run_cli(*args: str) -> int:
    return main(["run", "--backbone", "clip-tiny", "--no-progress", *args])


def test_results_folder_contract(image_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("--data", str(image_folder), "--detectors", "clip_zeroshot", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "Accuracy (%)" in printed and "clip_zeroshot" in printed  # leaderboard printed at the end
    for name in ("metrics.csv", "scores.csv", "skipped.csv", "leaderboard.md", "run.json"):
        assert (out / name).is_file(), name
    metrics = pd.read_csv(out / "metrics.csv", keep_default_na=False)
    need = ["detector", "split", "group", "perturbation", "n_real", "n_fake", "acc", "real_acc", "fake_acc", "ap", "auc", "f1"]
    assert list(metrics.columns[: len(need)]) == need
    assert set(metrics["split"]) == {"a", "b", "mean:folder", "mean:all"}
    scores = pd.read_csv(out / "scores.csv")
    for col in ("detector", "split", "perturbation", "path", "label", "logit", "prob"):
        assert col in scores.columns
    assert len(scores) == 24 and set(scores["perturbation"]) == {"none"}
    np.testing.assert_allclose(scores["prob"], 1 / (1 + np.exp(-scores["logit"])), rtol=1e-12)
    assert set(scores["label"]) == {0, 1}
    assert all(("1_fake" in p) == (lab == 1) for p, lab in zip(scores["path"], scores["label"]))
    assert list(pd.read_csv(out / "skipped.csv").columns) == ["path", "reason", "split"]
    info = json.loads((out / "run.json").read_text())
    assert info["backbones"]["clip-tiny"]["identity"] == "clip-tiny:seed0-v1"
    assert info["detectors"][0]["preprocess"] == "resize_center_crop"
    assert {"sidbench", "torch", "git_commit", "python"} <= set(info["environment"])
    assert info["seed"] == 0 and info["timings_s"]["total"] > 0


def test_metrics_agree_with_scores(image_folder, tmp_path):
    from sklearn.metrics import average_precision_score

    out = tmp_path / "out"
    run_cli("--data", str(image_folder), "--detectors", "clip_zeroshot", "--out", str(out))
    scores = pd.read_csv(out / "scores.csv")
    metrics = pd.read_csv(out / "metrics.csv").set_index("split")
    a = scores[scores.split == "a"]
    assert metrics.loc["a", "ap"] == pytest.approx(average_precision_score(a.label, a.logit))
    assert metrics.loc["a", "acc"] == pytest.approx(((a.prob > 0.5) == a.label).mean())


def test_same_seed_same_numbers(image_folder, tmp_path):
    for name in ("r1", "r2"):
        run_cli("--data", str(image_folder), "--detectors", "clip_zeroshot", "--out", str(tmp_path / name),
                "--perturb", "noise:5")
    a, b = (pd.read_csv(tmp_path / n / "scores.csv") for n in ("r1", "r2"))
    pd.testing.assert_frame_equal(a, b)
    assert set(a["perturbation"]) == {"none", "noise5"}


def test_bad_files_are_skipped_listed_and_counted(image_folder, tmp_path, capsys):
    (image_folder / "a" / "0_real" / "zero.png").write_bytes(b"")
    (image_folder / "a" / "1_fake" / "junk.jpg").write_text("nope")
    out = tmp_path / "out"
    assert run_cli("--data", str(image_folder), "--detectors", "clip_zeroshot", "--out", str(out)) == 0
    assert "24 images scored, 2 skipped (unreadable: see" in capsys.readouterr().err
    skipped = pd.read_csv(out / "skipped.csv")
    assert sorted(Path(p).name for p in skipped.path) == ["junk.jpg", "zero.png"]
    assert json.loads((out / "run.json").read_text())["counts"]["skipped"] == 2
    assert len(pd.read_csv(out / "scores.csv")) == 24


def test_fit_then_resume_reuses_checkpoint(image_folder, tmp_path, capsys):
    train = tmp_path / "train"
    from conftest import make_folder

    make_folder(train, splits=("t",), n=10, seed=5)
    out = tmp_path / "out"
    args = ("--plugins-dir", PLUGIN_DIR, "--data", str(image_folder), "--detectors", "lstsq_probe",
            "--train", str(train), "--out", str(out))
    assert run_cli(*args) == 0
    assert (out / "checkpoints" / "lstsq_probe.safetensors").is_file()
    info = json.loads((out / "run.json").read_text())["detectors"][0]
    assert info["training_data"] == ["t"] and info["published_training_data"] == []  # what this run fitted on
    first = pd.read_csv(out / "scores.csv")
    assert pd.read_csv(out / "metrics.csv").set_index("split").loc["mean:all", "acc"] > 0.8  # the checkerboard is learnable
    capsys.readouterr()
    assert run_cli(*args) == 0
    assert "loaded the checkpoint fitted by the earlier run" in capsys.readouterr().err
    pd.testing.assert_frame_equal(first, pd.read_csv(out / "scores.csv"))


def test_unfitted_detector_without_train_is_a_clear_error(image_folder, tmp_path, capsys):
    code = run_cli("--plugins-dir", PLUGIN_DIR, "--data", str(image_folder), "--detectors", "lstsq_probe",
                   "--out", str(tmp_path / "o"))
    err = capsys.readouterr().err
    assert code == 2 and "must be fitted: give --train PATH" in err and "lstsq_probe@CHECKPOINT" in err


def test_one_backbone_pass_serves_all_detectors(image_folder, tmp_path, monkeypatch):
    from sidbench.backbones.clip import ClipBackbone

    # a cache of its own: another test's run on the same generated images would serve every feature
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    calls = []
    original = ClipBackbone._forward

    def counting(self, images, names):
        calls.append((images.shape[0], tuple(sorted(names))))
        return original(self, images, names)

    monkeypatch.setattr(ClipBackbone, "_forward", counting)
    code = run_cli("--plugins-dir", PLUGIN_DIR, "--data", str(image_folder), "--detectors", "clip_zeroshot,mean_embed",
                   "--out", str(tmp_path / "o"), "--protocol", "center_crop", "--batch-size", "8")
    assert code == 0
    assert sum(n for n, _ in calls) == 24  # 24 images, once, for both detectors
    scores = pd.read_csv(tmp_path / "o" / "scores.csv")
    assert sorted(scores.detector.value_counts().items()) == [("clip_zeroshot", 24), ("mean_embed", 24)]


def test_ten_crop_is_the_mean_of_crop_logits(image_folder, tmp_path, tiny_backbone):
    import torchvision.transforms.functional as TF

    from sidbench.data.images import read_image

    out = tmp_path / "o"
    assert run_cli("--plugins-dir", PLUGIN_DIR, "--data", str(image_folder), "--detectors", "mean_embed",
                   "--protocol", "ten_crop", "--out", str(out)) == 0
    row = pd.read_csv(out / "scores.csv").iloc[0]
    assert row.protocol == "ten_crop"
    img = read_image(row.path)  # 64x64: padded to 224 first, as the protocol says
    img = TF.center_crop(img, [224, 224])
    crops = torch.stack([TF.normalize(TF.to_tensor(c), tiny_backbone.info.mean, tiny_backbone.info.std)
                         for c in TF.ten_crop(img, 224)])
    embed = tiny_backbone.features(crops, ["image_embed"])["image_embed"]
    assert row.logit == pytest.approx(embed.mean(dim=-1).mean().item(), rel=1e-5, abs=1e-6)


def test_config_file_and_flags(image_folder, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'data = ["{image_folder}"]\ndetectors = ["clip_zeroshot"]\nbackbone = "clip-tiny"\nperturb = "jpeg:50"\n')
    out = tmp_path / "o"
    assert main(["run", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert set(pd.read_csv(out / "scores.csv").perturbation) == {"none", "jpeg50"}
    bad = tmp_path / "bad.toml"
    bad.write_text('detectorz = ["x"]\n')
    assert main(["run", "--config", str(bad)]) == 2


def test_unknown_detector_suggests(capsys, image_folder):
    assert run_cli("--data", str(image_folder), "--detectors", "clip_zeroshoot") == 2
    err = capsys.readouterr().err
    assert err.startswith("sidbench: error: unknown detector 'clip_zeroshoot'. Did you mean 'clip_zeroshot'")
    assert len(err.strip().splitlines()) == 1
