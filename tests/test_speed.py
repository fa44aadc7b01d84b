"""Speed contracts: detectors fitted together pass each image once per view, and a fully cached run and fit
never build the backbone (test backbones in tests/plugins_speed/backbones.py)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO, make_folder

PLUGINS = str(REPO / "tests" / "plugins_speed")
# The three fitted CLIP detectors of the issue, small enough for a test; no augmentation (the plain view).
FITTED = "clip_svm,univfd[max_epochs=3,augment=false],rine[epochs=2,augment=false]"


def run_cli(*argv: str) -> int:
    from sidbench.cli import main

    return main(["run", "--plugins-dir", PLUGINS, "--no-progress", "--batch-size", "4", *argv])


def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    train = make_folder(tmp_path / "train", splits=("gan",), n=4, seed=1)  # 8 images
    val = make_folder(tmp_path / "val", splits=("gan",), n=2, seed=2)  # 4 images
    test = make_folder(tmp_path / "test", splits=("t",), n=1, seed=3)  # 2 images
    return train, val, test


def test_detectors_fitted_together_pass_each_image_once_per_view(tmp_path, monkeypatch):
    """clip_svm (cls_final, resized crop), univfd (image_embed) and rine (cls_ln2, both on the native crop): every
    image of train, val and test passes the backbone exactly once per preprocessing, though four features are read."""
    log = tmp_path / "encoded.txt"
    monkeypatch.setenv("SIDBENCH_TEST_COUNT_LOG", str(log))
    train, val, test = folders(tmp_path)
    assert run_cli("--backbone", "count-tiny", "--detectors", FITTED, "--data", str(test), "--train", str(train),
                   "--val", str(val), "--out", str(tmp_path / "out"), "--no-cache") == 0
    encoded = Counter(log.read_text().split())
    protocols = {d["preprocess"] for d in json.loads((tmp_path / "out" / "run.json").read_text())["detectors"]}
    assert protocols == {"center_crop", "resize_center_crop"}
    assert max(encoded.values()) == 1  # no image went through the backbone twice under one preprocessing
    assert sum(encoded.values()) == 2 * (8 + 4 + 2)  # and each one did, under each of the two


def test_a_fully_cached_run_and_fit_never_build_the_backbone(tmp_path, monkeypatch):
    """The second run fits clip_svm and univfd again (a new --out) and scores all three detectors, text prompts
    included, from the feature cache: the backbone, which now fails to build, is never needed."""
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    train, val, test = folders(tmp_path)
    args = ["--backbone", "fragile-tiny", "--detectors", "clip_zeroshot,clip_svm,univfd[max_epochs=3,augment=false]",
            "--data", str(test), "--train", str(train), "--val", str(val)]
    assert run_cli(*args, "--out", str(tmp_path / "cold")) == 0
    monkeypatch.setenv("SIDBENCH_TEST_FRAGILE", "1")
    assert run_cli(*args, "--out", str(tmp_path / "warm")) == 0
    assert (tmp_path / "warm" / "scores.csv").read_text() == (tmp_path / "cold" / "scores.csv").read_text()
    backbones = json.loads((tmp_path / "warm" / "run.json").read_text())["backbones"]
    assert backbones["fragile-tiny"]["loaded"] is False
    with pytest.raises(RuntimeError, match="must not be built"):  # the control: without the cache it is needed
        run_cli(*args, "--out", str(tmp_path / "uncached"), "--no-cache")
