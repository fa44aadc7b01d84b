"""Cache faults get the advice that fits them (issue 20, cases 17 and 28-29): a cache on a read-only file system
still serves its entries and `cache info` does not call it damaged; a full disk, a file size limit or a directory
where SQLite keeps its write-ahead log never gets `sidbench cache clear` (which would delete a healthy
database); a write failure is printed once, not a second time as a raw logging line."""
from __future__ import annotations

import errno
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from sidbench.engine import cache as cache_mod
from sidbench.engine.cache import DB_NAME, FeatureCache

STEP = textwrap.dedent('''
    import sys, torch
    from sidbench.engine.cache import FeatureCache
    from sidbench.cli import main
    step, root = sys.argv[1], sys.argv[2]
    keys = [f"k{i}" for i in range(4)]
    cache = FeatureCache(root)
    if step == "write":
        cache.put_many([(k, "f", "bb", torch.full((3,), float(i))) for i, k in enumerate(keys)])
        cache.close()
        sys.exit(0)
    got = cache.get_many(keys)
    assert sorted(got) == keys and float(got["k3"][0]) == 3.0, got
    cache.put_many([("new", "f", "bb", torch.zeros(3))])
    cache.put_many([("new2", "f", "bb", torch.zeros(3))])
    assert list(cache.faults) == ["write"], cache.faults
    print("FAULT", cache.faults["write"])
    info = FeatureCache(root).info()
    assert info["damaged"] is None and info["entries"] == 4, info
    sys.exit(main(["cache", "info"]))
''')


def _can_mount(tmp_path: Path) -> bool:
    if not shutil.which("unshare") or sys.platform != "linux":
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    r = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {probe}"],
                       capture_output=True, timeout=20)
    return r.returncode == 0


def test_a_cache_on_a_read_only_file_system_serves_its_entries(tmp_path):
    if not _can_mount(tmp_path):
        pytest.skip("needs `unshare -m` and mount (root, Linux) to mount a read-only file system")
    mnt, step = tmp_path / "mnt", tmp_path / "step.py"
    mnt.mkdir()
    step.write_text(STEP)
    py, root = sys.executable, mnt / "features"
    script = (f"mount -t tmpfs -o size=8m tmpfs {mnt} && {py} {step} write {root} && "
              f"mount -o remount,ro {mnt} && SIDBENCH_CACHE={mnt} {py} {step} read {root}")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    fault = next(line for line in out.splitlines() if line.startswith("FAULT"))
    assert "writable" in fault and "cache clear" not in fault
    assert "damaged" not in out and "4 entries" in out


def _filled(root: Path) -> FeatureCache:
    cache = FeatureCache(root)
    cache.put_many([("k", "f", "bb", torch.ones(2))])
    cache.close()
    return FeatureCache(root)


def test_a_directory_where_the_wal_goes_is_named_not_cleared(tmp_path, capsys, monkeypatch):
    from sidbench.cli import main

    _filled(tmp_path / "features")
    (tmp_path / "features" / (DB_NAME + "-wal")).mkdir()
    cache = FeatureCache(tmp_path / "features")
    assert cache.get_many(["k"]) == {}
    [message] = cache.faults.values()
    assert "-wal is not a file" in message and "move it away" in message and "cache clear" not in message
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path))
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "damaged" not in out and "-wal is not a file" in out
    assert main(["cache", "clear"]) != 0  # refused in one line: the database is healthy, not removed
    assert "move it away" in capsys.readouterr().err
    assert (tmp_path / "features" / DB_NAME).is_file()


@pytest.mark.parametrize("error, hint", [
    (sqlite3.OperationalError("database or disk is full"), "free some space"),
    (OSError(errno.EFBIG, "File too large"), "ulimit -f"),
    (sqlite3.OperationalError("disk I/O error"), "was not found damaged, so do not clear it"),
])
def test_faults_of_the_disk_never_advise_clearing(tmp_path, error, hint):
    advice = cache_mod.advice(tmp_path, error)
    assert hint in advice and "cache clear" not in advice


def test_damage_still_advises_clearing(tmp_path):
    assert "cache clear" in cache_mod.advice(tmp_path, sqlite3.DatabaseError("database disk image is malformed"))


def test_a_write_failure_is_printed_once(tmp_path, monkeypatch):
    """A library calling logging.info() (open_clip does) installs basicConfig's root handler, which printed
    every sidbench warning a second time as `WARNING:sidbench.cache:...`."""
    code = textwrap.dedent(f'''
        import logging, sqlite3, torch
        from sidbench.api import show_messages
        from sidbench.engine import cache as cache_mod
        from sidbench.engine.cache import store
        show_messages()
        logging.info("a library's root-level message")  # what open_clip does; installs basicConfig otherwise
        def full(db, rows):
            raise sqlite3.OperationalError("database or disk is full")
        store.write_rows = full
        cache = cache_mod.FeatureCache({str(tmp_path / "c")!r})
        for i in range(3):
            cache.put_many([(f"k{{i}}", "f", "bb", torch.ones(2))])
        logging.getLogger("someone.else").warning("other libraries still speak")
    ''')
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "write failed" in ln]
    assert len(lines) == 1 and lines[0].startswith("sidbench: warning: feature cache"), r.stderr
    assert "WARNING:someone.else:other libraries still speak" in r.stderr
