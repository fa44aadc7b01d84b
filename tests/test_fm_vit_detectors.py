"""B-Free, DDA and Community Forensics against their official architectures and test scripts.

Each test writes a checkpoint in the official file format (seeded random weights under the official key names,
prefixes and wrapping: B-Free's ``{'model': sd}`` in timm names, DDA's training dump with LoRA-wrapped torch.hub
DINOv2 names, Community Forensics' ``model.safetensors`` under ``vit.``), loads it through sidbench and compares
the logits with a forward written here from the official code (``Wrapper5crops``, ``DINOv2ModelWithLoRA`` with
unmerged LoRA, ``ViTClassifier``) in plain ``torch.nn.functional`` calls on the state dict, on the official test
transforms (torchvision, as the official scripts run them). Tiny widths and depths by default; full sizes are slow.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}
TINY_NAME = "[embed_dim=32,depth=2,num_heads=2]"


# -- official key names and shapes ---------------------------------------------------------------------------
def block_shapes(p: str, d: int, layerscale: bool, lora_rank: int | None = None) -> dict[str, tuple]:
    """One ViT block (timm and DINOv2 share these names); DDA's LoRALinear wraps the four linears."""
    out = {f"{p}norm1.weight": (d,), f"{p}norm1.bias": (d,), f"{p}norm2.weight": (d,), f"{p}norm2.bias": (d,)}
    for name, o, i in (("attn.qkv", 3 * d, d), ("attn.proj", d, d), ("mlp.fc1", 4 * d, d), ("mlp.fc2", d, 4 * d)):
        if lora_rank is None:
            out.update({f"{p}{name}.weight": (o, i), f"{p}{name}.bias": (o,)})
        else:
            out.update({f"{p}{name}.original_layer.weight": (o, i), f"{p}{name}.original_layer.bias": (o,),
                        f"{p}{name}.lora.lora_A": (lora_rank, i), f"{p}{name}.lora.lora_B": (o, lora_rank)})
    if layerscale:
        out.update({f"{p}ls1.gamma": (d,), f"{p}ls2.gamma": (d,)})
    return out


def bfree_shapes(embed_dim=768, depth=12, **_) -> dict[str, tuple]:
    """timm ``vit_base_patch14_reg4_dinov2`` set to 504 px with one output (the file inside BFREE_dino2reg4.zip)."""
    d = embed_dim
    out = {"cls_token": (1, 1, d), "reg_token": (1, 4, d), "pos_embed": (1, 36 * 36, d),
           "patch_embed.proj.weight": (d, 3, 14, 14), "patch_embed.proj.bias": (d,)}
    for i in range(depth):
        out.update(block_shapes(f"blocks.{i}.", d, layerscale=True))
    return out | {"norm.weight": (d,), "norm.bias": (d,), "head.weight": (1, d), "head.bias": (1,)}


def dda_shapes(embed_dim=1024, depth=24, **_) -> dict[str, tuple]:
    """``DINOv2ModelWithLoRA('dinov2_vitl14', lora_rank=8).state_dict()``: hub names under base_model.model."""
    d, p = embed_dim, "base_model.model."
    out = {f"{p}cls_token": (1, 1, d), f"{p}pos_embed": (1, 37 * 37 + 1, d), f"{p}mask_token": (1, d),
           f"{p}patch_embed.proj.weight": (d, 3, 14, 14), f"{p}patch_embed.proj.bias": (d,)}
    for i in range(depth):
        out.update(block_shapes(f"{p}blocks.{i}.", d, layerscale=True, lora_rank=8))
    return out | {f"{p}norm.weight": (d,), f"{p}norm.bias": (d,), "base_model.fc.weight": (1, d), "base_model.fc.bias": (1,)}


