"""DINOv2 (with and without registers), SigLIP and ConvNeXt backbones, and the linear probe on any of them:
named features, one pass per image, protocol and perturbation shared by every head on a backbone (several
backbones in one run), fitted probes saved and reloaded, one-line errors offline."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import REPO, make_folder

PLUGINS = str(REPO / "tests" / "plugins_backbones_more")


def run_cli(*argv: str) -> int:
    from sidbench.cli import main

    return main(["run", "--plugins-dir", PLUGINS, "--no-progress", "--batch-size", "4", *argv])


def test_tiny_backbones_emit_their_named_features(plugins):
    from sidbench.registry.lookup import build_backbone

    expect = {"dinov2-tiny": {"cls_ln2": (2, 32), "cls_blocks": (2, 32), "cls_final": (32,), "image_embed": (32,)},
              "dinov2-reg-tiny": {"cls_final": (32,), "image_embed": (32,)},
              "siglip-tiny": {"pooled": (32,), "image_embed": (32,)},
              "convnext-tiny": {"pooled": (48,), "image_embed": (24,)}}
    for name, shapes in expect.items():
        bb = build_backbone(name, plugins=plugins)
        x = torch.randn(3, 3, bb.info.image_size, bb.info.image_size)
        out = bb.features(x, shapes)
        assert {k: tuple(v.shape[1:]) for k, v in out.items()} == shapes, name
        assert all(bb.info.feature_shape(k) == s for k, s in shapes.items()), name


def test_dinov2_with_registers_reads_the_cls_token_not_a_register(plugins):
    """timm puts the CLS token first and the 4 registers after it: cls_final is token 0 after the final norm."""
    from sidbench.registry.lookup import build_backbone

    bb = build_backbone("dinov2-reg-tiny", plugins=plugins)
    m = bb.model
    assert m.reg_token.shape[1] == 4 and m.num_prefix_tokens == 5
    x = torch.randn(2, 3, 56, 56)
    t = F.conv2d(x, m.patch_embed.proj.weight, m.patch_embed.proj.bias, stride=14).flatten(2).transpose(1, 2)
    t = torch.cat([m.cls_token.expand(2, -1, -1), m.reg_token.expand(2, -1, -1), t + m.pos_embed], dim=1)
    for blk in m.blocks:
        t = blk(t)
    cls = F.layer_norm(t, (32,), m.norm.weight, m.norm.bias, 1e-6)[:, 0]
    assert torch.allclose(bb.features(x, ["cls_final"])["cls_final"], cls, atol=1e-5)


def test_convnext_pooled_is_the_average_then_layernorm_and_the_embedding_its_projection(plugins):
    from sidbench.registry.lookup import build_backbone

    bb = build_backbone("convnext-tiny", plugins=plugins)
    x = torch.randn(2, 3, 64, 64)
    fmap = bb.trunk.forward_features(x)
    pooled = F.layer_norm(fmap.mean(dim=(2, 3)), (48,), bb.trunk.head.norm.weight, bb.trunk.head.norm.bias, 1e-5)
    out = bb.features(x, ["pooled", "image_embed"])
    assert torch.allclose(out["pooled"], pooled, atol=1e-5)
    assert torch.allclose(out["image_embed"], pooled @ bb.head.proj.weight.T, atol=1e-5)


def test_full_size_backbones_are_described_without_weights(plugins):
    from sidbench.registry.lookup import describe_backbone

    got = {n: (i.n_blocks, i.width, i.embed_dim, i.image_size, i.mean[0])
           for n in ("dinov2-l", "dinov2-l-reg", "dinov2-g", "siglip-so400m", "convnext-xxl")
           for i in [describe_backbone(n, plugins)]}
    assert got == {"dinov2-l": (24, 1024, 1024, 224, 0.485), "dinov2-l-reg": (24, 1024, 1024, 224, 0.485),
                   "dinov2-g": (40, 1536, 1536, 224, 0.485), "siglip-so400m": (0, 1152, 1152, 224, 0.5),
                   "convnext-xxl": (0, 3072, 1024, 256, 0.48145466)}


@pytest.mark.parametrize("name", ["convnext-xxl", "siglip-so400m"])
def test_missing_open_clip_weights_offline_are_one_line(plugins, name, monkeypatch, tmp_path):
    from sidbench.api import WeightsError
    from sidbench.registry.lookup import build_backbone

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsError) as err:
        build_backbone(name, plugins=plugins)
    assert "\n" not in str(err.value) and "--weights" in str(err.value)


def test_probes_on_three_backbones_pass_each_image_once_per_protocol_and_perturbation(tmp_path, monkeypatch):
    """Five probes on three backbones (two features each on DINOv2 and ConvNeXt) fitted and scored in one run,
    clean and JPEG-perturbed: every image went through each backbone exactly once per perturbation."""
    import pandas as pd

    log = tmp_path / "encoded.txt"
    monkeypatch.setenv("SIDBENCH_TEST_COUNT_LOG", str(log))
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    train = make_folder(tmp_path / "train", splits=("gan",), n=4, seed=1)  # 8 images
    test = make_folder(tmp_path / "test", splits=("t",), n=2, seed=3)  # 4 images
    dets = ("probe[backbone=count-dinov2],probe[backbone=count-dinov2,feature=cls_final],"
            "probe[backbone=count-convnext],probe[backbone=count-convnext,feature=pooled],probe[backbone=count-siglip]")
    assert run_cli("--detectors", dets, "--data", str(test), "--train", str(train), "--perturb", "jpeg:90",
                   "--out", str(tmp_path / "out")) == 0
    scores = pd.read_csv(tmp_path / "out" / "scores.csv")
    assert scores.detector.nunique() == 5 and len(scores) == 5 * 4 * 2
    encoded = Counter(log.read_text().splitlines())
    assert max(encoded.values()) == 1
    per_backbone = Counter(line.split()[0] for line in encoded)
    assert per_backbone == {"count-dinov2": 8 + 4 * 2, "count-convnext": 8 + 4 * 2, "count-siglip": 8 + 4 * 2}
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert {d["backbone"] for d in run["detectors"]} == {"count-dinov2", "count-convnext", "count-siglip"}


def logistic_regression_logits(x: np.ndarray, y: np.ndarray, C: float) -> np.ndarray:
    """The decision values of min_w,b 0.5 |w|^2 + C sum log(1 + exp(-(2y - 1)(x w + b))), by Newton's method."""
    xb = np.c_[x, np.ones(len(x))]
    reg = np.r_[np.full(x.shape[1], 1.0 / C), 0.0]  # the objective over C; the intercept is not penalised
    theta = np.zeros(xb.shape[1])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(xb @ theta)))
        step = np.linalg.solve(xb.T @ (xb * (p * (1 - p))[:, None]) + np.diag(reg), xb.T @ (p - y) + reg * theta)
        theta -= step
        if np.abs(step).max() < 1e-12:
            break
    return xb @ theta


