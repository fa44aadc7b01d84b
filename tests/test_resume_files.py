"""Resume follows the files (#16.3): rows are keyed by content, so a changed image is scored again, a deleted one
leaves the results, a skip that now reads is forgotten, and a folder without config.json is adopted only when its
rows are this run's. Checkpoint hashes notice a file rewritten in place."""
from __future__ import annotations

import os

import numpy as np

from conftest import write_image
from sidbench.cli import main
from test_results_folder import one_line_error, run_args


def test_resume_rescores_changed_images_and_drops_deleted_ones(tmp_path, capsys):
    """The resumed folder ends exactly as a clean run on the data as it is now (bit-identical scores.csv)."""
    rng = np.random.default_rng(0)
    data = tmp_path / "d"
    changed = write_image(data / "s" / "0_real" / "000.png", rng)
    write_image(data / "s" / "0_real" / "001.png", rng)
    write_image(data / "s" / "1_fake" / "000.png", rng, fake=True)
    in_place = write_image(data / "s" / "1_fake" / "001.bmp", rng, fake=True, fmt="BMP")
    broken = data / "z" / "0_real" / "000.png"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"")
    deleted = write_image(data / "z" / "1_fake" / "000.png", rng, fake=True)
    out = tmp_path / "out"
    assert main(run_args(data, out)) == 0
    assert "000.png" in (out / "skipped.csv").read_text()

    write_image(changed, np.random.default_rng(99))  # new content, same name
    st = in_place.stat()
    with open(in_place, "r+b") as f:  # one pixel changed in place: same size, and the mtime is set back
        f.seek(st.st_size - 10)
        f.write(bytes([255 - f.read(1)[0]]))
    os.utime(in_place, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert in_place.stat().st_size == st.st_size and in_place.stat().st_mtime_ns == st.st_mtime_ns
    write_image(broken, rng)  # now it reads
    deleted.unlink()
    capsys.readouterr()
    assert main(run_args(data, out)) == 0
    said = capsys.readouterr().err

    clean = tmp_path / "clean"
    assert main(run_args(data, clean)) == 0
    for name in ("scores.csv", "skipped.csv", "metrics.csv"):
        assert (out / name).read_text() == (clean / name).read_text(), name
    assert str(deleted) not in (out / "scores.csv").read_text()
    assert "of changed images (scored again)" in said and "of images no longer listed" in said


def test_unchanged_images_are_not_read_again_on_resume(tmp_path, monkeypatch):
    from sidbench.data.images import FileState, content_sha256
    from sidbench.results import resume

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"aaa")
    b.write_bytes(b"bbb")
    known = {str(a): (FileState.of(a.stat()), content_sha256(b"aaa")), str(b): (FileState.of(b.stat()), "stale")}
    b.write_bytes(b"BBBB")
    read = []
    real = resume.read_file
    monkeypatch.setattr(resume, "read_file", lambda p: read.append(p) or real(p))
    got = resume.current_digests([str(a), str(b), str(tmp_path / "gone.png")], known)
    assert got == {str(a): content_sha256(b"aaa"), str(b): content_sha256(b"BBBB"), str(tmp_path / "gone.png"): None}
    assert read == [str(b)]


def test_a_folder_without_config_is_adopted_only_when_its_rows_match(tmp_path, capsys):
    """The resume key used to ignore the protocol: rows of another protocol were taken as finished."""
    from conftest import make_folder

    data = make_folder(tmp_path / "d", splits=("s",), n=2)
    out = tmp_path / "out"
    assert main(run_args(data, out, "--protocol", "center_crop")) == 0
    (out / "config.json").unlink()
    before = (out / "scores.csv").read_text()
    err = one_line_error(capsys, run_args(data, out, "--protocol", "resize_center_crop"))
    assert "do not match this run" in err and "protocol 'center_crop'" in err
    assert (out / "scores.csv").read_text() == before
    assert main(run_args(data, out, "--protocol", "center_crop")) == 0  # its own configuration: adopted as it is
    assert (out / "scores.csv").read_text() == before and (out / "config.json").exists()


def test_an_older_scores_file_is_brought_to_the_current_format(tmp_path):
    """Rows without a content hash cannot be checked: the file gets the column (empty), and resume rescores them."""
    from sidbench.results.scores import SCORE_COLUMNS, read_scores
    from sidbench.results.score_log import ScoreLog

    path = tmp_path / "scores.csv"
    path.write_text("detector,split,group,generator,perturbation,protocol,path,label,logit,prob\n"
                    "d,s,g,,none,center_crop,/x.png,0,1.5,0.8175744761936437\n")
    ScoreLog(path).close()
    df = read_scores(path)
    assert list(df.columns) == list(SCORE_COLUMNS) and df["sha256"].tolist() == [""] and df["logit"].tolist() == [1.5]


def test_checkpoint_hash_notices_a_file_rewritten_in_place(tmp_path):
    """The memo keyed on (path, size, mtime) returned the old SHA-256 of a file replaced with the same size and mtime."""
    import hashlib

    from sidbench.api.checkpoints import file_sha256

    path = tmp_path / "w.safetensors"
    path.write_bytes(b"A" * 64)
    st = path.stat()
    assert file_sha256(path) == hashlib.sha256(b"A" * 64).hexdigest()
    with open(path, "r+b") as f:  # in place: same inode and size
        f.write(b"B")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_sha256(path) == hashlib.sha256(b"B" + b"A" * 63).hexdigest()
    other = tmp_path / "new"
    other.write_bytes(b"C" * 64)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, path)  # replaced by another file: new inode, same size and mtime
    assert file_sha256(path) == hashlib.sha256(b"C" * 64).hexdigest()


def test_validation_rows_follow_their_files_too(tmp_path, capsys):
    """val_scores.csv (what --threshold val and --calibrate fit on) is checked on resume like scores.csv."""
    rng = np.random.default_rng(1)
    data, val = tmp_path / "d", tmp_path / "v"
    for root in (data, val):
        for i in range(2):
            write_image(root / "s" / "0_real" / f"{i:03d}.png", rng)
            write_image(root / "s" / "1_fake" / f"{i:03d}.png", rng, fake=True)
    changed, deleted = val / "s" / "0_real" / "000.png", val / "s" / "1_fake" / "001.png"
    out, clean = tmp_path / "out", tmp_path / "clean"
    assert main([*run_args(data, out), "--val", str(val)]) == 0
    write_image(changed, np.random.default_rng(99))
    deleted.unlink()
    capsys.readouterr()
    assert main([*run_args(data, out), "--val", str(val)]) == 0
    assert "dropped 2 validation score row(s)" in capsys.readouterr().err
    assert main([*run_args(data, clean), "--val", str(val)]) == 0
    assert (out / "val_scores.csv").read_text() == (clean / "val_scores.csv").read_text()


def test_a_touched_image_is_hashed_once_not_on_every_resume(tmp_path, monkeypatch):
    from sidbench.results import resume

    rng = np.random.default_rng(2)
    data = tmp_path / "d"
    touched = write_image(data / "s" / "0_real" / "000.png", rng)
    write_image(data / "s" / "1_fake" / "000.png", rng, fake=True)
    out = tmp_path / "out"
    assert main(run_args(data, out)) == 0
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, another mtime
    assert main(run_args(data, out)) == 0  # hashes it again (the row stays: same content)
    read = []
    real = resume.read_file
    monkeypatch.setattr(resume, "read_file", lambda p: read.append(p) or real(p))
    assert main(run_args(data, out)) == 0
    assert str(touched) not in read  # its new state went into .sidbench-hashes
