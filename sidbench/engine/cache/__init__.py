"""The on-disk feature cache: backbone features keyed by everything that determines them.

One entry is one named feature of one image. Its key hashes the backbone identity (architecture
+ weights), the numerics (device kind, precision, compiled or not, backbone batch size), the
preprocessing protocol (size, mean, std), the perturbation, the augmented view (augment name, view,
seed) and the SHA-256 of the image file's bytes, so a changed byte or setting can never be served a
stale entry. Entries are stored per feature name: a detector that needs another feature computes only
that, and every detector and run over the same images shares the rest.

Storage is one SQLite database in WAL mode (``$SIDBENCH_CACHE/features/features-v2.sqlite``): each
transaction writes whole entries, so a process killed at any moment (SIGKILL included) leaves every
entry whole or absent, and readers (DataLoader workers, other ranks, other runs) never see a
half-written one. Each entry records its torch dtype (features computed in fp16/bf16 on a GPU are
stored in that precision, half the bytes of fp32; fp32 on CPU) and a CRC-32 of its key, dtype, shape
and bytes: a blob damaged on disk is a miss, never served. One file per entry with tmp+rename would be
as safe but costs an inode and a directory walk per image; SQLite keeps it one file with indexed
look-ups. Keep the folder on a local disk: SQLite's locking is not reliable over NFS.

Under ``torchrun`` each rank writes its own shard, ``features-v2.rank<R>.sqlite`` (R the global rank), and no
other process ever writes it, so no lock is shared between machines even when the folder is on a shared file
system. Every process reads its own database first and then, for what it misses, every other database in the
folder (the single-process file and the shards), opened read-only and ``immutable`` (no lock, no shared-memory
index: both are unreliable across machines). What another rank is writing at that moment may be invisible or
read torn: the CRC makes that a miss, and a database that fails to read is dropped for the rest of the process,
never reported as damage. A single process keeps writing ``features-v2.sqlite`` and reads the shards too, so a
distributed run's features serve a later single run and the other way round.

Writes happen off the hot path (:meth:`FeatureCache.store`): a background thread takes batches from a
bounded queue and commits them in large transactions. They are flushed at the end of every extraction
pass (:meth:`FeatureCache.flush`), not before each chunk's scores are written, and that is on purpose:
the cache is an optimisation and scores are the data. An entry always holds exactly the values the
scoring path used, so whether a killed run had committed an image's features or not, the resumed run
computes (or is served) the same bits; a kill loses at most the queued entries, which cost only
recomputation. What resume needs is that committed entries are whole and correct (transactions and
checksums) and that ``scores.csv`` rows are fsynced before they count as done (``ScoreLog``).

A cache that cannot be opened, read or written (damaged file, read-only or full disk, a file where
its folder should be) is reported once, in one line, and the run goes on without it (reads stay on
when only writing fails): no image is ever skipped because of the cache.

One concern per module: :mod:`.keys` (what a key hashes), :mod:`.encoding` (a tensor as a checksummed row),
:mod:`.store` (SQLite files, schema and row reads/writes), :mod:`.writer` (the background writer thread),
:mod:`.faults` (damage or disk fault, and how to fix it), :mod:`.maintenance` (``cache info|clear``) and
:mod:`.features` (:class:`FeatureCache` and :class:`CacheLookup`, what runs use). Every public name is
importable from here.
"""
from __future__ import annotations

from .encoding import DTYPES
from .faults import DAMAGE, advice, is_damage, is_read_only
from .features import CacheLookup, FeatureCache
from .keys import FORMAT, CacheContext, feature_keys, text_key
from .maintenance import Cleared
from .store import (COLUMNS, DB_NAME, OLD_DB_NAMES, PAGE_SIZE, SCHEMA, SHARD, databases, default_cache_root,
                    on_read_only_filesystem, shard_name)
from .writer import TXN_BYTES, WRITE_QUEUE

__all__ = [
    "COLUMNS", "DAMAGE", "DB_NAME", "DTYPES", "FORMAT", "OLD_DB_NAMES", "PAGE_SIZE", "SCHEMA", "SHARD", "TXN_BYTES",
    "WRITE_QUEUE", "CacheContext", "CacheLookup", "Cleared", "FeatureCache", "advice", "databases",
    "default_cache_root", "feature_keys", "is_damage", "is_read_only", "on_read_only_filesystem", "shard_name",
    "text_key",
]
