"""Persistent loader workers (sidbench.engine.workers.WorkerPool): one set of worker processes serves every pass
and epoch of a run, the pixels are those of a fresh loader bit for bit, and no worker outlives the pool (closed,
failed or interrupted)."""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, make_folder

pytestmark = pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="DataLoader workers by fork")


class PidPixels:
    """A picklable preprocess that tags each image with the pid of the process that loaded it."""

    def __call__(self, img):
        return torch.tensor([[[os.getpid()]]], dtype=torch.int64)


def records(tmp_path: Path, n: int = 6):
    from sidbench.api.records import Record

    root = make_folder(tmp_path / "data", splits=("a",), n=n, size=(40, 48), seed=3)
    return [Record(str(p), int(p.parent.name == "1_fake"), "a") for p in sorted(root.rglob("*.png"))]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def pass_pids(pool, recs, batch_size: int = 2, order=None) -> set[int]:
    from sidbench.engine.inputs import isolated_iter
    from sidbench.engine.loader import ImageDataset, make_loader

    out = set()
    for batch in isolated_iter(make_loader(ImageDataset(recs, PidPixels()), batch_size, 2, "cpu", order, pool=pool)):
        out |= {int(p) for p in batch.pixels.flatten()}
    return out


def test_two_passes_use_the_same_workers_and_close_stops_them(tmp_path):
    from sidbench.engine.workers import WorkerPool

    recs = records(tmp_path)
    pool = WorkerPool()
    first = pass_pids(pool, recs)
    second = pass_pids(pool, recs, order=list(reversed(range(len(recs)))))  # another pass: a shuffled epoch
    assert pool.starts == 1
    assert os.getpid() not in first and first | second <= set(pool.workers) and len(pool.workers) == 2
    pids = pool.workers
    pool.close()
    assert pool.workers == [] and not any(alive(p) for p in pids)
    assert pass_pids(pool, recs) and pool.starts == 2  # a closed pool starts again when used


def test_pooled_passes_give_the_pixels_of_fresh_loaders(tmp_path, tiny_backbone, plugins):
    """Features of two protocols and a perturbation through one pool equal in-process loading, bit for bit."""
    from sidbench.data.perturb import parse_perturbations
    from sidbench.engine.inputs import ExtractOptions, extract
    from sidbench.engine.workers import WorkerPool

    recs = records(tmp_path, n=2)
    jpeg = parse_perturbations("jpeg:50", plugins)[-1]
    passes = [dict(protocol="center_crop"), dict(protocol="resize_center_crop"),
              dict(protocol="center_crop", perturbation=jpeg)]
    with WorkerPool() as pool:
        pooled = [extract(tiny_backbone, recs, ["image_embed"], options=ExtractOptions(2, 2, False, pool=pool), **kw)
                  for kw in passes]
        assert pool.starts == 1
    plain = [extract(tiny_backbone, recs, ["image_embed"], options=ExtractOptions(2, 0, False), **kw) for kw in passes]
    for a, b in zip(pooled, plain):
        assert torch.equal(a.features["image_embed"], b.features["image_embed"])
        assert [r.path for r in a.records] == [r.path for r in b.records]


def test_training_epochs_share_workers_and_keep_seeded_augmentations(tmp_path):
    """Two epochs of shuffled, augmented batches: one worker start, the same batches as in-process loading."""
    from sidbench.api.specs import PixelInput
    from sidbench.data.augment import BlurJpegCrop
    from sidbench.engine.fitting import EngineFitData
    from sidbench.engine.inputs import ExtractOptions
    from sidbench.engine.workers import WorkerPool

    recs = records(tmp_path, n=5)
    aug = BlurJpegCrop(name="t", crop=32, blur_prob=0.5, jpeg_prob=0.5)
    px = PixelInput(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))

    def epochs(opts):
        data = EngineFitData(recs, pixels=px, options=opts, seed=7, protocol="center_crop")
        return [[(x["pixels"], y) for x, y in data.batches(batch_size=3, augment=aug, epoch=e)] for e in (0, 1)]

    with WorkerPool() as pool:
        pooled = epochs(ExtractOptions(progress=False, workers=2, pool=pool))
        assert pool.starts == 1
    plain = epochs(ExtractOptions(progress=False, workers=0))
    assert len(pooled[0]) == 4 and [len(e) for e in pooled] == [len(e) for e in plain]
    for ep_a, ep_b in zip(pooled, plain):
        for (xa, ya), (xb, yb) in zip(ep_a, ep_b):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(pooled[0][0][0], pooled[1][0][0])  # epochs differ (order and views)


def test_an_abandoned_or_overlapping_pass_leaves_the_next_one_right(tmp_path):
    from sidbench.engine.inputs import isolated_iter
    from sidbench.data.preprocess import Preprocess
    from sidbench.engine.loader import ImageDataset, make_loader
    from sidbench.engine.workers import WorkerPool

    recs = records(tmp_path, n=8)
    pre = Preprocess("center_crop", 16, (0.5,) * 3, (0.5,) * 3, uint8=True)

    def loaded(pool, stop=None):
        got = []
        for k, batch in enumerate(isolated_iter(make_loader(ImageDataset(recs, pre), 2, 2, "cpu", pool=pool))):
            if k == stop:
                break
            got += list(zip(batch.index, batch.pixels))
        return got

    want = loaded(None)
    with WorkerPool() as pool:
        assert len(loaded(pool, stop=1)) == 2  # stopped after one batch, the rest still in flight
        inner = []
        for k, batch in enumerate(isolated_iter(make_loader(ImageDataset(recs, pre), 2, 2, "cpu", pool=pool))):
            if k == 0:
                inner = loaded(pool)  # a pass started while another is open gets its own loader
        assert pool.starts == 1
        for got in (inner, loaded(pool)):
            assert [i for i, _ in got] == [i for i, _ in want]
            assert all(torch.equal(a, b) for (_, a), (_, b) in zip(got, want))


