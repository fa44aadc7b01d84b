"""The feature cache under faults: a damaged, read-only or full cache, or a file in its place, is reported once
and the run goes on with the same features, no image skipped; `sidbench cache info|clear` cope with damage.
And the background writer: bounded, flushed, exact in reduced precision."""
from __future__ import annotations

import logging
import multiprocessing
import os
import sqlite3
import threading
import time

import pytest
import torch

from conftest import make_folder

import sidbench.engine.cache as cache_mod
from sidbench.engine.cache import encoding, store
from sidbench.data.layout import resolve_records
from sidbench.engine import ExtractOptions, extract
from sidbench.engine.cache import DB_NAME, OLD_DB_NAMES, WRITE_QUEUE, FeatureCache

NAMES = ("image_embed", "cls_ln2")


@pytest.fixture
def recs(tmp_path, plugins):
    return resolve_records(str(make_folder(tmp_path / "d", splits=("a",), n=3)), plugins)  # 6 images


@pytest.fixture
def want(recs, tiny_backbone):
    return run(tiny_backbone, recs, None)


def run(backbone, records, cache, workers: int = 0):
    return extract(backbone, records, NAMES, options=ExtractOptions(batch_size=2, workers=workers, progress=False,
                                                                      cache=cache))


def same(got, want) -> None:
    """The same images, none skipped, bit-identical features."""
    assert not got.skipped and [r.path for r in got.records] == [r.path for r in want.records]
    for n in NAMES:
        assert torch.equal(got.features[n], want.features[n])


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sidbench.cache"]


def filled(root, backbone, records) -> FeatureCache:
    cache = FeatureCache(root)
    run(backbone, records, cache)
    cache.close()
    return FeatureCache(root)


@pytest.mark.parametrize("damage", ["truncated", "garbled header", "not a database"])
def test_a_damaged_database_is_reported_once_and_the_run_goes_on(tmp_path, recs, want, tiny_backbone, caplog, damage):
    path = tmp_path / "c" / DB_NAME
    filled(tmp_path / "c", tiny_backbone, recs)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbled header":
        path.write_bytes(os.urandom(100) + data[100:])
    else:
        path.write_text("these are not the features you are looking for\n" * 100)
    caplog.set_level(logging.WARNING, "sidbench.cache")
    same(run(tiny_backbone, recs, FeatureCache(tmp_path / "c")), want)
    [line] = warnings(caplog)
    assert str(path) in line and "failed" in line and "sidbench cache clear" in line and "\n" not in line


def test_a_corrupted_blob_is_a_miss(tmp_path, recs, want, tiny_backbone, monkeypatch):
    """Same length, one bit flipped: only the checksum can tell, and the entry is computed again."""
    cache = filled(tmp_path / "c", tiny_backbone, recs)
    db = sqlite3.connect(cache.path)
    with db:
        key, blob = db.execute("SELECT key, data FROM features WHERE feature = 'cls_ln2' LIMIT 1").fetchone()
        flipped = bytes([blob[0] ^ 1]) + blob[1:]
        db.execute("UPDATE features SET data = ? WHERE key = ?", (flipped, key))
    db.close()
    assert key not in cache.get_many([key])
    seen = []
    real = tiny_backbone.features
    monkeypatch.setattr(tiny_backbone, "features", lambda x, names: seen.append(len(x)) or real(x, names))
    same(run(tiny_backbone, recs, cache), want)
    assert seen == [2]  # the one image, in one padded batch
    assert key in FeatureCache(tmp_path / "c").get_many([key])  # and stored whole again


