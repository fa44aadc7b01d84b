"""benchmarks/gpu_check.py runs on CPU with tiny settings (the GPU check itself needs a GPU machine)."""
from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from conftest import REPO


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


TINY = ["--device", "cpu", "--backbone", "clip-tiny", "--images", "16", "--batch-size", "8", "--train-images", "8",
        "--budget", "100000"]


def test_encoder_alone_and_a_skipped_mode_make_a_table(tmp_path, monkeypatch):
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    assert gpu_check().main([*TINY, "--modes", "cf", "--out", str(tmp_path / "o")]) == 0
    text = (tmp_path / "o" / "gpu_check.md").read_text()
    assert "| (f) encoder alone (fp32, batch 8) | 24 |" in text  # at least 3 timed batches
    assert "skipped: torch.compile is measured on CUDA only" in text
    assert "0 decode workers" in text and "clip-tiny" in text
    # a second check into the same --out starts from an empty work folder (no warm cache for a "cold" mode)
    stale = tmp_path / "o" / "work" / "stale.txt"
    stale.write_text("x")
    assert gpu_check().main([*TINY, "--modes", "f", "--out", str(tmp_path / "o")]) == 0
    assert not stale.exists()


def test_the_device_decode_mode_compares_with_pillow(tmp_path, monkeypatch):
    """(h) on the CPU: torchvision's CPU decoder (libjpeg-turbo, as Pillow's) gives Pillow's pixels exactly."""
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    assert gpu_check().main([*TINY, "--modes", "h", "--out", str(tmp_path / "o")]) == 0
    text = (tmp_path / "o" / "gpu_check.md").read_text()
    assert "| (h) JPEG decode on the device (batched) | 16 |" in text
    assert "decode_jpeg on cpu vs Pillow, 16 JPEGs: max abs diff 0, 0.000% of values differ" in text


def test_a_work_folder_it_did_not_make_is_refused(tmp_path):
    (tmp_path / "o" / "work").mkdir(parents=True)
    with pytest.raises(SystemExit, match="was not made by this script"):
        gpu_check().main([*TINY, "--modes", "f", "--out", str(tmp_path / "o")])


@pytest.mark.slow
def test_every_mode_on_cpu_with_a_pixel_test_plugin(tmp_path, monkeypatch):
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    plugins = str(REPO / "tests" / "plugins")
    assert gpu_check().main([*TINY, "--plugins-dir", plugins, "--pixels", "checker_probe,npr.progan4",
                             "--out", str(tmp_path / "o")]) == 0
    rows = {r["mode"].split(" ")[0]: r for r in json.loads((tmp_path / "o" / "gpu_check.json").read_text())}
    for key in ("(a)", "(b)", "(d)", "(e)", "(f)"):
        assert rows[key]["rate"] > 0, key
    assert rows["(b)"]["passes"] == 2  # the CLIP detectors read two preprocessing protocols
    pixel_rows = [r for r in json.loads((tmp_path / "o" / "gpu_check.json").read_text()) if r["mode"].startswith("(e)")]
    assert [r["mode"] for r in pixel_rows] == ["(e) pixel detector checker_probe, cold cache",
                                               "(e) pixel detector npr.progan4, cold cache"]  # a built-in one too
    assert all(r["rate"] > 0 for r in pixel_rows)
    assert "skipped" in rows["(c)"]["note"]