def test_settings_that_do_not_pickle_get_a_fresh_loader(tmp_path):
    from sidbench.engine.workers import WorkerPool

    recs = records(tmp_path, n=2)
    pool = WorkerPool()
    from sidbench.engine.inputs import isolated_iter
    from sidbench.engine.loader import ImageDataset, make_loader

    preprocess = lambda img: torch.tensor([[[os.getpid()]]])  # noqa: E731 - not picklable
    pids = set()
    for batch in isolated_iter(make_loader(ImageDataset(recs, preprocess), 2, 2, "cpu", pool=pool)):
        pids |= {int(p) for p in batch.pixels.flatten()}
    assert len(pids) >= 1 and os.getpid() not in pids and pool.starts == 0


def test_a_worker_killed_mid_pass_fails_the_pass_and_the_pool_starts_afresh(tmp_path):
    from sidbench.engine.inputs import isolated_iter
    from sidbench.engine.loader import ImageDataset, make_loader
    from sidbench.engine.workers import WorkerPool

    recs = records(tmp_path, n=8)
    with WorkerPool() as pool:
        pass_pids(pool, recs)
        old = list(pool.workers)
        with pytest.raises(RuntimeError, match="DataLoader worker"):
            for k, _ in enumerate(isolated_iter(make_loader(ImageDataset(recs, PidPixels()), 1, 2, "cpu", pool=pool))):
                if k == 0:
                    os.kill(old[0], signal.SIGKILL)
                    time.sleep(0.5)
        assert pool.workers == [] and not any(alive(p) for p in old)  # the failed pass stopped them all
        assert pass_pids(pool, recs) and pool.starts == 2 and not set(pool.workers) & set(old)


INTERRUPTED = textwrap.dedent("""
    import os, signal, sys, time
    sys.path.insert(0, {tests!r})
    from test_loader_pool import PidPixels, records
    from sidbench.engine.inputs import isolated_iter
    from sidbench.engine.loader import ImageDataset, make_loader
    from sidbench.engine.workers import WorkerPool
    from pathlib import Path

    recs = records(Path({tmp!r}), n=20)
    with WorkerPool() as pool:
        for k, batch in enumerate(isolated_iter(make_loader(ImageDataset(recs, PidPixels()), 1, 2, "cpu", pool=pool))):
            if k == 2:
                print(" ".join(map(str, pool.workers)), flush=True)
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of a pass
                time.sleep(5)
    """)


def test_ctrl_c_stops_the_workers(tmp_path):
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED.format(tests=str(REPO / "tests"), tmp=str(tmp_path)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2
    deadline = time.time() + 10
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in pids)


def test_a_run_starts_its_workers_once_for_all_passes_and_stops_them(tmp_path, monkeypatch):
    """`sidbench run --workers 2` with a perturbation (two passes) and two protocols' detectors: one start."""
    from sidbench.cli import main
    from sidbench.engine import workers

    pools = []

    class Recorded(workers.WorkerPool):
        def __init__(self):
            super().__init__()
            self.passes = 0
            pools.append(self)

        def loader(self, *args, **kwargs):
            pooled = super().loader(*args, **kwargs)
            self.passes += pooled is not None
            return pooled

    monkeypatch.setattr(workers, "WorkerPool", Recorded)
    data = make_folder(tmp_path / "data", splits=("a",), n=2, size=(40, 48), seed=5)
    code = main(["run", "--data", str(data), "--backbone", "clip-tiny", "--detectors", "clip_zeroshot", "--device", "cpu",
                 "--workers", "2", "--perturb", "jpeg:50", "--batch-size", "2", "--no-progress", "--no-cache",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    assert len(pools) == 1 and pools[0].passes >= 2  # the clean and the JPEG pass, at least
    assert pools[0].starts == 1 and pools[0].workers == []  # started once, stopped at the end


def test_a_plugin_imported_after_the_workers_started_gets_a_fresh_loader_then_a_fresh_pool(tmp_path, monkeypatch):
    """A pass whose preprocess lives in a module the pooled workers cannot import (loaded after they forked) is
    loaded by a fresh loader; the pool starts afresh for the next pass."""
    from sidbench.engine.inputs import isolated_iter
    from sidbench.engine.loader import ImageDataset, make_loader
    from sidbench.engine.workers import WorkerPool

    recs = records(tmp_path, n=2)
    with WorkerPool() as pool:
        first = pass_pids(pool, recs)
        (tmp_path / "late_plugin.py").write_text(
            "import os, torch\n\nclass Late:\n    def __call__(self, img):\n"
            "        return torch.tensor([[[os.getpid()]]], dtype=torch.int64)\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        import late_plugin

        got = set()
        for batch in isolated_iter(make_loader(ImageDataset(recs, late_plugin.Late()), 2, 2, "cpu", pool=pool)):
            got |= {int(p) for p in batch.pixels.flatten()}
        assert len(got) >= 1 and not got & first and pool.starts == 1 and pool.workers == []
        assert pass_pids(pool, recs) and pool.starts == 2
