"""The feature cache: served instead of the backbone, never stale, never torn, shared by detectors and fits."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, make_folder

from sidbench.engine.cache import DB_NAME, FeatureCache
from sidbench.data.layout import resolve_records
from sidbench.data.perturb import parse_perturbations
from sidbench.engine import ExtractOptions, extract


@pytest.fixture
def counted(tiny_backbone, monkeypatch):
    """The tiny backbone, counting the images it runs on (padding included)."""
    seen = {"images": 0}
    real = tiny_backbone.features

    def features(images, names):
        seen["images"] += images.shape[0]
        return real(images, names)

    monkeypatch.setattr(tiny_backbone, "features", features)
    return tiny_backbone, seen


def records_in(root: Path, plugins):
    return resolve_records(str(root), plugins)


def opts(cache, batch_size=4):
    return ExtractOptions(batch_size=batch_size, workers=0, progress=False, cache=cache)


def direct_features(backbone, records, names, protocol="center_crop"):
    """Independent computation: read, preprocess and run the backbone on all images at once."""
    from sidbench.data.images import read_image
    from sidbench.data.preprocess import make_preprocess

    pre = make_preprocess(protocol, backbone.info)
    return backbone.features(torch.stack([pre(read_image(r.path)) for r in records]), names)


def test_second_pass_is_served_from_the_cache(tmp_path, plugins, counted):
    backbone, seen = counted
    recs = records_in(make_folder(tmp_path / "d", splits=("a",), n=3), plugins)  # 6 images
    cache = FeatureCache(tmp_path / "c")
    first = extract(backbone, recs, ["image_embed", "cls_ln2"], options=opts(cache))
    assert seen["images"] == 8  # two batches of 4, the second zero-padded
    direct = direct_features(backbone, recs, ["image_embed", "cls_ln2"])
    for n in direct:
        torch.testing.assert_close(first.features[n], direct[n], rtol=0, atol=1e-5)
    seen["images"] = 0
    second = extract(backbone, recs, ["image_embed", "cls_ln2"], options=opts(FeatureCache(tmp_path / "c")))
    assert seen["images"] == 0
    assert [r.path for r in second.records] == [r.path for r in recs]
    for n in direct:
        assert torch.equal(second.features[n], first.features[n])


def test_per_feature_entries_compute_only_what_is_missing(tmp_path, plugins, counted):
    backbone, seen = counted
    recs = records_in(make_folder(tmp_path / "d", splits=("a",), n=1), plugins)
    cache = FeatureCache(tmp_path / "c")
    extract(backbone, recs, ["image_embed"], options=opts(cache, 2))
    seen["images"] = 0
    extract(backbone, recs, ["cls_final"], options=opts(cache, 2))  # another detector's feature: computed
    assert seen["images"] == 2
    seen["images"] = 0
    both = extract(backbone, recs, ["image_embed", "cls_final"], options=opts(cache, 2))
    assert seen["images"] == 0
    assert both.features["cls_final"].shape == (2, backbone.info.width)
    assert {g["feature"] for g in cache.info()["groups"]} == {"image_embed", "cls_final"}


def test_a_changed_byte_is_recomputed_and_the_rest_served(tmp_path, plugins, counted):
    backbone, seen = counted
    root = make_folder(tmp_path / "d", splits=("a",), n=2)
    recs = records_in(root, plugins)
    cache = FeatureCache(tmp_path / "c")
    extract(backbone, recs, ["image_embed"], options=opts(cache, 2))
    victim = Path(recs[2].path)
    img = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(victim)).copy()
    img[0, 0, 0] ^= 0xFF  # one changed pixel = changed bytes
    __import__("PIL.Image", fromlist=["Image"]).fromarray(img).save(victim)
    seen["images"] = 0
    again = extract(backbone, recs, ["image_embed"], options=opts(cache, 2))
    assert seen["images"] == 2  # one miss, run in one padded batch of 2; three served
    fresh = direct_features(backbone, [recs[2]], ["image_embed"])["image_embed"][0]
    torch.testing.assert_close(again.features["image_embed"][2], fresh, rtol=0, atol=1e-5)


@pytest.mark.parametrize("change", ["protocol", "perturbation", "weights", "batch_size", "precision"])
def test_a_changed_setting_never_hits(tmp_path, plugins, counted, change, monkeypatch):
    backbone, seen = counted
    recs = records_in(make_folder(tmp_path / "d", splits=("a",), n=1), plugins)
    cache = FeatureCache(tmp_path / "c")
    base = dict(protocol="center_crop", perturbation=parse_perturbations(None, plugins)[0])
    extract(backbone, recs, ["image_embed"], options=opts(cache, 2), **base)
    seen["images"] = 0
    kw, o = dict(base), opts(cache, 2)
    if change == "protocol":
        kw["protocol"] = "resize_center_crop"
    elif change == "perturbation":
        kw["perturbation"] = parse_perturbations("jpeg:40", plugins, include_clean=False)[0]
    elif change == "weights":  # same architecture and name, other weights -> other identity
        monkeypatch.setattr(backbone, "identity", backbone.identity + "@other-weights")
    elif change == "batch_size":
        o = opts(cache, batch_size=1)
    elif change == "precision":
        monkeypatch.setattr(backbone, "precision", "bf16")
    extract(backbone, recs, ["image_embed"], options=o, **kw)
    assert seen["images"] == 2  # both images went through the backbone again


def test_augmented_views_are_keyed_by_augment_view_and_seed(tmp_path, plugins, counted):
    from sidbench.engine import EngineFitData

    backbone, seen = counted
    recs = records_in(make_folder(tmp_path / "d", splits=("a",), n=1), plugins)

    class Flip:
        name = "flip-or-not"

        def __call__(self, img, rng):
            return img.transpose(0) if rng.random() < 0.5 else img

    def fit_data(seed):
        return EngineFitData(backbone=backbone, train=recs, protocol="center_crop", seed=seed, options=opts(FeatureCache(tmp_path / "c"), 2))

    v0 = fit_data(0).features("train", ["image_embed"], augment=Flip(), view=0).features["image_embed"]
    seen["images"] = 0
    again = fit_data(0).features("train", ["image_embed"], augment=Flip(), view=0).features["image_embed"]
    assert seen["images"] == 0 and torch.equal(again, v0)
    for seed, view in ((0, 1), (1, 0)):
        seen["images"] = 0
        fit_data(seed).features("train", ["image_embed"], augment=Flip(), view=view)
        assert seen["images"] == 2


WRITER = textwrap.dedent("""
    import sys, torch
    from sidbench.engine.cache import FeatureCache
    cache = FeatureCache(sys.argv[1])
    i = 0
    while True:  # batches of 50 entries whose value is their number: checkable after the kill
        if sys.argv[2] == "put_many":  # synchronous, one transaction per batch
            cache.put_many([(f"k{j}", "image_embed", "test", torch.full((4096,), float(j))) for j in range(i, i + 50)])
        else:  # the background writer, several batches per transaction
            cache.store([f"k{j}" for j in range(i, i + 50)], "image_embed", "test",
                        torch.arange(i, i + 50, dtype=torch.float32)[:, None].expand(50, 4096), torch.float16)
            if i % 500 == 0:
                cache.flush()
        i += 50
        print(i, flush=True)
