"""Hostile inputs (#16.5, #16.6): names that are not UTF-8, symlink loops, FIFOs named .png, thin strips that a
resize would blow up, absurd worker counts. Each case is bounded in time (an alarm or a subprocess timeout)."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, make_folder
from sidbench.cli import main
from test_results_folder import run_args


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: SIGALRM interrupts a blocked open() (of a FIFO, say)."""
    def expired(*_):
        raise TimeoutError(f"still blocked after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def png_bytes(seed: int = 0, size=(32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_names_that_are_not_utf8_are_written_and_read_back(tmp_path):
    """#16.5: such a name crashed the CSV writer on every run and resume."""
    from sidbench.results.scores import read_scores

    data = make_folder(tmp_path / "d", splits=("s",), n=2)
    real = os.fsencode(data / "s" / "0_real") + b"/caf\xe9-\xff.png"  # Latin-1 bytes, invalid UTF-8
    with open(real, "wb") as f:
        f.write(png_bytes())
    empty = os.fsencode(data / "s" / "1_fake") + b"/\xfe-empty.png"
    open(empty, "wb").close()
    out = tmp_path / "out"
    assert main(run_args(data, out)) == 0
    scores = (out / "scores.csv").read_bytes()
    assert real in scores and empty in (out / "skipped.csv").read_bytes()  # the exact bytes
    assert os.fsdecode(real) in set(read_scores(out / "scores.csv")["path"])
    assert main(run_args(data, out)) == 0  # the resume reads them back: nothing rescored, nothing lost
    assert (out / "scores.csv").read_bytes() == scores


def _records_in_subprocess(root: Path) -> tuple[int, list[str]]:
    code = ("import sys; from sidbench.data.layout import FolderLayout; rs = FolderLayout().records(sys.argv[1]); "
            "print(len(rs), len({r.path for r in rs})); print(' '.join(sorted({r.split for r in rs})))")
    res = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr[-2000:]
    counts, splits = res.stdout.splitlines()
    n, distinct = map(int, counts.split())
    assert n == distinct
    return n, splits.split()


def test_symlink_loops_end_and_invent_nothing(tmp_path):
    """#16.6: two `..` links ran forever (memory growing); one invented a split with 40 nested copies."""
    one = make_folder(tmp_path / "one", splits=("s",), n=2)
    os.symlink("..", one / "s" / "0_real" / "up")
    assert _records_in_subprocess(one) == (4, ["s"])
    two = make_folder(tmp_path / "two", splits=("s",), n=2)
    os.symlink("..", two / "s" / "0_real" / "up")
    os.symlink("../..", two / "s" / "1_fake" / "upup")
    assert _records_in_subprocess(two) == (4, ["s"])
    # a linked folder elsewhere is read, once, however many links lead to it
    make_folder(tmp_path / "elsewhere", splits=("t",), n=1)
    os.symlink(tmp_path / "elsewhere" / "t", two / "t")
    os.symlink(tmp_path / "elsewhere" / "t", two / "t2")
    assert _records_in_subprocess(two) == (6, ["s", "t"])


def test_skipped_entries_of_a_walk_are_named(tmp_path, caplog):
    from sidbench.data.layout import iter_files

    root = make_folder(tmp_path / "d", splits=("s",), n=1)
    (root / "s" / "0_real" / ".DS_Store").write_bytes(b"x")
    (root / ".git").mkdir()
    os.symlink("..", root / "s" / "loop")
    with caplog.at_level(logging.WARNING, logger="sidbench"):
        files = list(iter_files(root))
    assert len(files) == 2
    text = caplog.text
    assert "ignored 2 hidden" in text and ".DS_Store" in text and ".git/" in text
    assert "did not follow 1 link" in text and "s/loop" in text


def test_a_fifo_socket_or_device_named_png_is_skipped_with_a_reason(tmp_path, monkeypatch):
    """#16.6: a FIFO named .png blocked the run forever."""
    from sidbench.data.images import UnreadableImage, read_image

    data = make_folder(tmp_path / "d", splits=("s",), n=2)
    fifo = data / "s" / "1_fake" / "fifo.png"
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX)
    sock_path = data / "s" / "1_fake" / "sock.png"
    monkeypatch.chdir(sock_path.parent)
    sock.bind(sock_path.name)  # relative: socket paths are limited to about 100 bytes
    monkeypatch.undo()
    try:
        with deadline(60):
            for path, kind in ((fifo, "a FIFO"), (sock_path, "a socket"), (Path(os.devnull), "a character device")):
                with pytest.raises(UnreadableImage, match=f"not a regular file \\({kind}\\)"):
                    read_image(path)
            out = tmp_path / "out"
            assert main(run_args(data, out)) == 0
        skipped = (out / "skipped.csv").read_text()
        assert "fifo.png,not a regular file (a FIFO)" in skipped and "sock.png,not a regular file (a socket)" in skipped
    finally:
        sock.close()


def test_images_too_long_for_a_resize_are_refused_before_it(tmp_path, monkeypatch):
    """#16.6: a 100000x1 PNG passed the pixel-count check, then the resize protocols scaled it to gigabytes."""
    from sidbench.data.images import MAX_PIXELS, UnreadableImage, read_image
    from sidbench.data.perturb import Resize
    from sidbench.data.preprocess import make_preprocess
    from sidbench.registry import describe_backbone

    real_resize = Image.Image.resize

    def guarded(self, size, *args, **kwargs):  # never let the old behaviour allocate gigabytes here
        assert size[0] * size[1] <= MAX_PIXELS, f"resize to {size} would allocate {3 * size[0] * size[1]:,} bytes"
        return real_resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", guarded)
    Image.new("RGB", (100_000, 1)).save(tmp_path / "strip.png")
    with pytest.raises(UnreadableImage, match="too long"):
        read_image(tmp_path / "strip.png")
    Image.new("RGB", (60_000, 1)).save(tmp_path / "thin.png")  # within the side limit, but not once resized
    img = read_image(tmp_path / "thin.png")
    pre = make_preprocess("resize_center_crop", describe_backbone("clip-tiny"))
    with pytest.raises(UnreadableImage, match="resized to"):
        pre(img)
    with pytest.raises(UnreadableImage, match="resized to"):
        Resize(40)(Image.new("RGB", (3000, 3000)), np.random.default_rng(0))


def test_workers_are_capped_at_the_cpu_count(caplog):
    """#16.6: `workers = 100000` in a TOML file exhausted the machine's memory."""
    from sidbench.engine.loader import ImageDataset, cpu_count, make_loader
    from sidbench.run.config import config_from

    with caplog.at_level(logging.WARNING, logger="sidbench"):
        cfg = config_from({"workers": 100_000})
    assert cfg.workers == cpu_count() and "workers = 100000" in caplog.text
    assert make_loader(ImageDataset([], lambda x: x), 2, 100_000, "cpu").num_workers == cpu_count()


def test_the_empty_label_folder_message_ends_on_symlink_loops(tmp_path):
    """The walk behind "your 0_real/1_fake folders are empty" follows each real folder once, like iter_files."""
    import threading

    from sidbench.data.layout import empty_label_dirs

    a = tmp_path / "data" / "a"
    (a / "0_real").mkdir(parents=True)
    (a / "x").symlink_to("..")
    (a / "y").symlink_to("..")
    found = []
    walker = threading.Thread(target=lambda: found.append(empty_label_dirs(tmp_path / "data")), daemon=True)
    walker.start()
    walker.join(timeout=20)
    assert not walker.is_alive(), "empty_label_dirs did not end on a folder with two '..' links"
    assert found == [[a / "0_real"]]
