"""The results folder under faults: --overwrite deletes only what sidbench wrote, one run at a time per folder,
a failed start leaves nothing that blocks the corrected command, and every write fault is one line."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, make_folder
from sidbench.cli import main

PROBES = str(REPO / "tests" / "plugins_speed")


def run_args(data: Path, out: Path | None, *extra: str) -> list[str]:
    """A small, fast run: the slow probe (no sleep) on clip-tiny, batches of 2, no cache."""
    return ["run", "--data", str(data), "--detectors", "slowprobe", "--backbone", "clip-tiny", "--batch-size", "2",
            "--plugins-dir", PROBES, "--no-progress", "--no-cache", *(["--out", str(out)] if out else []), *extra]


def one_line_error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (argv, err)
    lines = [ln for ln in err.splitlines() if ln.startswith("sidbench: error:")]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


@pytest.fixture
def data(tmp_path) -> Path:
    return make_folder(tmp_path / "data", splits=("s",), n=2)


def test_overwrite_never_deletes_a_folder_sidbench_did_not_write(tmp_path, data, capsys, monkeypatch):
    """#16.1: `--out .. --overwrite` from a sub-folder used to delete the whole project, working directory included."""
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "notes.txt").write_text("years of work")
    monkeypatch.chdir(project / "sub")
    err = one_line_error(capsys, run_args(data, Path(".."), "--overwrite"))
    assert "not a sidbench results folder" in err and "nothing was deleted" in err
    assert (project / "notes.txt").read_text() == "years of work" and (project / "sub").is_dir()
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt", "sub"]  # not even a lock or manifest left


def test_overwrite_removes_only_the_files_sidbench_wrote(tmp_path, data, capsys):
    out = tmp_path / "out"
    assert main(run_args(data, out)) == 0
    (out / "mine.txt").write_text("keep me")
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "my.safetensors").write_bytes(b"not sidbench's")
    with (out / ".sidbench-results").open("ab") as f:  # a tampered manifest must not reach outside the folder
        f.write(b"../../escape.txt\n/etc/passwd\n")
    (tmp_path / "escape.txt").write_text("outside")
    capsys.readouterr()
    assert main(run_args(data, out, "--perturb", "jpeg:50", "--overwrite")) == 0
    err = capsys.readouterr().err
    assert "kept 2" in err and "mine.txt" in err and "my.safetensors" in err
    assert (out / "mine.txt").read_text() == "keep me" and (out / "checkpoints" / "my.safetensors").exists()
    assert (tmp_path / "escape.txt").exists()
    assert "jpeg50" in (out / "scores.csv").read_text()  # the new run's results replaced the old ones


def test_a_failed_start_leaves_nothing_behind(tmp_path, data, capsys, monkeypatch):
    """#11.3: a typo in --detectors must not leave a claim that refuses the corrected command, nor stray folders."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "x"
    bad = [a if a != "slowprobe" else "slowprobee" for a in run_args(data, out)]
    assert "unknown detector 'slowprobee'" in one_line_error(capsys, bad)
    assert not out.exists()
    one_line_error(capsys, [a if a != "slowprobe" else "slowprobee" for a in run_args(data, None)])
    assert not (tmp_path / "results").exists()  # no results/<name>-<hash>/ from an argument error
    # a fit that fails after the folder was claimed: the one-class training set makes MeanProbe's weights NaN
    one_class = make_folder(tmp_path / "train", splits=("t",), n=2)
    for f in (one_class / "t" / "1_fake").iterdir():
        f.unlink()
    fit = [a if a != "slowprobe" else "meanprobe" for a in run_args(data, None)]
    assert "NaN or Inf weights" in one_line_error(capsys, [*fit, "--train", str(one_class)])
    assert not (tmp_path / "results").exists()  # results/<name>-<hash>/ and the results/ it needed are gone
    assert main(run_args(data, out)) == 0  # the corrected command


def test_a_claim_without_scores_is_taken_over(tmp_path, data):
    """A run killed before it scored anything left config.json of its configuration; the next command proceeds."""
    out = tmp_path / "out"
    out.mkdir()
    (out / ".sidbench-results").write_bytes(b"# sidbench results folder\nconfig.json\n")
    (out / "config.json").write_text('{"detectors": ["clip_zeroshott"]}')
    assert main(run_args(data, out)) == 0
    assert "slowprobe" in (out / "config.json").read_text()


def test_a_second_run_into_the_same_out_stops_at_once(tmp_path, data, capsys):
    """#16.4: two runs writing one scores.csv at once wrote two headers; every later resume then failed."""
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from sidbench.results.lock import FolderLock; "
         "FolderLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(120)", str(out)],
        stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t = time.time()
        err = one_line_error(capsys, run_args(data, out))
        assert time.time() - t < 20
        assert "in use by another sidbench run" in err and f"pid {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "scores.csv").exists()
    assert main(run_args(data, out)) == 0  # the dead holder's lock is taken over
    assert (out / "scores.csv").read_text().count("detector,split") == 1
    assert not (out / ".sidbench-lock").exists()


