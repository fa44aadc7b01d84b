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


@pytest.mark.slow
def test_every_mode_on_cpu_with_a_pixel_test_plugin(tmp_path, monkeypatch):
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    plugins = str(REPO / "tests" / "plugins")
    assert gpu_check().main([*TINY, "--plugins-dir", plugins, "--out", str(tmp_path / "o")]) == 0
    rows = {r["mode"].split(" ")[0]: r for r in json.loads((tmp_path / "o" / "gpu_check.json").read_text())}
    for key in ("(a)", "(b)", "(d)", "(e)", "(f)"):
        assert rows[key]["rate"] > 0, key
    assert rows["(b)"]["passes"] == 2  # the CLIP detectors read two preprocessing protocols
    assert rows["(e)"]["mode"] == "(e) pixel detector checker_probe, cold cache"
    assert "skipped" in rows["(c)"]["note"]