def commfor_shapes(size=384, embed_dim=384, depth=12, **_) -> dict[str, tuple]:
    """``ViTClassifier`` (timm ``vit_small_patch16_<size>`` as ``vit``, head Linear(384, 1)) as the hub mixin saves it."""
    d, g = embed_dim, size // 16
    out = {"vit.cls_token": (1, 1, d), "vit.pos_embed": (1, g * g + 1, d), "vit.patch_embed.proj.weight": (d, 3, 16, 16),
           "vit.patch_embed.proj.bias": (d,)}
    for i in range(depth):
        out.update(block_shapes(f"vit.blocks.{i}.", d, layerscale=False))
    return out | {"vit.norm.weight": (d,), "vit.norm.bias": (d,), "vit.head.weight": (1, d), "vit.head.bias": (1,)}


def random_state(shapes: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    """Seeded weights with scales that keep a random ViT's logits O(1) and every input position relevant."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in shapes.items():
        if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k.endswith("norm.weight"):
            out[k] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif k.endswith(".gamma"):
            out[k] = 0.5 + 0.1 * torch.randn(shape, generator=g)
        elif k.endswith("lora_B"):
            out[k] = torch.randn(shape, generator=g) * 0.5
        elif len(shape) >= 2 and not k.endswith(("_token", "pos_embed")):
            out[k] = torch.randn(shape, generator=g) / math.sqrt(int(np.prod(shape[1:])))
        else:
            out[k] = 0.3 * torch.randn(shape, generator=g)
    return out


# -- the official forwards, in plain torch --------------------------------------------------------------------
def linear(sd, name, x, lora_scale=1.0 / 8):
    """nn.Linear, or DDA's LoRALinear: original_layer(x) + (x A^T) B^T * alpha / rank (alpha 1, rank 8)."""
    if f"{name}.weight" in sd:
        return F.linear(x, sd[f"{name}.weight"], sd[f"{name}.bias"])
    base = F.linear(x, sd[f"{name}.original_layer.weight"], sd[f"{name}.original_layer.bias"])
    low = torch.einsum("...d,rd->...r", x, sd[f"{name}.lora.lora_A"])
    return base + torch.einsum("...r,or->...o", low, sd[f"{name}.lora.lora_B"]) * lora_scale


def block(sd, p, x, heads):
    """Pre-norm ViT block (eps 1e-6, exact GELU); LayerScale when the block has ls1/ls2."""
    b, n, d = x.shape
    h = F.layer_norm(x, (d,), sd[f"{p}norm1.weight"], sd[f"{p}norm1.bias"], eps=1e-6)
    q, k, v = linear(sd, f"{p}attn.qkv", h).reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    attn = ((q * (d // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
    h = linear(sd, f"{p}attn.proj", (attn @ v).transpose(1, 2).reshape(b, n, d))
    x = x + (h * sd[f"{p}ls1.gamma"] if f"{p}ls1.gamma" in sd else h)
    h = F.layer_norm(x, (d,), sd[f"{p}norm2.weight"], sd[f"{p}norm2.bias"], eps=1e-6)
    h = linear(sd, f"{p}mlp.fc2", F.gelu(linear(sd, f"{p}mlp.fc1", h)))
    return x + (h * sd[f"{p}ls2.gamma"] if f"{p}ls2.gamma" in sd else h)


def encoder(sd, p, tokens, heads):
    depth = len({k[len(p):].split(".")[1] for k in sd if k.startswith(f"{p}blocks.")})
    for i in range(depth):
        tokens = block(sd, f"{p}blocks.{i}.", tokens, heads)
    return F.layer_norm(tokens, tokens.shape[-1:], sd[f"{p}norm.weight"], sd[f"{p}norm.bias"], eps=1e-6)


def bfree_reference(sd, img: Image.Image, heads: int) -> float:
    """main_bfree.py + Wrapper5crops: the whole image embedded, token grid tiled under 36, five 36x36 crops
    (centre, top-left, bottom-left, bottom-right, top-right) through the ViT, mean of the raw logits."""
    x = transforms.Compose([transforms.ToTensor(), transforms.Normalize(*IMAGENET)])(img)[None]
    emb = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=14)
    g = 36
    if emb.shape[-2] < g or emb.shape[-1] < g:
        reps = (max(math.ceil(g / emb.shape[-2]), 1), max(math.ceil(g / emb.shape[-1]), 1))
        emb = emb.repeat(1, 1, *reps)[..., :g, :g]
    hs, ws = max((emb.shape[-2] - g) // 2, 0), max((emb.shape[-1] - g) // 2, 0)
    crops = torch.cat((emb[:, :, hs:hs + g, ws:ws + g], emb[:, :, :g, :g], emb[:, :, -g:, :g], emb[:, :, -g:, -g:],
                       emb[:, :, :g, -g:]))
    t = crops.flatten(2).transpose(1, 2) + sd["pos_embed"]  # no_embed_class: patches only, then the prefix tokens
    t = torch.cat((sd["cls_token"].expand(5, -1, -1), sd["reg_token"].expand(5, -1, -1), t), dim=1)
    t = encoder(sd, "", t, heads)
    return float(F.linear(t[:, 0], sd["head.weight"], sd["head.bias"]).mean())


def dda_reference(sd, img: Image.Image, heads: int) -> float:
    """inference.py: CenterCrop(336) (zero padding), CLIP normalisation; hub DINOv2 with DINOv2's position
    interpolation (bicubic, scale (24 + 0.1) / 37, no antialias) and unmerged LoRA; fc on the class token."""
    x = transforms.Compose([transforms.CenterCrop(336), transforms.ToTensor(), transforms.Normalize(*CLIP)])(img)[None]
    p = "base_model.model."
    t = F.conv2d(x, sd[f"{p}patch_embed.proj.weight"], sd[f"{p}patch_embed.proj.bias"], stride=14).flatten(2).transpose(1, 2)
    t = torch.cat((sd[f"{p}cls_token"], t), dim=1)
    pos, d = sd[f"{p}pos_embed"], t.shape[-1]
    grid = pos[:, 1:].reshape(1, 37, 37, d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((24 + 0.1) / 37, (24 + 0.1) / 37), mode="bicubic", antialias=False)
    t = t + torch.cat((pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 24 * 24, d)), dim=1)
    t = encoder(sd, p, t, heads)
    return float(F.linear(t[:, 0], sd["base_model.fc.weight"], sd["base_model.fc.bias"])[0, 0])


def commfor_reference(sd, img: Image.Image, heads: int, size: int = 384) -> float:
    """dataloader.get_transform(mode='test'): Resize(440) (256), CenterCrop(384) (224), ImageNet normalisation;
    timm ViT-S/16: class token, absolute position embedding, blocks, norm, head on the class token."""
    resize = {384: 440, 224: 256}[size]
    x = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(size), transforms.ToTensor(),
                            transforms.Normalize(*IMAGENET)])(img)[None]
    t = F.conv2d(x, sd["vit.patch_embed.proj.weight"], sd["vit.patch_embed.proj.bias"], stride=16).flatten(2).transpose(1, 2)
    t = torch.cat((sd["vit.cls_token"], t), dim=1) + sd["vit.pos_embed"]
    t = encoder(sd, "vit.", t, heads)
    return float(F.linear(t[:, 0], sd["vit.head.weight"], sd["vit.head.bias"])[0, 0])


# -- files and images ----------------------------------------------------------------------------------------
def write_bfree(path: Path, sd) -> Path:
    torch.save({"model": sd}, path)  # networks.load_weights reads dat['model']
    return path


def write_dda(path: Path, sd) -> Path:
    """What DDA's BaseModel.save_networks writes: model, an optimizer state, total_steps."""
    lora = [torch.nn.Parameter(v.clone()) for k, v in sd.items() if "lora_" in k][:2]
    opt = torch.optim.Adam(lora, lr=1e-4)
    sum(p.sum() for p in lora).backward()
    opt.step()
    torch.save({"model": sd, "optimizer": opt.state_dict(), "total_steps": 1200}, path)
    return path


def write_commfor(path: Path, sd) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata={"format": "pt"})
    return path


