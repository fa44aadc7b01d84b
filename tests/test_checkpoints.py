"""Checkpoints load only as plain tensors: a pickle payload is refused without running."""
from __future__ import annotations

import os

import pytest
import torch
from safetensors import safe_open

import sidbench
from sidbench.api.checkpoints import load_tensors
from sidbench.api import WeightsError


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "x": Payload(marker)}, evil)
    with pytest.raises(WeightsError, match="refused to load"):
        load_tensors(evil)
    with pytest.raises(WeightsError, match="refused to load"):
        sidbench.load_detector("clip_zeroshot", weights=str(evil), backbone="clip-tiny")
    assert not marker.exists()


def test_non_tensor_state_and_missing_file(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="expected a state dict"):
        load_tensors(tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="does not exist"):
        load_tensors(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        load_tensors(tmp_path / "junk.pth")


def test_sidbench_checkpoint_round_trip_is_safetensors(tmp_path, plugins):
    from sidbench.registry import load_detector

    plugins.load_dir(os.path.join(os.path.dirname(__file__), "plugins"))  # fit_probe among others
    det = load_detector("lstsq_probe", backbone="clip-tiny", plugins=plugins)
    with torch.no_grad():
        det.head.weight.normal_()
    path = det.save(str(tmp_path / "probe"))
    assert path.endswith(".safetensors")
    with safe_open(path, "pt") as f:
        assert set(f.keys()) == {"head.weight", "head.bias"}
        assert '"detector": "lstsq_probe"' in f.metadata()["sidbench"]
    again = load_detector("lstsq_probe", weights=path, backbone="clip-tiny", plugins=plugins)
    assert torch.equal(again.head.weight, det.head.weight) and again.fitted
    with pytest.raises(WeightsError, match="saved by detector 'lstsq_probe'"):
        load_detector("clip_zeroshot", weights=path, backbone="clip-tiny", plugins=plugins)