def test_a_fitted_probe_is_logistic_regression_saved_and_reloaded(tmp_path, plugins):
    """`sidbench train probe[backbone=dinov2-tiny]` then `probe@ckpt` in a run: the head equals scikit-learn's
    logistic regression on the standardised features, and the checkpoint brings its backbone back."""
    import pandas as pd

    from sidbench.cli import main
    from sidbench.registry.lookup import build_backbone, load_detector

    train = make_folder(tmp_path / "train", splits=("gan",), n=6, seed=4)
    ckpt = tmp_path / "probe.safetensors"
    assert main(["train", "probe[backbone=dinov2-tiny,C=0.5]", "--data", str(train), "--out", str(ckpt)]) == 0
    det = load_detector("probe", weights=str(ckpt), plugins=plugins)
    assert det.options["backbone"] == "dinov2-tiny" and det.options["C"] == 0.5
    out = tmp_path / "out"
    assert main(["run", "--detectors", f"probe@{ckpt}", "--data", str(train), "--out", str(out), "--no-progress"]) == 0
    scores = pd.read_csv(out / "scores.csv").sort_values("path")
    # the same features, independently: the backbone on the engine's center crop, and scikit-learn's L2 logistic
    # regression (intercept unpenalised) solved here by Newton's method on the standardised rows
    from PIL import Image
    import torchvision.transforms.functional as TF

    bb = build_backbone("dinov2-tiny", plugins=plugins)
    x = torch.stack([TF.normalize(TF.to_tensor(TF.center_crop(Image.open(p).convert("RGB"), 56)), bb.info.mean, bb.info.std)
                     for p in scores.path])
    f = bb.features(x, ["image_embed"])["image_embed"].double().numpy()
    mean, std = f.mean(0), f.std(0) + 1e-6
    expect = logistic_regression_logits((f - mean) / std, scores.label.to_numpy(), C=0.5)
    assert np.allclose(scores.logit.to_numpy(), expect, atol=0.03)  # the feature cache keeps half precision


def test_probe_feature_errors_are_one_line(plugins):
    from sidbench.api import SidbenchError
    from sidbench.registry.lookup import load_detector

    with pytest.raises(SidbenchError, match="has no feature 'pooled'"):
        load_detector("probe[backbone=dinov2-tiny,feature=pooled]", plugins=plugins)
    with pytest.raises(SidbenchError, match="feature must be one of"):
        load_detector("probe[feature=cls_ln2]", plugins=plugins)
    assert load_detector("probe[backbone=convnext-tiny,feature=pooled]", plugins=plugins).fc.in_features == 48
