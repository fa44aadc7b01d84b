"""The cache's on-disk format is pinned: keys hash exactly what they hashed when ``features-v2`` shipped, and a
database written by hand to that format (plain sqlite3, an independent CRC) is served, so caches written
before any refactoring of sidbench.engine.cache keep serving. A change here orphans every user's cache: bump
``FORMAT`` (or the file name) on purpose, never by accident."""
from __future__ import annotations

import json
import sqlite3
import zlib
from types import SimpleNamespace

import torch

from sidbench.engine.cache import DB_NAME, FORMAT, CacheContext, CacheLookup, FeatureCache, shard_name, text_key

CONTEXT = CacheContext("bb:arch+w", "cpu-fp32-eager-b64", "center_crop|224|m|s")
SEEDED = CacheContext("bb:arch+w", "cpu-fp32-eager-b64", "center_crop|224|m|s", "jpeg90", "flip|1|7")
RECORD = SimpleNamespace(key="ds/real/0001.png")
V2_TABLE = """CREATE TABLE features (key TEXT PRIMARY KEY, feature TEXT NOT NULL, backbone TEXT NOT NULL,
    dtype TEXT NOT NULL, shape TEXT NOT NULL, crc INTEGER NOT NULL, data BLOB NOT NULL,
    created REAL NOT NULL DEFAULT (julianday('now')))"""


def test_keys_hash_what_they_always_hashed():
    assert (FORMAT, DB_NAME, shard_name(3)) == (2, "features-v2.sqlite", "features-v2.rank3.sqlite")
    assert text_key("clip:vit", "cpu-fp32", "a photo") == \
        "4b829f5e916c86abb9d941b6a59c2efced6b33a8c6c520783e4d8bde4326f8af"
    assert CONTEXT.digest == "af97ace9bec2bb5479e700d2ab20c3b17f6e0fc756c472f374c8a6339c3f1c1a"
    assert SEEDED.digest == "f21ff5b5bb19c548445e7adefcddff651cf44a1bc0fb0bd2e026775576a745a9"
    cache = FeatureCache("/nonexistent")
    assert CacheLookup(cache, CONTEXT, ("image_embed", "cls_final")).keys("abc123", RECORD) == {
        "image_embed": "1fbcca8aa5ead716f28655c7f3a88b9fdde24bac67e1183cd304e26275f6f3fd",
        "cls_final": "f7cf891efe4fff84dd7c44145caa6140bd923202cc62abf9f9bc0d6fd427cb1d"}
    assert CacheLookup(cache, SEEDED, ("image_embed",)).keys("abc123", RECORD) == {
        "image_embed": "fc881117c5fb2bf81d7d6a6144eafae7fe15ae33496f6dda0b459ea595d29770"}


def hand_written_row(key: str, values: torch.Tensor) -> tuple:
    """One v2 row built from the format's description, not from sidbench's encoder."""
    dtype, shape = str(values.dtype).removeprefix("torch."), json.dumps(list(values.shape))
    data = values.contiguous().view(torch.uint8).numpy().tobytes()
    crc = zlib.crc32(data, zlib.crc32(f"{key}|{dtype}|{shape}".encode()))
    return key, "image_embed", "bb", dtype, shape, crc, data


def test_a_database_written_to_the_v2_format_by_hand_is_served(tmp_path):
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 8
    for name, rows in ((DB_NAME, [hand_written_row("a", x[0]), hand_written_row("b", x[1].half())]),
                       (shard_name(1), [hand_written_row("c", x[2].bfloat16())])):
        db = sqlite3.connect(tmp_path / name)
        db.execute(V2_TABLE)
        db.executemany("INSERT INTO features (key, feature, backbone, dtype, shape, crc, data) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        db.commit()
        db.close()
    got = FeatureCache(tmp_path).get_many(["a", "b", "c"])
    assert sorted(got) == ["a", "b", "c"]
    for j, k in enumerate("abc"):
        assert got[k].dtype == torch.float32 and torch.equal(got[k], x[j])  # exact in half precision: x is k/8
    assert FeatureCache(tmp_path).info()["entries"] == 3


def test_what_the_cache_writes_is_the_v2_format(tmp_path):
    x = torch.tensor([[0.5, -1.25], [3.0, 0.1]])
    cache = FeatureCache(tmp_path)
    cache.store(["a", "b"], "image_embed", "bb", x, narrow=torch.float16)
    cache.close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    rows = db.execute("SELECT key, feature, backbone, dtype, shape, crc, data FROM features ORDER BY key").fetchall()
    db.close()
    # 0.1 is not exact in fp16, so "b" stays fp32
    assert rows == [hand_written_row("a", x[0].half()), hand_written_row("b", x[1])]
