"""The published checkpoints as distributed (issue 20): NPR pinned to a commit with its blob ids, Corvi 2023's
checksummed single file and its zip member, GRIP's clipdet_latent10k_plus loading into clip_svm, and NPR's
GenImage SD v1.4 variant with its test view (compared with an independent computation)."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from sidbench.api import ImageInput, WeightsError
from sidbench.registry import load_detector

HEX40, HEX64 = re.compile(r"^[0-9a-f]{40}$"), re.compile(r"^[0-9a-f]{64}$")


def test_npr_files_are_pinned_to_a_commit_with_their_blob_ids(plugins):
    for name, blob in (("npr.progan4", "2430d34a6d6a1143d46d4276a05536770b1a2a97"),
                       ("npr.aigcbench", "f3efe21a3cb98da75b50451c3891ad0d2fa9fb2b")):
        ow = plugins.detector(name).official_weights
        assert HEX40.match(ow.revision) and f"/{ow.revision}/" in ow.url and "/main/" not in ow.url
        assert ow.git_blob == blob and ow.url.endswith("/" + ow.filename)


def test_corvi2023_ldm_is_grips_checksummed_file_and_progan_a_zip_member(plugins):
    ldm = plugins.detector("corvi2023.ldm").official_weights
    assert HEX64.match(ldm.sha256) and HEX40.match(ldm.revision) and ldm.revision in ldm.url
    assert ldm.url.startswith("https://media.githubusercontent.com/media/grip-unina/ClipBased-SyntheticImageDetection/")
    progan = plugins.detector("corvi2023.progan").official_weights
    assert progan.member == "Grag2021_progan/model_epoch_best.pth" and "drive.google.com" in progan.url
    assert progan.sha256 is None and progan.md5 is None  # none published: the content is checked instead


def test_clip_svm_official_is_grips_linear_detector(plugins):
    ow = plugins.detector("clip_svm").official_weights
    assert ow.sha256 == "1c9c9f48a47d975bde67e9924983aa4e4ccda96a15e7e983b6305f0c56d9ee18"
    assert ow.url.endswith("/weights/clipdet_latent10k_plus/weights.pth") and ow.revision in ow.url
    assert plugins.detector("clip_svm").backbone == "ViT-L-14:commonpool_xl_s13b_b90k"


@pytest.mark.parametrize("prefix", ["", "module."])
def test_grips_clipdet_file_loads_into_clip_svm(plugins, tmp_path, prefix):
    """The official format ({'model': {fc.weight, fc.bias}}) with random weights: the score is GRIP's
    OpenClipLinear head, written here from its code: fc(normalize(pre-projection CLS))."""
    g = torch.Generator().manual_seed(11)
    width = 64  # clip-tiny's width (the real file: 1024, ViT-L/14)
    w, b = torch.randn(1, width, generator=g) * 0.02, torch.randn(1, generator=g)
    path = tmp_path / "weights.pth"
    torch.save({"model": {f"{prefix}fc.weight": w, f"{prefix}fc.bias": b}}, path)
    det = load_detector(f"clip_svm@{path}", backbone="clip-tiny", plugins=plugins)
    x = torch.randn(7, width, generator=g) * 3
    expected = (x / x.norm(dim=1, keepdim=True)) @ w[0] + b[0]
    torch.testing.assert_close(det.score({"cls_final": x}), expected, rtol=1e-5, atol=1e-5)


def test_a_foreign_file_is_refused_by_clip_svm_in_one_line(plugins, tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"model": {"head.weight": torch.zeros(1, 64)}}, path)
    with pytest.raises(WeightsError, match="expected GRIP's linear detector"):
        load_detector(f"clip_svm@{path}", backbone="clip-tiny", plugins=plugins)


def test_npr_genimage_variant_is_declared(plugins):
    spec = plugins.detector("npr.genimage_sdv14")
    assert spec.preprocess == "tile_center_crop" and "drive.google.com/drive/folders/" in spec.official_weights.url
    assert spec.training_data == ("stable_diffusion_v_1_4",)


def _reference_tile_crop(img: Image.Image, size: int) -> torch.Tensor:
    """NPR's README "translate and duplicate" + torchvision CenterCrop + ImageNet normalisation, in numpy."""
    a = np.asarray(img).astype(np.float32) / 255.0
    h, w = a.shape[:2]
    if min(h, w) < size:
        a = np.tile(a, (-(-size // h), -(-size // w), 1))
        h, w = a.shape[:2]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    a = a[top:top + size, left:left + size]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return torch.from_numpy(((a - mean) / std).transpose(2, 0, 1).astype(np.float32))


@pytest.mark.parametrize("size", [(100, 150), (300, 130), (301, 257), (224, 224)])
def test_genimage_test_view_matches_the_readme(plugins, size):
    from sidbench.detectors.npr import TileCenterCrop

    spec = plugins.detector("npr.genimage_sdv14")
    rng = np.random.default_rng(sum(size))
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    got = TileCenterCrop(spec.pixels)(ImageInput(img, None, "x.png"))
    torch.testing.assert_close(got, _reference_tile_crop(img, 224), rtol=0, atol=1e-5)


def test_npr_genimage_scores_through_its_protocol(plugins, tmp_path):
    """A checkpoint in NPR's format (a bare state dict) scores a small image through the tiled view."""
    from sidbench.detectors.npr import build_network, forward

    torch.manual_seed(0)
    net = build_network().eval()
    path = tmp_path / "model_genimage_sdv14.pth"
    torch.save(net.state_dict(), path)
    det = load_detector(f"npr.genimage_sdv14@{path}", plugins=plugins)
    assert det.preprocess == "tile_center_crop" and det.pixel_input.image_size == 224
    x = _reference_tile_crop(Image.new("RGB", (90, 60), (10, 200, 30)), 224)[None]
    with torch.no_grad():
        torch.testing.assert_close(det.score({"pixels": x}), forward(net, x))
