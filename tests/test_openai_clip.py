"""OpenAI's CLIP as sidbench builds it equals OpenAI's architecture (QuickGELU), with seeded random weights
served offline through open_clip's own loading path (a Hugging Face hub cache folder), compared with a
forward written from openai/CLIP's model.py (tests/openai_clip.py), not with open_clip."""
from __future__ import annotations

import csv
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from openai_clip import openai_image_features, openai_state_dict, serve_hf_cache, write_hf_cache
from sidbench.api import WeightsError
from sidbench.api.backbone import CLIP_MEAN, CLIP_STD
from sidbench.backbones.clip import resolve_open_clip
from sidbench.backbones.clip_weights import OPENAI_EXTRAS
from sidbench.registry import backbone_identity, build_backbone

NAMES = ("cls_ln2", "cls_blocks", "cls_final", "image_embed")


@pytest.fixture(scope="module")
def b32(tmp_path_factory):
    state = openai_state_dict("ViT-B-32", seed=0)
    return write_hf_cache(tmp_path_factory.mktemp("hf-b32"), "ViT-B-32", state), state


@pytest.fixture(scope="module")
def l14(tmp_path_factory):
    state = openai_state_dict("ViT-L-14", seed=1)
    return write_hf_cache(tmp_path_factory.mktemp("hf-l14"), "ViT-L-14", state), state


