"""Tip-Adapter / -F: the paper's formula on a hand-made cache, the reference grid, zero-shot = alpha 0,
Tip-Adapter-F at epoch 0 = Tip-Adapter, cache keys = normalised mean of views, pickle-free round trips."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import make_folder

E = 32  # clip-tiny embed dim


def bound(plugins, name, tiny_backbone, **options):
    from sidbench.registry import load_detector

    det = load_detector(name, backbone="clip-tiny", plugins=plugins, **options)
    det.bind(tiny_backbone)
    return det


def test_logits_follow_the_formula(plugins, tiny_backbone):
    g = torch.Generator().manual_seed(0)
    det = bound(plugins, "tip_adapter", tiny_backbone)
    keys = F.normalize(torch.randn(4, E, generator=g), dim=-1)
    values = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]])
    det._cache.keys, det._cache.values, det.alpha, det.beta = keys, values, 2.5, 5.5
    x = torch.randn(3, E, generator=g)
    got = det.score({"image_embed": x})

    W, K, L = det._text.weights.double().numpy(), keys.double().numpy(), values.double().numpy()
    f = x.double().numpy()
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    expected = []
    for fi in f:
        logit = [100 * fi @ W[c] + 2.5 * sum(np.exp(-5.5 * (1 - fi @ K[k])) * L[k, c] for k in range(4)) for c in (0, 1)]
        expected.append(logit[1] - logit[0])
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-5, atol=1e-4)


def test_grid_is_the_reference_grid():
    from sidbench.detectors.tip_adapter import search_grid

    betas, alphas = search_grid((7, 3), (200, 20))
    assert len(betas) == 200 and len(alphas) == 20
    np.testing.assert_allclose(betas, 0.1 + np.arange(200) * 6.9 / 200)
    np.testing.assert_allclose(alphas, 0.1 + np.arange(20) * 2.9 / 20)
    assert betas[-1] < 7 and alphas[-1] < 3


def test_search_finds_the_best_grid_point():
    from sidbench.detectors.tip_adapter import search_hp

    g = torch.Generator().manual_seed(1)
    f = F.normalize(torch.randn(40, E, generator=g), dim=-1)
    y = (torch.rand(40, generator=g) > 0.5).long()
    W = F.normalize(torch.randn(2, E, generator=g), dim=-1) * 0.01
    K = F.normalize(f[:10] + 0.3 * torch.randn(10, E, generator=g), dim=-1)
    L = F.one_hot(y[:10], 2).float()
    alpha, beta, acc = search_hp(f, y, W, f @ K.t(), L, (7, 3), (20, 5))
    best = -1.0
    for b in [i * 6.9 / 20 + 0.1 for i in range(20)]:
        for a in [i * 2.9 / 5 + 0.1 for i in range(5)]:
            logits = 100 * f @ W.t() + a * torch.exp(-b * (1 - f @ K.t())) @ L
            best = max(best, float((logits.argmax(1) == y).float().mean()))
    assert acc == pytest.approx(best)
    logits = 100 * f @ W.t() + alpha * torch.exp(-beta * (1 - f @ K.t())) @ L
    assert float((logits.argmax(1) == y).float().mean()) == pytest.approx(best)


def test_zero_shot_is_alpha_zero(plugins, tiny_backbone):
    zs = bound(plugins, "clip_zeroshot", tiny_backbone)
    tip = bound(plugins, "tip_adapter", tiny_backbone)
    tip._cache.keys = F.normalize(torch.randn(6, E), dim=-1)
    tip._cache.values = F.one_hot(torch.tensor([0, 1, 0, 1, 0, 1]), 2).float()
    tip.alpha = 0.0
    x = torch.randn(5, E)
    torch.testing.assert_close(tip.score({"image_embed": x}), zs.score({"image_embed": x}))
    tip.alpha = 1.0
    assert not torch.allclose(tip.score({"image_embed": x}), zs.score({"image_embed": x}))


@pytest.fixture
def fit_data(tmp_path, plugins, tiny_backbone):
    from sidbench.data.layout import resolve_records
    from sidbench.engine import ExtractOptions
    from sidbench.engine import EngineFitData

    root = make_folder(tmp_path / "d", splits=("train", "val"), n=5)
    return EngineFitData(backbone=tiny_backbone, train=resolve_records(root / "train", plugins), val=resolve_records(root / "val", plugins),
                   protocol="resize_center_crop", options=ExtractOptions(16, 0, False))


def test_cache_keys_and_epoch0_of_tip_adapter_f(plugins, fit_data, tmp_path):
    from safetensors.torch import load_file

    from sidbench.registry import load_detector
    from sidbench.detectors.tip_adapter import TipAugment

    opts = dict(shots=3, augment_views=2, search_step=[20, 5])
    tip = load_detector("tip_adapter", backbone="clip-tiny", plugins=plugins, **opts)
    tip.fit(fit_data, log=lambda m: None)
    # keys: mean of the raw image_embed over the two augmented views of the 3+3 shots, then normalised
    shots = tip.shot_data(fit_data)
    views = [shots.features("train", ("image_embed",), augment=TipAugment(224), view=v) for v in (0, 1)]
    assert len(views[0]) == 6
    expected = F.normalize((views[0].features["image_embed"] + views[1].features["image_embed"]) / 2, dim=-1)
    torch.testing.assert_close(tip._cache.keys, expected)
    torch.testing.assert_close(tip._cache.values, F.one_hot(views[0].labels.long(), 2).float())

    tip_f = load_detector("tip_adapter_f", backbone="clip-tiny", plugins=plugins, epochs=0, **opts)
    tip_f.fit(fit_data, log=lambda m: None)
    x = torch.randn(7, E)
    assert (tip_f.alpha, tip_f.beta) == (tip.alpha, tip.beta)
    torch.testing.assert_close(tip_f.score({"image_embed": x}), tip.score({"image_embed": x}))

    path = tip.save(str(tmp_path / "tip.safetensors"))
    assert set(load_file(path)) == {"text.weights", "cache.keys", "cache.values"}
    again = load_detector("tip_adapter", weights=path, backbone="clip-tiny", plugins=plugins)
    again.bind(fit_data.backbone)
    assert (again.alpha, again.beta) == (tip.alpha, tip.beta)
    torch.testing.assert_close(again.score({"image_embed": x}), tip.score({"image_embed": x}))


def test_tip_adapter_f_trains_keys_and_round_trips(plugins, fit_data, tmp_path):
    from safetensors.torch import load_file

    from sidbench.registry import load_detector

    det = load_detector("tip_adapter_f", backbone="clip-tiny", plugins=plugins, shots=3, augment_views=1, epochs=3,
                        lr=0.1, search_step=[10, 4])
    summary = det.fit(fit_data, log=lambda m: None)
    assert 1 <= summary["epoch"] <= 3
    assert not torch.allclose(det._adapter.weight, det._cache.keys)  # the keys moved
    path = det.save(str(tmp_path / "f.safetensors"))
    assert set(load_file(path)) == {"text.weights", "cache.keys", "cache.values", "adapter.weight"}
    again = load_detector("tip_adapter_f", weights=path, backbone="clip-tiny", plugins=plugins)
    again.bind(fit_data.backbone)
    x = torch.randn(4, E)
    torch.testing.assert_close(again.score({"image_embed": x}), det.score({"image_embed": x}))


def test_no_validation_keeps_initial_alpha_beta(plugins, tiny_backbone, tmp_path):
    from sidbench.data.layout import resolve_records
    from sidbench.registry import load_detector
    from sidbench.engine import ExtractOptions
    from sidbench.engine import EngineFitData

    root = make_folder(tmp_path / "d", splits=("train",), n=3)
    data = EngineFitData(backbone=tiny_backbone, train=resolve_records(root / "train", plugins), protocol="resize_center_crop",
                   options=ExtractOptions(16, 0, False))
    lines = []
    det = load_detector("tip_adapter", backbone="clip-tiny", plugins=plugins, augment_views=1, init_alpha=2.0)
    det.fit(data, log=lines.append)
    assert (det.alpha, det.beta) == (2.0, 1.0)
    assert any("no validation split" in m for m in lines)


@pytest.mark.parametrize("size", [(1000, 100), (100, 1000), (517, 97), (97, 517)])
def test_random_resized_crop_fallback_is_torchvisions(size):
    """When 10 draws fail (very wide or tall images), the crop is torchvision's centred fallback."""
    from PIL import Image
    from torchvision.transforms import RandomResizedCrop

    from sidbench.detectors.tip_adapter import TipAugment

    w, h = size
    torch.manual_seed(0)
    i, j, hh, ww = RandomResizedCrop.get_params(Image.new("RGB", size), scale=[0.5, 1.0], ratio=[3 / 4, 4 / 3])
    assert TipAugment(224)._box(w, h, np.random.default_rng(0)) == (j, i, j + ww, i + hh)
