"""UnivFD: the official head gives x W^T + b; the published fit recipe runs and round-trips without pickle."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_folder


def test_official_head_is_x_wT_plus_b(reference_dir, plugins):
    from sidbench.registry import load_detector

    path = reference_dir / "univfd_fc_weights.pth"
    raw = torch.load(path, map_location="cpu", weights_only=True)
    y = torch.randn(5, 768, generator=torch.Generator().manual_seed(0))
    expected = (y.double() @ raw["weight"].double().t() + raw["bias"].double()).squeeze(-1)
    for det in (load_detector("univfd", weights=str(path), plugins=plugins),
                load_detector(f"univfd@{path}", plugins=plugins)):
        assert det.required_features == ("image_embed",)
        assert det.preprocess == "center_crop"
        torch.testing.assert_close(det.score({"image_embed": y}).double(), expected, rtol=1e-5, atol=1e-5)


def test_official_head_on_wrong_backbone_is_a_clear_error(reference_dir, plugins):
    from sidbench.registry import load_detector
    from sidbench.api import WeightsError

    with pytest.raises(WeightsError, match="does not fit"):
        load_detector("univfd", weights=str(reference_dir / "univfd_fc_weights.pth"), backbone="clip-tiny",
                      plugins=plugins)


def test_early_stopping_follows_the_reference_rule():
    from sidbench.api import EarlyStopping, lower_lr

    stop = EarlyStopping(patience=2, delta=0.001)
    # 0.5005 is no gain (< delta): counter 1; 0.6 resets; two more epochs without gain stop it
    assert [stop.step(a) for a in (0.5, 0.5005, 0.6, 0.6, 0.6)] == [False, False, False, False, True]
    opt = torch.optim.AdamW(torch.nn.Linear(2, 1).parameters(), lr=1e-4)
    assert [lower_lr(opt, 10.0, 1e-6) for _ in range(3)] == [True, True, False]  # 1e-5, 1e-6, then below 1e-6


def test_the_schedule_lowers_the_rate_restarts_with_the_larger_delta_and_ends_below_min_lr():
    from sidbench.api import EarlyStopping

    opt = torch.optim.AdamW(torch.nn.Linear(2, 1).parameters(), lr=1e-4)
    stop = EarlyStopping(patience=1, delta=0.001)
    ends = [stop.schedule(a, opt, min_lr=1e-6) for a in (0.5, 0.5)]  # flat: lr 1e-4 -> 1e-5, fresh count
    assert ends == [False, False] and opt.param_groups[0]["lr"] == pytest.approx(1e-5)
    assert stop.best is None and stop.delta == 0.002
    assert [stop.schedule(a, opt, min_lr=1e-6) for a in (0.6, 0.6015)] == [False, False]  # +0.0015 < 0.002: lr 1e-6
    assert stop.schedule(0.7, opt, min_lr=1e-6) is False and stop.schedule(0.7, opt, min_lr=1e-6) is True  # < 1e-6


def test_augment_is_seeded_and_crops_to_the_backbone_size():
    from PIL import Image

    from sidbench.detectors.univfd import univfd_augment

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 150, 3), dtype=np.uint8))
    aug = univfd_augment(224)
    a = aug(img, np.random.default_rng(7))
    b = aug(img, np.random.default_rng(7))
    assert a.size == (224, 224)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_fit_saves_safetensors_and_reloads(tmp_path, plugins, tiny_backbone):
    from safetensors.torch import load_file

    from sidbench.data.layout import resolve_records
    from sidbench.registry import load_detector
    from sidbench.engine import ExtractOptions
    from sidbench.engine import EngineFitData

    root = make_folder(tmp_path / "d", splits=("train", "val"), n=6)
    data = EngineFitData(backbone=tiny_backbone, train=resolve_records(root / "train", plugins), val=resolve_records(root / "val", plugins),
                   options=ExtractOptions(16, 0, False))
    det = load_detector("univfd", backbone="clip-tiny", plugins=plugins, max_epochs=2, lr=1e-2)
    torch.manual_seed(0)
    summary = det.fit(data, log=lambda m: None)
    assert summary["epochs"] == 2 and 0.0 <= summary["val_acc"] <= 1.0
    path = det.save(str(tmp_path / "u.safetensors"))
    assert set(load_file(path)) == {"fc.weight", "fc.bias"}  # plain tensors, no pickle
    assert b"\x80\x04" not in open(path, "rb").read(64)
    again = load_detector("univfd", weights=path, backbone="clip-tiny", plugins=plugins)
    x = torch.randn(4, 32)
    torch.testing.assert_close(again.score({"image_embed": x}), det.score({"image_embed": x}))