def test_out_that_is_a_file_or_read_only_is_one_line(tmp_path, data, capsys, monkeypatch):
    """#16.9: tracebacks for --out that is a file, or a folder we may not write."""
    (tmp_path / "file").write_text("x")
    assert "is a file, not a folder" in one_line_error(capsys, run_args(data, tmp_path / "file"))
    ro = tmp_path / "ro"
    ro.mkdir()
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):  # root ignores chmod, so refuse writes below `ro` here
        if str(path).startswith(str(ro)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    assert "cannot write there (Read-only file system)" in one_line_error(capsys, run_args(data, ro))


class _FullDisk:
    """A file whose writes fail as on a full disk (the file itself was created, as a real write would)."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device", self._f.name)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def test_a_full_disk_is_one_line_and_leaves_no_temporary_files(tmp_path, data, capsys, monkeypatch):
    import builtins

    done, fresh = tmp_path / "done", tmp_path / "fresh"
    assert main(run_args(data, done)) == 0
    real_open = builtins.open

    def full_disk(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        below = str(file).startswith((str(done), str(fresh)))
        return _FullDisk(f) if below and any(m in mode for m in "wa") else f

    monkeypatch.setattr(builtins, "open", full_disk)
    for out in (done, fresh):  # fails writing the results of a finished run / claiming a new folder
        err = one_line_error(capsys, run_args(data, out))
        assert "No space left on device" in err and "free some space" in err
    monkeypatch.undo()
    assert not [p for p in done.iterdir() if p.name.endswith(".tmp")]
    assert not fresh.exists()  # nothing was scored: the folder it created is gone again


def test_a_full_cache_database_is_reported_not_its_rollback(tmp_path, data, capsys, monkeypatch):
    """#16.9: when SQLite runs out of space, the failed ROLLBACK's error hid the real one. The run writes
    through ``store.write_rows`` (the writer thread's one write call): the fault is injected there, inside the real
    transaction, and the test checks that it was reached."""
    import sqlite3

    from sidbench.engine.cache import store as cache_store

    calls = []

    def full_disk(db, rows):
        """The failed COMMIT of a full disk: it ends the transaction, so a ROLLBACK after it fails too."""
        calls.append(len(rows))
        try:
            raise sqlite3.OperationalError("database or disk is full")
        finally:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    monkeypatch.setattr(cache_store, "write_rows", full_disk)
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    code = main([a for a in run_args(data, tmp_path / "out") if a != "--no-cache"])
    err = capsys.readouterr().err
    assert calls, "the run never reached the cache's write call: the fault was not injected"
    assert "Traceback" not in err and "rollback" not in err.lower()
    assert "database or disk is full" in err, err  # reported once, with its real cause
    assert code == 0 or code == 2, err


def test_failed_checkpoint_writes_leave_no_temporary_file(tmp_path, monkeypatch):
    import builtins

    import torch

    from sidbench.api.checkpoints import save_tensors

    real_open = builtins.open

    def full(file, mode="r", *args, **kwargs):  # the temporary file is created, then the disk is full
        f = real_open(file, mode, *args, **kwargs)
        return _FullDisk(f) if str(file).startswith(str(tmp_path)) and "w" in mode else f

    monkeypatch.setattr(builtins, "open", full)
    with pytest.raises(OSError):
        save_tensors(tmp_path / "c.safetensors", {"w": torch.zeros(2)}, {})
    assert list(tmp_path.iterdir()) == []
