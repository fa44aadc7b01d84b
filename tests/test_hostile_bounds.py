"""Bounds before allocation and one-line errors (issue 20, cases 7, 10, 16, 23-31 of the second hostile round):
checkpoint metadata that sizes memory, batch sizes, image reads sized by the file, the documented pixel limit,
a run under `ulimit -v`, `ulimit -f`, non-UTF-8 configs, metadata that is not JSON, FIFOs and sys.exit in
plugins. Every case is bounded in time and memory and writes only under tmp_path."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_folder
from sidbench.api import SidbenchError, WeightsError
from sidbench.registry import load_detector

REPO = Path(__file__).resolve().parents[1]


def npr_checkpoint(path: Path, options: dict) -> Path:
    """A sidbench safetensors checkpoint of npr.progan4 whose metadata claims ``options``."""
    from safetensors.torch import save_file

    from sidbench.detectors.npr import build_network

    state = {f"net.{k}": v.contiguous() for k, v in build_network().state_dict().items()}
    save_file(state, str(path), metadata={"sidbench": json.dumps({"detector": "npr.progan4", "options": options})})
    return path


# -- case 7: metadata that sizes memory ---------------------------------------------------------------------
@pytest.mark.parametrize("value", [1_000_000, 12_000, -3, 0, "abc", 2.5, True, None, [224]])
def test_checkpoint_metadata_sizes_are_refused_before_anything_is_built(tmp_path, plugins, value):
    path = npr_checkpoint(tmp_path / "npr.safetensors", {"image_size": value})
    with pytest.raises(WeightsError) as info:
        load_detector(f"npr@{path}", plugins=plugins)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and "invalid option value image_size=" in message
    assert str(path) in message  # the file that holds the value is named


def test_a_sane_size_in_the_metadata_still_loads(tmp_path, plugins):
    path = npr_checkpoint(tmp_path / "npr.safetensors", {"image_size": 64})
    assert load_detector(f"npr@{path}", plugins=plugins).pixel_input.image_size == 64


def test_an_option_that_sizes_memory_is_bounded_when_given_too(plugins):
    with pytest.raises(SidbenchError, match=r"invalid option value image_size=1000000: expected 1\.\.4096"):
        load_detector("npr[image_size=1000000]", plugins=plugins)


def test_checkpoint_metadata_that_is_not_json_is_one_line(tmp_path, plugins):
    from safetensors.torch import save_file

    from sidbench.detectors.npr import build_network

    state = {f"net.{k}": v.contiguous() for k, v in build_network().state_dict().items()}
    st = tmp_path / "npr.safetensors"
    save_file(state, str(st), metadata={"sidbench": "{not json"})
    pth = tmp_path / "npr.pth"
    torch.save({"sidbench": "{not json", "state_dict": state}, pth)
    npz = tmp_path / "npr.npz"
    np.savez(npz, **{k: v.numpy() for k, v in state.items()}, __sidbench__=np.array("{not json"))
    for path in (st, pth, npz):
        with pytest.raises(WeightsError, match="its sidbench metadata is not valid JSON") as info:
            load_detector(f"npr@{path}", plugins=plugins)
        assert "holds pickled" not in str(info.value) and len(str(info.value).splitlines()) == 1


def test_an_npz_only_says_pickled_when_it_is(tmp_path):
    from sidbench.api.checkpoints import load_tensors

    pickled = tmp_path / "obj.npz"
    np.savez(pickled, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(WeightsError, match="holds pickled objects"):
        load_tensors(pickled)
    cut = tmp_path / "cut.npz"
    np.savez(cut, x=np.zeros(1000))
    cut.write_bytes(cut.read_bytes()[:300])
    with pytest.raises(WeightsError, match="not a readable npz") as info:
        load_tensors(cut)
    assert "holds pickled" not in str(info.value)


# -- case 24: batch sizes and workers -----------------------------------------------------------------------
def test_batch_size_is_capped_with_a_message(caplog):
    from sidbench.run.config import RunConfig

    caplog.set_level(logging.WARNING, "sidbench")
    cfg = RunConfig(batch_size=100_000_000, workers=100_000)
    assert cfg.batch_size == 4096 and cfg.workers <= (os.cpu_count() or 1)
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "batch-size 100000000" in text and "using 4096" in text and "workers = 100000" in text


def test_an_image_read_is_sized_by_the_file(tmp_path):
    """A 1 KB image must not cost a 1 GiB buffer (MemoryError under `ulimit -v`, and 5x slower)."""
    from sidbench.data.images import read_file

    path = tmp_path / "small.png"
    Image.new("RGB", (8, 8)).save(path)
    tracemalloc.start()
    try:
        data, state = read_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert data == path.read_bytes() and state.size == len(data)
    assert peak < 1 << 20


# -- case 16: one pixel limit -------------------------------------------------------------------------------
def test_the_pixel_limit_is_one_number_in_code_and_readme():
    from sidbench.data.images import MAX_PIXELS

    assert MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS  # Pillow's error threshold, not its warning level
    documented = (REPO / "docs" / "results.md").read_text(encoding="utf-8")  # where the skip rules are
    assert f"{MAX_PIXELS:,}" in documented


def test_an_image_between_pillows_warning_and_the_limit_is_read(tmp_path, monkeypatch):
    """A 108 MP camera JPEG sits between Pillow's warning (89 MP) and the documented limit (179 MP): it is
    read, not skipped as a bomb. Scaled down: warning at 1000 pixels, limit at 2000."""
    from sidbench.data.images import UnreadableImage, read_image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    ok, bomb = tmp_path / "ok.jpg", tmp_path / "bomb.jpg"
    Image.new("RGB", (50, 30)).save(ok)  # 1500 pixels
    Image.new("RGB", (50, 50)).save(bomb)  # 2500 pixels
    assert read_image(ok, max_pixels=2000).size == (50, 30)
    with pytest.raises(UnreadableImage, match="decompression bomb"):
        read_image(bomb, max_pixels=2000)


@pytest.mark.slow
def test_a_108_megapixel_jpeg_is_read(tmp_path):
    from sidbench.data.images import read_image

    path = tmp_path / "camera.jpg"
    Image.new("L", (12000, 9000), 128).save(path, quality=50)
    assert read_image(path).size == (12000, 9000)


# -- the quickstart's detectors under `ulimit -v` -----------------------------------------------------------
def _vm_after_imports() -> int:
    """Address space (bytes) a process holds once torch and sidbench's heavy dependencies are imported: a CUDA
    build of torch alone maps ~3 GB of libraries, which no code of ours can shrink."""
    code = ("import torch, sklearn.svm, open_clip, matplotlib, sidbench.cli, sidbench.engine.scoring\n"
            "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmPeak')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return int(r.stdout.strip()) * 1024


@pytest.mark.slow  # a whole run in a fresh process: ~30 s idle (the default suite has the read-size test above)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_a_run_under_ulimit_v_completes(tmp_path):
    """`ulimit -v 4000000` (4 GB), or, where importing a CUDA build of torch already takes most of that, the
    import baseline plus 700 MB: a 1 GiB read buffer per image does not fit in either."""
    limit = max(4_000_000 * 1024, _vm_after_imports() + (700 << 20))
    make_folder(tmp_path / "test", splits=("gan",), n=3, size=(48, 48))
    make_folder(tmp_path / "train", splits=("progan",), n=4, size=(48, 48), seed=1)
    args = ["run", "--data", "test", "--train", "train", "--backbone", "clip-tiny", "--workers", "0", "--no-progress",
            "--detectors", "clip_svm,clip_zeroshot,npr.progan4,rine.progan4,tip_adapter,tip_adapter_f,univfd.progan",
            "--out", "out", "--set", "tip_adapter_f:epochs=1",
            "--set", "npr.progan4:epochs=1", "--set", "npr.progan4:image_size=32", "--set", "npr.progan4:crop_size=32",
            "--set", "npr.progan4:load_size=32", "--set", "npr.progan4:preprocess=center_crop",
            "--set", "univfd.progan:max_epochs=2", "--set", "rine.progan4:augment=false"]
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
        from sidbench.cli import main
        sys.exit(main({args!r}))
    """)
    env = {**os.environ, "SIDBENCH_CACHE": str(tmp_path / "cache"), "SIDBENCH_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "6 images scored, 0 skipped" in r.stdout + r.stderr


# -- one-line errors ----------------------------------------------------------------------------------------
def test_ulimit_f_while_writing_is_one_line(tmp_path, capsys, monkeypatch):
    """`ulimit -f` (EFBIG; Python ignores SIGXFSZ, so the write raises): one line, no traceback."""
    import resource

    from sidbench.cli import main
    from sidbench.detectors.npr import build_network

    ckpt = tmp_path / "npr.pth"
    torch.save(build_network().state_dict(), ckpt)
    make_folder(tmp_path / "test", splits=("gan",), n=3, size=(40, 40))
    monkeypatch.chdir(tmp_path)
    args = ["run", "--data", "test", "--detectors", f"npr.progan4@{ckpt}", "--set", "image_size=32",
            "--set", "preprocess=center_crop", "--workers", "0", "--no-progress", "--out", "out", "--no-cache"]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))  # only while this run writes
    try:
        code = main(args)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    [line] = [ln for ln in err.splitlines() if "error" in ln]
    assert "File too large" in line and "ulimit -f" in line


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    from sidbench.cli import main

    cfg = tmp_path / "paper.toml"
    cfg.write_bytes(b'detectors = ["npr"]\n# caf\xe9\n')
    assert main(["run", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not UTF-8 text (byte 0xe9 on line 2)" in err


# -- case 10 and sys.exit: plugins ---------------------------------------------------------------------------
def test_a_fifo_in_the_plugins_dir_is_skipped(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    os.mkfifo(folder / "x.py")
    (folder / "good.py").write_text(textwrap.dedent("""
        from sidbench.api import DetectorSpec, hookimpl

        @hookimpl
        def sidbench_detectors():
            return [DetectorSpec(name="good_one", factory="sidbench.detectors.univfd:UnivFD", features=("image_embed",))]
    """))
    code = textwrap.dedent(f"""
        from sidbench.registry import load_plugins
        p = load_plugins([{str(folder)!r}])
        print("GOOD" if "good_one" in p.detectors else "MISSING")
        print(*[str(f) for f in p.failed], sep="\\n")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "GOOD" in r.stdout and "x.py" in r.stdout and "not a regular file (a FIFO); skipped" in r.stdout


@pytest.mark.parametrize("body, reason", [("import sys\nsys.exit(3)\n", "it called sys.exit(3) while loading"),
                                          ("raise KeyboardInterrupt\n", "KeyboardInterrupt")])
def test_a_plugin_that_exits_at_import_is_reported_and_the_others_load(tmp_path, capsys, body, reason):
    from sidbench.cli import main

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "a_exits.py").write_text(body)
    (folder / "b_fine.py").write_text(textwrap.dedent("""
        from sidbench.api import DetectorSpec, hookimpl

        @hookimpl
        def sidbench_detectors():
            return [DetectorSpec(name="still_here", factory="sidbench.detectors.univfd:UnivFD", features=("image_embed",))]
    """))
    assert main(["list", "detectors", "--plugins-dir", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert "still_here" in out.split()
    assert "a_exits" in err and reason in err and err.count("\n") == 1