def assert_openai_features(backbone, state, n_images: int = 2) -> None:
    """Every feature equals OpenAI's forward to 1e-5 in fp32, and GELU would have been visibly off."""
    x = torch.randn(n_images, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    got = backbone.features(x, NAMES)
    want = openai_image_features(state, x)
    gelu = openai_image_features(state, x, quick_gelu=False)
    for n in NAMES:
        assert got[n].shape == want[n].shape
        assert (got[n] - want[n]).abs().max().item() <= 1e-5, n
        assert (gelu[n] - want[n]).abs().max().item() > 1e-3, n  # the comparison can see the activation


def test_vit_b_32_openai_equals_openai_forward(b32, monkeypatch):
    cache, state = b32
    serve_hf_cache(monkeypatch, cache)
    backbone = build_backbone("ViT-B-32:openai")
    assert backbone.activation == "quick_gelu"
    assert backbone.identity == "ViT-B-32:openai|quick_gelu" == backbone_identity("ViT-B-32:openai")
    assert_openai_features(backbone, state)


@pytest.mark.slow
def test_vit_l_14_openai_equals_openai_forward(l14, monkeypatch):
    cache, state = l14
    serve_hf_cache(monkeypatch, cache)
    backbone = build_backbone("ViT-L-14:openai")
    assert backbone.identity == "ViT-L-14:openai|quick_gelu"
    assert_openai_features(backbone, state, n_images=1)


def test_openai_checkpoint_file_is_recognised_by_its_entries(b32, tmp_path):
    """A bare ``ARCH --weights`` of OpenAI's state dict (with its input_resolution ... entries) runs QuickGELU."""
    _, state = b32
    path = tmp_path / "ViT-B-32-openai.pt"
    torch.save({**state, "input_resolution": torch.tensor(224), "context_length": torch.tensor(77),
                "vocab_size": torch.tensor(49408)}, path)
    plan = resolve_open_clip("ViT-B-32", str(path))
    assert plan.quick_gelu and plan.identity.startswith("ViT-B-32@sha256:") and plan.identity.endswith("|quick_gelu")
    assert_openai_features(build_backbone("ViT-B-32", weights=str(path)), state, n_images=1)


def _keys_only(path, keys, extra=()):
    """A safetensors file with these keys (tiny tensors: only the names are read)."""
    from safetensors.torch import save_file

    save_file({k: torch.zeros(1) for k in (*keys, *extra)}, str(path))
    return str(path)


OPENAI_KEYS = ("visual.class_embedding", "visual.proj", "visual.conv1.weight", "token_embedding.weight",
               "text_projection", "positional_embedding")


def test_bare_arch_with_openai_layout_is_refused_in_one_line(tmp_path):
    path = _keys_only(tmp_path / "w.safetensors", OPENAI_KEYS)
    with pytest.raises(WeightsError) as info:
        resolve_open_clip("ViT-L-14", path)
    msg = str(info.value)
    assert "\n" not in msg and "ViT-L-14:openai" in msg and "ViT-L-14-quickgelu" in msg
    # naming the activation resolves it, either way
    assert resolve_open_clip("ViT-L-14-quickgelu", path).quick_gelu
    assert resolve_open_clip("ViT-L-14:openai", path).quick_gelu
    assert not resolve_open_clip("ViT-L-14:laion2b_s32b_b82k", path).quick_gelu
    # an architecture OpenAI never released: the layout is open_clip's own, GELU as configured
    assert not resolve_open_clip("ViT-H-14", path).quick_gelu


def test_openai_entries_under_a_gelu_tag_are_refused(tmp_path):
    path = _keys_only(tmp_path / "w.safetensors", OPENAI_KEYS, extra=OPENAI_EXTRAS)
    with pytest.raises(WeightsError, match="trained with QuickGELU.*ViT-L-14:openai"):
        resolve_open_clip("ViT-L-14:laion2b_s32b_b82k", path)
    assert resolve_open_clip("ViT-L-14", path).quick_gelu  # recognised as OpenAI's


def test_torchscript_archive_is_refused_with_a_conversion(tmp_path):
    path = tmp_path / "ViT-L-14.pt"
    with zipfile.ZipFile(path, "w") as zf:  # the entries of a TorchScript archive (torch.jit.save)
        for name in ("ViT-L-14/data.pkl", "ViT-L-14/code/__torch__/model.py", "ViT-L-14/constants.pkl"):
            zf.writestr(name, b"")
    for name in ("ViT-L-14", "ViT-L-14:openai"):
        with pytest.raises(WeightsError) as info:
            resolve_open_clip(name, str(path))
        assert "TorchScript" in str(info.value) and "torch.jit.load" in str(info.value) and "\n" not in str(info.value)


def test_activation_is_part_of_the_identity_and_of_run_json(tmp_path, plugins):
    from sidbench.engine.sources import BackboneSource

    path = _keys_only(tmp_path / "w.safetensors", OPENAI_KEYS)
    quick, gelu = (backbone_identity(n, path) for n in ("ViT-L-14:openai", "ViT-L-14:laion2b_s32b_b82k"))
    assert quick.endswith("|quick_gelu") and gelu.endswith("|gelu") and quick != gelu
    assert backbone_identity("ViT-L-14:commonpool_xl_s13b_b90k") == "ViT-L-14:commonpool_xl_s13b_b90k|gelu"
    source = BackboneSource("ViT-L-14:openai", plugins)  # lazy: nothing is loaded to describe it
    info = source.describe()
    assert info["activation"] == "quick_gelu" and info["identity"] == "ViT-L-14:openai|quick_gelu"
    assert not info["loaded"]


# -- the published heads on sidbench's OpenAI features ---------------------------------------------
def center_crop_tensor(path) -> torch.Tensor:
    """torchvision's CenterCrop(224) + ToTensor + CLIP Normalize, written out (images are >= 224 here)."""
    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    h, w = arr.shape[:2]
    top, left = int(round((h - 224) / 2.0)), int(round((w - 224) / 2.0))
    arr = (arr[top:top + 224, left:left + 224] - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1)


def rine_head(sd: dict, tokens: torch.Tensor) -> torch.Tensor:
    """RINE's trainable part from its official state dict: Linear+ReLU stacks proj1 (per block), TIE softmax
    over blocks, proj2, then the 3-layer head (dropout is the identity in eval)."""
    def stack(prefix: str, x: torch.Tensor) -> torch.Tensor:
        idx = sorted(int(k.split(".")[1]) for k in sd if k.startswith(prefix + ".") and k.endswith(".weight"))
        for i in idx:
            x = torch.relu(x @ sd[f"{prefix}.{i}.weight"].T + sd[f"{prefix}.{i}.bias"])
        return x

    z = (torch.softmax(sd["alpha"], dim=1) * stack("proj1", tokens)).sum(1)
    z = stack("proj2", z)
    z = torch.relu(z @ sd["head.0.weight"].T + sd["head.0.bias"])
    z = torch.relu(z @ sd["head.3.weight"].T + sd["head.3.bias"])
    return (z @ sd["head.6.weight"].T + sd["head.6.bias"]).squeeze(-1)


@pytest.mark.slow
def test_run_with_official_heads_gives_the_openai_logits(l14, monkeypatch, tmp_path, reference_dir):
    from conftest import write_image
    from sidbench.cli import main

    cache, state = l14
    serve_hf_cache(monkeypatch, cache)
    data = tmp_path / "data" / "demo"
    for sub, name in (("0_real", "aadlygmazf.jpg"), ("1_fake", "zzrybysskm.png")):
        (data / sub).mkdir(parents=True)
        (data / sub / name).write_bytes((reference_dir / name).read_bytes())
    write_image(data / "1_fake" / "odd.png", np.random.default_rng(0), size=(241, 263), fake=True)
    univfd, rine = reference_dir / "univfd_fc_weights.pth", reference_dir / "rine_2class_trainable.pth"
    out = tmp_path / "out"
    code = main(["run", "--data", str(data.parent), "--detectors", f"univfd@{univfd},rine.progan2@{rine}",
                 "--backbone", "ViT-L-14:openai", "--device", "cpu", "--batch-size", "4", "--out", str(out),
                 "--no-progress", "--no-cache"])
    assert code == 0
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == 6
    heads = {"univfd.progan": torch.load(univfd, map_location="cpu", weights_only=True),
             "rine.progan2": torch.load(rine, map_location="cpu", weights_only=True)}
    paths = sorted({r["path"] for r in rows})
    feats = openai_image_features(state, torch.stack([center_crop_tensor(p) for p in paths]))
    want = {"univfd.progan": (feats["image_embed"] @ heads["univfd.progan"]["weight"].T
                             + heads["univfd.progan"]["bias"]).squeeze(-1),
            "rine.progan2": rine_head(heads["rine.progan2"], feats["cls_ln2"])}
    dev = {r["detector"]: 0.0 for r in rows}
    for r in rows:
        dev[r["detector"]] = max(dev[r["detector"]], abs(float(r["logit"]) - want[r["detector"]][paths.index(r["path"])].item()))
    print("max |logit - OpenAI forward|:", dev)
    assert max(dev.values()) <= 2e-3, dev