def test_a_read_only_cache_serves_what_it_has_and_stops_writing(tmp_path, recs, want, tiny_backbone, monkeypatch, caplog):
    filled(tmp_path / "c", tiny_backbone, recs[:2])
    real = store.connect
    monkeypatch.setattr(store, "connect", lambda path, readonly=False: real(path, readonly=True))
    caplog.set_level(logging.WARNING, "sidbench.cache")
    cache = FeatureCache(tmp_path / "c")
    same(run(tiny_backbone, recs, cache), want)
    assert cache.hits == 2 and cache.stored == 0
    [line] = warnings(caplog)
    assert "write failed" in line and "readonly" in line and "writable" in line
    same(run(tiny_backbone, recs, cache), want)  # a second pass: still served, not reported again
    assert cache.hits == 4 and len(warnings(caplog)) == 1


def test_a_full_disk_is_reported_once(tmp_path, recs, want, tiny_backbone, monkeypatch, caplog):
    def full(db, rows):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "write_rows", full)
    caplog.set_level(logging.WARNING, "sidbench.cache")
    cache = FeatureCache(tmp_path / "c")
    same(run(tiny_backbone, recs, cache), want)
    same(run(tiny_backbone, recs, cache), want)
    [line] = warnings(caplog)
    assert "write failed" in line and "disk is full" in line and "free some space" in line
    assert cache.stored == 0


def test_a_file_where_the_cache_folder_should_be(tmp_path, recs, want, tiny_backbone, caplog, monkeypatch, capsys):
    from sidbench.cli import main

    (tmp_path / "c").write_text("mine")
    caplog.set_level(logging.WARNING, "sidbench.cache")
    same(run(tiny_backbone, recs, FeatureCache(tmp_path / "c")), want)
    [line] = warnings(caplog)
    assert "is not a folder" in line and "SIDBENCH_CACHE" in line
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path))  # the cache folder is $SIDBENCH_CACHE/features
    (tmp_path / "features").write_text("mine too")
    assert main(["cache", "info"]) == 0
    assert "is not a folder" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a folder" in err and len(err.splitlines()) == 1
    assert (tmp_path / "features").read_text() == "mine too"  # never deleted: it is not sidbench's


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="the patched read reaches workers by fork")
def test_a_read_fault_in_a_dataloader_worker_is_reported_once_by_the_main_process(tmp_path, recs, want, tiny_backbone,
                                                                                    monkeypatch, caplog):
    filled(tmp_path / "c", tiny_backbone, recs[:2])

    def malformed(db, keys):
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(store, "read_rows", malformed)
    caplog.set_level(logging.WARNING, "sidbench.cache")
    cache = FeatureCache(tmp_path / "c")
    same(run(tiny_backbone, recs, cache, workers=2), want)
    [line] = warnings(caplog)
    assert "read failed" in line and "malformed" in line
    assert not cache.readable and not cache.writable


def test_a_cache_bug_is_an_error_not_a_skipped_image(tmp_path, recs, tiny_backbone, monkeypatch):
    def broken(self, keys):
        raise TypeError("a bug in the cache")

    monkeypatch.setattr(cache_mod.CacheLookup, "fetch", broken)
    with pytest.raises(TypeError, match="a bug in the cache"):
        run(tiny_backbone, recs, FeatureCache(tmp_path / "c"))


def test_cache_info_and_clear_on_a_damaged_database(tmp_path, monkeypatch, capsys):
    from sidbench.cli import main

    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path))
    root = tmp_path / "features"
    root.mkdir()
    (root / DB_NAME).write_bytes(b"SQLite format 3\x00" + os.urandom(5000))
    (root / OLD_DB_NAMES[0]).write_bytes(b"an old-format cache")
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "damaged" in out and "sidbench cache clear" in out and OLD_DB_NAMES[0] in out
    assert main(["cache", "clear"]) == 0
    assert "removed the damaged feature cache" in capsys.readouterr().out
    assert not any(root.iterdir())
    cache = FeatureCache()
    cache.put_many([("k", "image_embed", "test", torch.ones(3))])  # a fresh database in its place
    assert torch.equal(FeatureCache().get_many(["k"])["k"], torch.ones(3))