""")


@pytest.mark.parametrize("how", ["put_many", "store"])
def test_sigkill_during_writes_never_leaves_a_torn_entry(tmp_path, how):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "c"), how], stdout=subprocess.PIPE, env=env,
                            text=True)
    try:
        for _ in range(25):  # let it commit some batches (the store variant flushes every 500), then kill it
            assert proc.stdout.readline(), "writer died"
        time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    db = sqlite3.connect(tmp_path / "c" / DB_NAME)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    n = db.execute("SELECT COUNT(*) FROM features").fetchone()[0]
    db.close()
    assert n >= 1000 and n % 50 == 0  # whole batches only
    cache = FeatureCache(tmp_path / "c")
    got = cache.get_many([f"k{j}" for j in range(n + 50)])
    assert len(got) == n
    for key, t in got.items():
        assert torch.equal(t, torch.full((4096,), float(key[1:])))  # fp16-exact integers, widened to fp32 again


def test_a_blob_of_the_wrong_length_is_a_miss(tmp_path):
    cache = FeatureCache(tmp_path / "c")
    cache.put_many([("a", "image_embed", "test", torch.ones(8)), ("b", "image_embed", "test", torch.ones(8))])
    db = sqlite3.connect(cache.path)
    with db:
        db.execute("UPDATE features SET data = substr(data, 1, 20) WHERE key = 'a'")
    db.close()
    assert set(FeatureCache(tmp_path / "c").get_many(["a", "b"])) == {"b"}


def run_cli(*argv) -> int:
    from sidbench.cli import main

    return main(list(argv))


def test_sidbench_run_twice_runs_the_backbone_once_and_cache_info_clear(tmp_path, monkeypatch, capsys):
    from sidbench.backbones.clip import ClipBackbone

    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    data = make_folder(tmp_path / "d", splits=("a",), n=2)
    calls = {"images": 0}
    real = ClipBackbone._forward

    def forward(self, images, names):
        calls["images"] += images.shape[0]
        return real(self, images, names)

    monkeypatch.setattr(ClipBackbone, "_forward", forward)
    common = ["run", "--data", str(data), "--detectors", "clip_zeroshot", "--backbone", "clip-tiny",
              "--batch-size", "4", "--no-progress"]
    assert run_cli(*common, "--out", str(tmp_path / "r1"), "--no-cache") == 0
    assert not (tmp_path / "cache" / "features" / DB_NAME).exists()
    assert run_cli(*common, "--out", str(tmp_path / "r2")) == 0
    assert calls["images"] == 8  # 4 images in one batch of 4, twice
    assert run_cli(*common, "--out", str(tmp_path / "r3")) == 0
    assert calls["images"] == 8  # third run: all four from the cache
    assert (tmp_path / "r1" / "scores.csv").read_text() == (tmp_path / "r3" / "scores.csv").read_text()
    capsys.readouterr()
    assert run_cli("cache", "info") == 0
    text = capsys.readouterr().out
    assert str(tmp_path / "cache" / "features") in text and "image_embed" in text and "text_embed" in text
    groups = {g["feature"]: g["entries"] for g in FeatureCache().info()["groups"]}
    assert groups == {"image_embed": 4, "text_embed": 7}  # 4 images; the 7 prompts of the text classifier
    assert run_cli("cache", "clear") == 0
    assert "removed 11 entries" in capsys.readouterr().out
    assert FeatureCache().info()["entries"] == 0


@pytest.mark.gpu
def test_cuda_bf16_channels_last_compile_match_cpu_and_are_cached_apart(tmp_path, plugins):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from sidbench.backbones.clip import build_tiny

    recs = records_in(make_folder(tmp_path / "d", splits=("a",), n=2), plugins)
    cache = FeatureCache(tmp_path / "c")
    cpu = extract(build_tiny(), recs, ["image_embed"], options=opts(cache, 2)).features["image_embed"]
    gpu_backbone = build_tiny(device="cuda")
    assert gpu_backbone.precision == "fp16"  # the reference code's autocast precision, by default
    gpu = extract(gpu_backbone, recs, ["image_embed"], options=opts(cache, 2)).features["image_embed"]
    assert not torch.equal(gpu, cpu)  # half-precision features: computed, not served from the fp32 CPU entries
    torch.testing.assert_close(gpu, cpu, rtol=0.05, atol=0.05)
    compiled = extract(build_tiny(device="cuda").compile(), recs, ["image_embed"], options=opts(None, 2))
    torch.testing.assert_close(compiled.features["image_embed"], gpu, rtol=0.05, atol=0.05)


def test_a_missed_image_is_read_from_disk_once(tmp_path, plugins, tiny_backbone, monkeypatch):
    """The worker hashes the bytes for the cache key and decodes those same bytes: one read per image."""
    recs = resolve_records(make_folder(tmp_path / "d", splits=("s",), n=2), plugins)
    reads = []
    import sidbench.data.images as images
    import sidbench.engine.loader as loader

    original = images.read_file
    for module in (images, loader):  # every way the loader reads a file's bytes
        monkeypatch.setattr(module, "read_file", lambda path: reads.append(Path(path).name) or original(path))
    opened = []

    real_open = images.Image.open
    monkeypatch.setattr(images.Image, "open", lambda fp, *a, **k: opened.append(type(fp).__name__) or real_open(fp, *a, **k))
    fs = extract(tiny_backbone, recs, ("image_embed",),
                 options=ExtractOptions(progress=False, cache=FeatureCache(tmp_path / "c")))
    assert len(fs) == 4 and len(reads) == 4 and opened == ["BytesIO"] * 4