def image(seed: int, w: int, h: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(0, 256, (h // 7 + 1, w // 7 + 1, 3)), np.ones((7, 7, 1)))[:h, :w]
    noisy = base + rng.normal(0, 20, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_rotated_jpeg(path: Path, seed: int, w: int = 90, h: int = 60) -> Path:
    """A JPEG whose EXIF orientation (6: rotate 90 degrees) plain PIL ignores and sidbench's reader applies."""
    exif = Image.Exif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    image(seed, w, h).save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


def detector_logit(det, img: Image.Image) -> float:
    """The engine's path for one image: the detector's protocol, its network on every view, the views' mean."""
    from sidbench.api import ImageInput
    from sidbench.data.preprocess import make_preprocess

    pre = make_preprocess(det.preprocess, det.pixel_input)
    x = pre(ImageInput(img, None, "x.png") if getattr(pre, "wants_input", False) else img)
    x = x if x.dim() == 4 else x[None]
    with torch.no_grad():
        return float(det.score({"pixels": x}).mean())


def load(name: str, path: Path, plugins, options=TINY):
    from sidbench.registry import load_detector

    return load_detector(name, weights=str(path), plugins=plugins, **options)


# sizes (width, height): under the crop, non-square and odd, exactly one crop of patches, over 504 px
BFREE_SIZES = ((90, 100), (717, 301), (517, 101), (603, 530), (1001, 645))
DDA_SIZES = ((120, 90), (337, 401), (500, 333), (335, 900))
COMMFOR_SIZES = ((90, 120), (601, 389), (384, 384), (257, 1001))


# -- the tests -----------------------------------------------------------------------------------------------
def test_bfree_official_file_gives_the_wrapper_logits(tmp_path, plugins):
    assert len(bfree_shapes()) == 177  # the released model_epoch_best.pth's tensor count
    sd = random_state(bfree_shapes(**TINY), seed=1)
    det = load("bfree", write_bfree(tmp_path / "model_epoch_best.pth", sd), plugins)
    for i, (w, h) in enumerate(BFREE_SIZES):
        img = image(i, w, h)
        assert detector_logit(det, img) == pytest.approx(bfree_reference(sd, img, 2), abs=1e-4), (w, h)


def test_bfree_crops_are_the_token_grid_crops(plugins):
    """The five views are the pixels of the five token crops: the patch grid of a 603x530 image is 43x37, so
    the centre crop starts at token (0, 3) and the corners at rows 0/1 and columns 0/7."""
    from sidbench.api import ImageInput
    from sidbench.detectors.bfree import FiveTokenCrops

    info = plugins.detector("bfree").pixels
    img = image(3, 603, 530)
    views = FiveTokenCrops(info)(ImageInput(img, None, "x.png"))
    full = transforms.Compose([transforms.ToTensor(), transforms.Normalize(*IMAGENET)])(img)
    assert views.shape == (5, 3, 504, 504)
    for v, (r, c) in zip(views, ((0, 3), (0, 0), (1, 0), (1, 7), (0, 7))):
        torch.testing.assert_close(v, full[:, 14 * r:14 * r + 504, 14 * c:14 * c + 504])


def test_bfree_skips_an_image_under_one_patch(plugins):
    from sidbench.api import ImageInput
    from sidbench.data.images import UnreadableImage
    from sidbench.detectors.bfree import FiveTokenCrops

    with pytest.raises(UnreadableImage, match="14x14 patch"):
        FiveTokenCrops(plugins.detector("bfree").pixels)(ImageInput(image(0, 13, 40), None, "x.png"))


def test_dda_official_file_gives_the_unmerged_lora_logits(tmp_path, plugins):
    sd = random_state(dda_shapes(**TINY), seed=2)
    det = load("dda", write_dda(tmp_path / "DDA_ckpt.pth", sd), plugins)
    for i, (w, h) in enumerate(DDA_SIZES):
        img = image(10 + i, w, h)
        assert detector_logit(det, img) == pytest.approx(dda_reference(sd, img, 2), abs=1e-4), (w, h)


def test_dda_position_embedding_is_resized_the_dinov2_way_not_timms():
    """DINOv2's scale-factor bicubic without antialias, not timm's exact-size antialiased resample."""
    from timm.layers import resample_abs_pos_embed

    from sidbench.nets.dinov2 import DinoV2Config, DinoVisionTransformer

    net = DinoVisionTransformer(DinoV2Config(embed_dim=8, depth=0, num_heads=2))
    with torch.no_grad():
        net.pos_embed.copy_(torch.randn(net.pos_embed.shape, generator=torch.Generator().manual_seed(0)))
    got = net.interpolate_pos_encoding(24 * 24 + 1, 336, 336)
    grid = net.pos_embed[:, 1:].reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, scale_factor=(24.1 / 37, 24.1 / 37), mode="bicubic", antialias=False)
    torch.testing.assert_close(got[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, 576, 8))
    torch.testing.assert_close(got[:, :1], net.pos_embed[:, :1])
    timm_way = resample_abs_pos_embed(net.pos_embed.detach(), (24, 24), num_prefix_tokens=1)
    assert (timm_way - got).abs().max() > 1e-3


def test_lora_merge_equals_the_unmerged_layer():
    from sidbench.nets.lora import merge_lora

    g = torch.Generator().manual_seed(4)
    sd = {"l.original_layer.weight": torch.randn(12, 10, generator=g), "l.original_layer.bias": torch.randn(12, generator=g),
          "l.lora.lora_A": torch.randn(8, 10, generator=g), "l.lora.lora_B": torch.randn(12, 8, generator=g),
          "other.weight": torch.randn(3, generator=g)}
    merged = merge_lora(sd, 1.0 / 8, expected=["l"], rank=8)
    assert set(merged) == {"l.weight", "l.bias", "other.weight"}
    x = torch.randn(5, 10, generator=g)
    torch.testing.assert_close(F.linear(x, merged["l.weight"], merged["l.bias"]), linear(sd, "l", x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("broken", ["no_b", "stray", "rank", "targets"])
def test_lora_merge_refuses_incomplete_or_mismatched_factors(broken):
    from sidbench.api import WeightsError
    from sidbench.nets.lora import merge_lora

    sd = {"l.original_layer.weight": torch.ones(4, 6), "l.lora.lora_A": torch.ones(8, 6), "l.lora.lora_B": torch.ones(4, 8)}
    expected, rank = ["l"], 8
    if broken == "no_b":
        del sd["l.lora.lora_B"]
    elif broken == "stray":
        sd["m.lora.lora_A"] = torch.ones(8, 6)
    elif broken == "rank":
        rank = 4
    else:
        expected = ["l", "k"]
    with pytest.raises(WeightsError):
        merge_lora(sd, 0.125, expected=expected, rank=rank)


def test_dda_file_without_a_lora_target_is_refused_in_one_line(tmp_path, plugins):
    from sidbench.api import WeightsError

    sd = random_state(dda_shapes(**TINY), seed=2)
    p = "base_model.model.blocks.1.mlp.fc2."
    sd[f"{p}weight"], sd[f"{p}bias"] = sd.pop(f"{p}original_layer.weight"), sd.pop(f"{p}original_layer.bias")
    del sd[f"{p}lora.lora_A"], sd[f"{p}lora.lora_B"]
    with pytest.raises(WeightsError, match="LoRA layers do not match"):
        load("dda", write_dda(tmp_path / "DDA_ckpt.pth", sd), plugins)


@pytest.mark.parametrize("size", [384, 224])
def test_commfor_official_safetensors_gives_the_vit_classifier_logits(tmp_path, plugins, size):
    sd = random_state(commfor_shapes(size, **TINY), seed=5 + size)
    det = load(f"commfor.{size}", write_commfor(tmp_path / "model.safetensors", sd), plugins)
    for i, (w, h) in enumerate(COMMFOR_SIZES):
        img = image(20 + i, w, h)
        assert detector_logit(det, img) == pytest.approx(commfor_reference(sd, img, 2, size), abs=1e-4), (w, h)


def test_commfor_loads_strictly(tmp_path, plugins):
    from sidbench.api import WeightsError

    sd = random_state(commfor_shapes(384, **TINY), seed=5)
    del sd["vit.blocks.1.mlp.fc1.bias"]
    with pytest.raises(WeightsError, match="fc1.bias"):
        load("commfor", write_commfor(tmp_path / "model.safetensors", sd), plugins)


def test_cards_and_official_weights(plugins):
    for name, host in (("bfree", "www.grip.unina.it"), ("dda", "huggingface.co"), ("commfor.384", "huggingface.co"),
                       ("commfor.224", "huggingface.co")):
        spec = plugins.detector(name)
        ow = spec.official_weights
        assert host in ow.url and ow.repository == spec.repository and spec.paper and spec.notes and spec.published
        assert spec.license and spec.training_data and spec.needs_fit
        assert ow.sha256 or ow.md5
        if host == "huggingface.co":
            assert ow.revision and ow.revision in ow.url
    assert plugins.detector("bfree").official_weights.member == "BFREE_dino2reg4/model_epoch_best.pth"
    assert "nonprofit" in plugins.detector("bfree").license


def test_one_run_one_leaderboard_with_npr(tmp_path):
    """`sidbench run --detectors bfree@F1,dda@F2,commfor@F3,npr@F4`: every image scored by all four in one
    leaderboard, B-Free's, DDA's and Community Forensics' logits equal to their official forwards on the same
    files (an EXIF-rotated JPEG among them, which the official scripts decode unrotated)."""
    import pandas as pd

    from sidbench.cli import main

    from conftest import make_folder, write_image
    from test_pixel_detectors import STAGES, official_shapes, trainer_dump
    from test_pixel_detectors import random_state as resnet_state

    w = tmp_path / "weights"
    w.mkdir()
    states = {"bfree": random_state(bfree_shapes(**TINY), 31), "dda": random_state(dda_shapes(**TINY), 32),
              "commfor": random_state(commfor_shapes(384, **TINY), 33)}
    npr = resnet_state(official_shapes(3, STAGES[:2], head="fc1", head_in=512), 34)
    torch.save(trainer_dump({f"module.{k}": v for k, v in npr.items()}), w / "NPR.pth")
    files = {"bfree": write_bfree(w / "model_epoch_best.pth", states["bfree"]),
             "dda": write_dda(w / "DDA_ckpt.pth", states["dda"]),
             "commfor": write_commfor(w / "model.safetensors", states["commfor"])}
    data = make_folder(tmp_path / "data", splits=("gan",), n=1, size=(64, 64), seed=7)
    write_image(data / "gan" / "1_fake" / "odd.png", np.random.default_rng(3), (301, 517), fake=True)
    write_rotated_jpeg(data / "gan" / "0_real" / "rotated.jpg", 4)
    out = tmp_path / "out"
    dets = ",".join(f"{n}{TINY_NAME}@{f}" for n, f in files.items()) + f",npr@{w / 'NPR.pth'}"
    assert main(["run", "--data", str(data), "--detectors", dets, "--out", str(out), "--batch-size", "2",
                 "--no-progress"]) == 0
    scores = pd.read_csv(out / "scores.csv")
    assert scores.detector.nunique() == 4 and (scores.groupby("detector").path.nunique() == 4).all()
    board = (out / "leaderboard.md").read_text()
    refs = {"bfree": bfree_reference, "dda": dda_reference, "commfor": commfor_reference}
    for row in scores.itertuples():
        img = Image.open(row.path).convert("RGB")
        family = row.detector.split("[")[0].split(".")[0]
        assert family in board
        if family != "npr":  # NPR's logits against its official forward: tests/test_pixel_runs.py
            assert row.logit == pytest.approx(refs[family](states[family], img, 2), abs=1e-4), (row.detector, row.path)
    assert dict(zip(scores.detector.str.split("[").str[0], scores.protocol)) == {
        "bfree": "bfree_5crops", "dda": "dda_center_crop", "commfor.384": "commfor_resize_crop",
        "npr.progan4": "resize_square"}


def test_own_protocols_decode_as_plain_pil_without_exif_rotation(tmp_path, plugins):
    """Unperturbed files are decoded as the official scripts' Image.open(path).convert('RGB') (no EXIF
    rotation); an ordinary file is not decoded a second time."""
    from sidbench.api import ImageInput
    from sidbench.data.images import read_image
    from sidbench.data.pil_decode import pil_convert_rgb

    path = write_rotated_jpeg(tmp_path / "r.jpg", 1)
    upright = read_image(path)
    assert upright.size == (60, 90)
    plain = pil_convert_rgb(ImageInput(upright, path.read_bytes(), str(path)))
    assert plain.size == (90, 60) and np.array_equal(np.asarray(plain), np.asarray(Image.open(path).convert("RGB")))
    assert pil_convert_rgb(ImageInput(upright, None, str(path))) is upright  # perturbed: sidbench's decode
    png = tmp_path / "p.png"
    image(2, 30, 20).save(png)
    decoded = read_image(png)
    assert pil_convert_rgb(ImageInput(decoded, png.read_bytes(), str(png))) is decoded
    for name in ("bfree", "dda", "commfor.384"):
        spec = plugins.detector(name)
        assert next(p for p in spec.pixels.protocols if p.name == spec.preprocess).reads_file


# the official logits of code/demo_images/*.png (B-Free's results.csv), for a machine that has the released file
BFREE_DEMO = {"img0000.png": -5.9374785, "img0001.png": -4.441922, "img0002.png": 4.430519, "img0003.png": 3.8499813}


@pytest.mark.slow
def test_bfree_released_file_reproduces_its_demo_logits(plugins):
    """Opt-in: SIDBENCH_BFREE_WEIGHTS=.../model_epoch_best.pth SIDBENCH_BFREE_DEMO=.../code/demo_images."""
    import os

    weights, demo = os.environ.get("SIDBENCH_BFREE_WEIGHTS"), os.environ.get("SIDBENCH_BFREE_DEMO")
    if not weights or not demo:
        pytest.skip("set SIDBENCH_BFREE_WEIGHTS and SIDBENCH_BFREE_DEMO to the released file and demo images")
    det = load("bfree", Path(weights), plugins, options={})
    for name, logit in BFREE_DEMO.items():
        assert detector_logit(det, Image.open(Path(demo) / name).convert("RGB")) == pytest.approx(logit, abs=1e-3), name


# -- full sizes (slow) -----------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("family", ["bfree", "dda", "commfor"])
def test_full_size_official_architectures(tmp_path, plugins, family):
    """The official sizes (ViT-B/14 + registers, ViT-L/14 + LoRA, ViT-S/16) load strictly and match."""
    shapes, writer, ref, heads, name, size = {
        "bfree": (bfree_shapes(), write_bfree, bfree_reference, 12, "bfree", (603, 530)),
        "dda": (dda_shapes(), write_dda, dda_reference, 16, "dda", (500, 333)),
        "commfor": (commfor_shapes(), write_commfor, commfor_reference, 6, "commfor", (601, 389)),
    }[family]
    sd = random_state(shapes, seed=9)
    det = load(name, writer(tmp_path / "official.pth", sd) if family != "commfor"
               else writer(tmp_path / "model.safetensors", sd), plugins, options={})
    img = image(9, *size)
    assert detector_logit(det, img) == pytest.approx(ref(sd, img, heads), abs=1e-4)
