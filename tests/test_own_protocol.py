"""A pixel detector's own protocols (ProtocolSpec): found by name, given the file's bytes, multi-view
averaged, listed, cache-keyed with their version, and refused by name when unknown."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from sidbench.cli import main

from conftest import make_folder

PLUGIN_DIR = str(Path(__file__).parent / "plugins_protocol")


def run(*args):
    return main(["run", "--plugins-dir", PLUGIN_DIR, "--no-progress", "--detectors", "byte_probe", *args])


def test_reads_the_files_bytes(tmp_path):
    data = make_folder(tmp_path / "d", splits=("a",), n=2)
    out = tmp_path / "o"
    assert run("--data", str(data), "--out", str(out), "--perturb", "jpeg:90") == 0
    s = pd.read_csv(out / "scores.csv")
    clean = s[s.perturbation == "none"]
    for row in clean.itertuples():
        raw = Path(row.path).read_bytes()
        assert row.logit == pytest.approx(len(raw) / 1024.0 + raw[0], rel=1e-6)
    assert (s[s.perturbation != "none"].logit == -2.0).all()  # a perturbed image has no file bytes
    assert set(s.protocol) == {"file_bytes"}


def test_views_are_averaged_and_the_protocol_overrides(tmp_path):
    from PIL import Image
    import torchvision.transforms.functional as TF

    data = make_folder(tmp_path / "d", splits=("a",), n=2)
    out = tmp_path / "o"
    assert run("--data", str(data), "--out", str(out), "--protocol", "two_views", "--no-cache") == 0
    s = pd.read_csv(out / "scores.csv")
    for row in s.itertuples():
        x = TF.to_tensor(TF.center_crop(Image.open(row.path).convert("RGB"), 16))
        assert row.logit == pytest.approx(float((x[0].mean() + 0.5 * x[0].mean()) / 2), rel=1e-5)


def test_unknown_protocol_is_one_line(tmp_path, capsys):
    data = make_folder(tmp_path / "d", splits=("a",), n=1)
    assert run("--data", str(data), "--out", str(tmp_path / "o"), "--protocol", "two_view") != 0
    err = capsys.readouterr().err
    assert "two_view" in err and "two_views" in err and len(err.strip().splitlines()) == 1


def test_cache_key_and_listing_carry_the_protocol():
    from sidbench.api import PixelInput, ProtocolSpec
    from sidbench.data.preprocess import n_views, protocol_key, variable_size

    info = PixelInput(image_size=16, protocols=(ProtocolSpec("mine", "x:y", views=3, variable_size=True, version="2"),))
    assert protocol_key("mine", info).startswith("mine@v2|16|")
    assert n_views("mine", info) == 3 and variable_size("mine", info)
    assert n_views("mine") == 1 and not variable_size("center_crop", info)
    assert main(["list", "protocols", "--plugins-dir", PLUGIN_DIR]) == 0