def test_sidbench_run_with_a_full_cache_disk_scores_and_skips_nothing_differently(tmp_path, monkeypatch, caplog):
    from sidbench.cli import main

    def full(db, rows):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    data = make_folder(tmp_path / "d", splits=("a",), n=2)
    common = ["run", "--data", str(data), "--detectors", "clip_zeroshot", "--backbone", "clip-tiny", "--no-progress",
              "--batch-size", "2"]
    assert main([*common, "--out", str(tmp_path / "plain"), "--no-cache"]) == 0
    monkeypatch.setattr(store, "write_rows", full)
    caplog.set_level(logging.WARNING, "sidbench.cache")
    assert main([*common, "--out", str(tmp_path / "full")]) == 0
    assert len(warnings(caplog)) == 1
    for name in ("scores.csv", "skipped.csv", "metrics.csv"):
        assert (tmp_path / "full" / name).read_text() == (tmp_path / "plain" / name).read_text()


# -- the background writer ---------------------------------------------------------------------

@pytest.mark.parametrize("narrow", [torch.float16, torch.bfloat16])
def test_entries_are_stored_in_the_precision_they_were_computed_in(tmp_path, narrow):
    """Rows exactly representable in half precision are stored so (raw bytes, torch dtype name per entry); a row
    that is not keeps fp32: what comes back always equals what was computed, bit for bit."""
    x = torch.randn(3, 5, 7).to(narrow).float()
    x[2, 0, 0] += 1e-7  # not representable in half precision any more
    cache = FeatureCache(tmp_path / "c")
    cache.store(["a", "b", "c"], "cls_ln2", "test", x, narrow)
    cache.flush()
    db = sqlite3.connect(cache.path)
    dtypes = dict(db.execute("SELECT key, dtype FROM features"))
    sizes = dict(db.execute("SELECT key, LENGTH(data) FROM features"))
    db.close()
    name = str(narrow).removeprefix("torch.")
    assert dtypes == {"a": name, "b": name, "c": "float32"}
    assert sizes == {"a": 70, "b": 70, "c": 140}
    got = FeatureCache(tmp_path / "c").get_many(["a", "b", "c"])
    for j, k in enumerate("abc"):
        assert got[k].dtype == torch.float32 and torch.equal(got[k], x[j])


def test_the_write_queue_is_bounded_and_flush_commits_everything(tmp_path, monkeypatch):
    gate = threading.Event()
    real = store.write_rows
    monkeypatch.setattr(store, "write_rows", lambda db, rows: gate.wait(30) and real(db, rows))
    cache = FeatureCache(tmp_path / "c")
    done = []

    def produce():
        for i in range(3 * WRITE_QUEUE):
            cache.store([f"k{i}"], "image_embed", "test", torch.full((1, 4), float(i)))
            done.append(i)

    producer = threading.Thread(target=produce)
    producer.start()
    for _ in range(100):  # until the producer stops advancing: the writer is stuck, the queue full
        before = len(done)
        time.sleep(0.05)
        if len(done) == before and cache._writer.queue.full():
            break
    assert WRITE_QUEUE <= len(done) < 3 * WRITE_QUEUE  # blocked, not buffering without bound
    gate.set()
    producer.join(30)
    cache.flush()
    assert cache._writer is None and cache.stored == 3 * WRITE_QUEUE
    got = FeatureCache(tmp_path / "c").get_many([f"k{i}" for i in range(3 * WRITE_QUEUE)])
    assert all(torch.equal(got[f"k{i}"], torch.full((4,), float(i))) for i in range(3 * WRITE_QUEUE))


def test_a_bug_in_the_writer_surfaces_at_flush(tmp_path, monkeypatch):
    def broken(*args):
        raise TypeError("a bug in the writer")

    monkeypatch.setattr(encoding, "encode_batch", broken)
    cache = FeatureCache(tmp_path / "c")
    for i in range(3):
        cache.store([f"k{i}"], "image_embed", "test", torch.ones(1, 4))
    with pytest.raises(TypeError, match="a bug in the writer"):
        cache.flush()
