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
    from sidbench.engine.cache import FeatureCache
    from sidbench.run import orchestrate

    log = tmp_path / "encoded.txt"
    monkeypatch.setenv("SIDBENCH_TEST_COUNT_LOG", str(log))
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "user-cache"))
    scratch = tmp_path / "scratch"  # the run-private cache of --no-cache, kept here to look into

    class Kept:
        def cleanup(self):
            pass

    monkeypatch.setattr(orchestrate, "scratch_cache", lambda: (Kept(), FeatureCache(scratch)))
    train, val, test = folders(tmp_path)
    assert run_cli("--backbone", "count-tiny", "--detectors", FITTED, "--data", str(test), "--train", str(train),
                   "--val", str(val), "--out", str(tmp_path / "out"), "--no-cache") == 0
    assert not (tmp_path / "user-cache").exists()  # --no-cache: the user's cache is neither read nor written
    stored = FeatureCache(scratch).info()["groups"]
    # only the 4 validation images, under each protocol with the features read there (cls_final on the resized
    # crop for clip_svm; image_embed and cls_ln2 on the native crop): no training feature is written
    assert sum(g["entries"] for g in stored) == 4 * 3
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


def test_a_loader_batch_that_is_one_source_batch_reaches_the_source_uncopied(tiny_backbone, monkeypatch):
    """No per-image unbind and re-stack on the main thread: the (pinned, on GPU) loader batch is the input."""
    import torch

    from sidbench.engine.inputs import _Pending
    from sidbench.engine.loader import Batch
    from sidbench.engine.sources import as_source

    source = as_source(tiny_backbone)
    inputs = []
    real = source.outputs
    monkeypatch.setattr(source, "outputs", lambda x, names: inputs.append(x) or real(x, names))
    pending = _Pending(source, ("image_embed",), 1, 4, None, False)
    x = torch.randn(4, 3, 224, 224)
    pending.add(Batch([0, 1, 2, 3], x, []))
    index, out, _ = pending.finish(pending.launch(pending.ready()))
    assert index == [0, 1, 2, 3] and inputs[0].data_ptr() == x.data_ptr()
    for part in (x[:3], x[3:]):  # misaligned blocks (after a cache hit, say): cut and joined, same outputs
        pending.add(Batch(list(range(len(part))), part.clone(), []))
    index, again, _ = pending.finish(pending.launch(pending.ready()))
    assert index == [0, 1, 2, 0] and torch.equal(again["image_embed"], out["image_embed"])


def test_the_next_batch_is_launched_before_the_caller_gets_the_previous_one(tmp_path, plugins, tiny_backbone, monkeypatch):
    """On CUDA the device computes batch k+1 while the caller scores batch k (one batch in flight)."""
    from sidbench.data.layout import resolve_records
    from sidbench.engine import ExtractOptions, iter_outputs
    from sidbench.engine.sources import as_source

    recs = resolve_records(str(make_folder(tmp_path / "d", splits=("a",), n=3)), plugins)  # 6 images: 3 batches
    source = as_source(tiny_backbone)
    launched = []
    real = source.outputs
    monkeypatch.setattr(source, "outputs", lambda x, names: launched.append(len(x)) or real(x, names))
    seen = []
    for index, _, _ in iter_outputs(source, recs, ["image_embed"], options=ExtractOptions(2, 0, False)):
        seen.append((len(index), len(launched)))
    assert seen == [(2, 2), (2, 3), (2, 3)]
