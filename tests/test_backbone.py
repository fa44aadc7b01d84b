"""The CLIP backbone: named features from one pass, checked against a hand-written forward."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from sidbench.backbones.clip import build_open_clip, build_tiny
from sidbench.api import WeightsError


def manual_features(model, images):
    """Walk open_clip's visual tower by hand (batch-first blocks) and read every feature."""
    v = model.visual
    x = v._embeds(images)
    ln2, blocks = [], []
    for blk in v.transformer.resblocks:
        x = x + blk.ls_1(blk.attention(blk.ln_1(x)))
        h = blk.ln_2(x)
        ln2.append(h[:, 0])
        x = x + blk.ls_2(blk.mlp(h))
        blocks.append(x[:, 0])
    final = v.ln_post(x)[:, 0]
    return {"cls_ln2": torch.stack(ln2, 1), "cls_blocks": torch.stack(blocks, 1), "cls_final": final,
            "image_embed": final @ v.proj}


def test_tiny_features_match_manual_forward(tiny_backbone):
    torch.manual_seed(1)
    images = torch.randn(3, 3, 224, 224)
    names = ("cls_ln2", "cls_blocks", "cls_final", "image_embed")
    got = tiny_backbone.features(images, names)
    with torch.no_grad():
        want = manual_features(tiny_backbone.model, images)
    assert got["cls_ln2"].shape == (3, 4, 64) and got["image_embed"].shape == (3, 32)
    for n in names:
        torch.testing.assert_close(got[n], want[n], rtol=1e-5, atol=1e-5)
    # the CLS token differs per image: a wrong token axis would mix images
    assert not torch.allclose(got["cls_ln2"][0], got["cls_ln2"][1])


def test_only_requested_features_are_returned(tiny_backbone):
    out = tiny_backbone.features(torch.zeros(1, 3, 224, 224), ["cls_final"])
    assert set(out) == {"cls_final"}


def test_tiny_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_tiny()
    after = torch.rand(1)
    b = build_tiny()
    assert torch.equal(before, after)
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert a.identity == b.identity == "clip-tiny:seed0-v1"


def test_text_embed(tiny_backbone):
    emb = tiny_backbone.text_embed(["a real photo.", "a fake photo."])
    assert emb.shape == (2, 32) and not torch.allclose(emb[0], emb[1])


def test_offline_weights_fail_fast_with_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    t = time.time()
    with pytest.raises(WeightsError) as info:
        build_open_clip("ViT-L-14:openai")
    assert time.time() - t < 5
    msg = str(info.value)
    assert "not cached" in msg and "--weights PATH" in msg and "\n" not in msg


def test_offline_weights_cli_error_has_no_traceback(tmp_path, image_folder):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "XDG_CACHE_HOME": str(tmp_path / "x")}
    t = time.time()
    out = subprocess.run([sys.executable, "-m", "sidbench.cli", "run", "--data", str(image_folder), "--detectors",
                          "clip_zeroshot", "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env)
    assert time.time() - t < 30
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("sidbench: error: ViT-L-14:openai weights are not cached")


def test_missing_weights_file_and_unknown_tag():
    with pytest.raises(WeightsError, match="no such file"):
        build_open_clip("ViT-L-14", weights="/nonexistent/w.bin")
    with pytest.raises(WeightsError, match="no pretrained tag 'nope'"):
        build_open_clip("ViT-L-14:nope")


def test_timm_vit_features_match_manual_forward():
    from sidbench.registry import build_backbone, describe_backbone

    name = "timm:vit_small_patch14_dinov2:random"
    info = describe_backbone(name)
    assert (info.n_blocks, info.width, info.embed_dim, info.image_size) == (12, 384, 384, 224)
    bb = build_backbone(name)
    torch.manual_seed(0)
    images = torch.randn(2, 3, 224, 224)
    got = bb.features(images, ("cls_ln2", "cls_blocks", "cls_final", "image_embed"))
    m = bb.model
    with torch.no_grad():
        x = m._pos_embed(m.patch_embed(images))
        x = m.norm_pre(x)
        ln2, outs = [], []
        for blk in m.blocks:
            x = x + blk.ls1(blk.attn(blk.norm1(x)))
            h = blk.norm2(x)
            ln2.append(h[:, 0])
            x = x + blk.ls2(blk.mlp(h))
            outs.append(x[:, 0])
        final = m.norm(x)[:, 0]
    torch.testing.assert_close(got["cls_ln2"], torch.stack(ln2, 1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got["cls_blocks"], torch.stack(outs, 1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got["cls_final"], final, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got["image_embed"], final, rtol=1e-4, atol=1e-4)  # DINOv2: CLS is the embedding
    with pytest.raises(Exception, match="no text tower"):
        bb.text_embed(["x"])


def test_timm_offline_error_is_one_line(monkeypatch, tmp_path):
    from sidbench.backbones.timm_vit import build_timm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsError, match="could not be loaded .HF_HUB_OFFLINE is set"):
        build_timm("timm:vit_small_patch14_dinov2.lvd142m")
