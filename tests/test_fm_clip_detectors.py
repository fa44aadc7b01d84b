"""C2P-CLIP, Effort and DRCT (ConvNeXt and CLIP) against their official architectures and test scripts.

Each test writes a checkpoint in the official file format (seeded random weights under the official key names,
prefixes and wrapping; tiny configurations of the same architectures), loads it through sidbench and compares
the logits with a forward written here from the official code in plain torch (Hugging Face CLIP, OpenAI CLIP,
timm ConvNeXt, Effort's SVDResidualLinear), on the official test preprocessing written here too (torchvision
transforms for C2P-CLIP; ``cv2.imread`` + ``cv2.resize`` for Effort; ``cv2.imread`` + albumentations'
PadIfNeeded/CenterCrop/Normalize arithmetic for DRCT), on images of several sizes.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sidbench.api import WeightsError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TINY_VIT = dict(width=32, layers=2, heads=2, patch_size=14)
TINY_C2P = dict(TINY_VIT, projection_dim=16)
TINY_DRCT_CLIP = dict(TINY_VIT, projection_dim=16, embedding_size=24)
TINY_CONVNEXT = dict(width=8, depth=1, stage3_depth=2, embedding_size=16)
SIZES = [(100, 150), (257, 300), (231, 347), (224, 224)]  # (h, w): smaller than the crop, odd, non-square


def options_text(options: dict) -> str:
    return "[" + ",".join(f"{k}={v}" for k, v in options.items()) + "]"


def convnext_shape(cfg: dict) -> tuple[list[int], list[int]]:
    """(depths, dims) of the ConvNeXt a DRCT option set describes (ConvNeXt-Base: 3-3-27-3, 128-1024)."""
    d = cfg["depth"]
    return [d, d, cfg["stage3_depth"], d], [cfg["width"] * 2 ** i for i in range(4)]


# -- seeded weights under the official names ---------------------------------------------------------------
def _rand(g, *shape, scale=None):
    fan_in = shape[-1] if len(shape) > 1 else 1
    return torch.randn(*shape, generator=g) * (scale if scale is not None else fan_in ** -0.5)


def hf_vision_state(g, width, layers, patch, positions, svd_rank=None) -> dict[str, torch.Tensor]:
    """``CLIPVisionTransformer`` state (Hugging Face names). ``svd_rank``: attention projections as Effort's
    ``replace_with_svd_residual`` leaves them (r = width - 1) after training moved the residual factors."""
    sd = {"embeddings.class_embedding": _rand(g, width, scale=0.5),
          "embeddings.patch_embedding.weight": _rand(g, width, 3, patch, patch, scale=(3 * patch * patch) ** -0.5),
          "embeddings.position_embedding.weight": _rand(g, positions, width, scale=0.3)}
    for n in ("pre_layrnorm", "post_layernorm"):
        sd[f"{n}.weight"], sd[f"{n}.bias"] = 1 + _rand(g, width, scale=0.1), _rand(g, width, scale=0.1)
    for i in range(layers):
        p = f"encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            w, b = _rand(g, width, width), _rand(g, width, scale=0.1)
            if svd_rank is None:
                sd[p + f"self_attn.{proj}.weight"] = w
            else:
                sd.update(svd_entries(p + f"self_attn.{proj}.", w, svd_rank, g))
            sd[p + f"self_attn.{proj}.bias"] = b
        for n in ("layer_norm1", "layer_norm2"):
            sd[p + f"{n}.weight"], sd[p + f"{n}.bias"] = 1 + _rand(g, width, scale=0.1), _rand(g, width, scale=0.1)
        sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"] = _rand(g, 4 * width, width), _rand(g, 4 * width, scale=0.1)
        sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"] = _rand(g, width, 4 * width), _rand(g, width, scale=0.1)
    return sd


def svd_entries(prefix, w, r, g) -> dict[str, torch.Tensor]:
    """Effort's split of ``w``: weight_main (top r), trained residual factors, and the unused U_r/S_r/V_r.
    At full size (96 SVDs of 1024 x 1024 would take minutes) random factors of the same shapes stand in."""
    if w.shape[0] > 64:
        n = min(w.shape)
        u, s, vh = _rand(g, w.shape[0], n, scale=n ** -0.5), torch.rand(n, generator=g) + 0.5, _rand(g, n, w.shape[1])
        return {prefix + "weight_main": w, prefix + "U_residual": u[:, r:], prefix + "S_residual": s[r:],
                prefix + "V_residual": vh[r:], prefix + "U_r": u[:, :r], prefix + "S_r": s[:r], prefix + "V_r": vh[:r]}
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    return {prefix + "weight_main": u[:, :r] @ torch.diag(s[:r]) @ vh[:r],
            prefix + "U_residual": u[:, r:] + _rand(g, w.shape[0], len(s) - r, scale=0.3),
            prefix + "S_residual": s[r:] + 0.5,
            prefix + "V_residual": vh[r:] + _rand(g, len(s) - r, w.shape[1], scale=0.3),
            prefix + "U_r": u[:, :r], prefix + "S_r": s[:r], prefix + "V_r": vh[:r]}


def openai_clip_state(g, width, layers, patch, positions, embed) -> dict[str, torch.Tensor]:
    """An OpenAI ``clip`` package state dict: the visual tower and a small text tower (both are saved)."""
    sd = {"visual.class_embedding": _rand(g, width, scale=0.5),
          "visual.positional_embedding": _rand(g, positions, width, scale=0.3),
          "visual.proj": _rand(g, width, embed),
          "visual.conv1.weight": _rand(g, width, 3, patch, patch, scale=(3 * patch * patch) ** -0.5)}
    for n in ("ln_pre", "ln_post"):
        sd[f"visual.{n}.weight"], sd[f"visual.{n}.bias"] = 1 + _rand(g, width, scale=0.1), _rand(g, width, scale=0.1)
    for tower, w in (("visual.transformer", width), ("transformer", 16)):
        for i in range(layers):
            p = f"{tower}.resblocks.{i}."
            sd[p + "attn.in_proj_weight"], sd[p + "attn.in_proj_bias"] = _rand(g, 3 * w, w), _rand(g, 3 * w, scale=0.1)
            sd[p + "attn.out_proj.weight"], sd[p + "attn.out_proj.bias"] = _rand(g, w, w), _rand(g, w, scale=0.1)
            for n in ("ln_1", "ln_2"):
                sd[p + f"{n}.weight"], sd[p + f"{n}.bias"] = 1 + _rand(g, w, scale=0.1), _rand(g, w, scale=0.1)
            sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"] = _rand(g, 4 * w, w), _rand(g, 4 * w, scale=0.1)
            sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"] = _rand(g, w, 4 * w), _rand(g, w, scale=0.1)
    sd.update({"positional_embedding": _rand(g, 77, 16), "text_projection": _rand(g, 16, embed),
               "logit_scale": torch.tensor(4.6052), "token_embedding.weight": _rand(g, 100, 16),
               "ln_final.weight": torch.ones(16), "ln_final.bias": torch.zeros(16)})
    return sd


def convnext_state(g, depths, dims, num_classes) -> dict[str, torch.Tensor]:
    """timm ``convnext_base_in22k`` names (0.6.12): stem.0/1, stages.N.downsample.0/1, blocks, head.norm/fc."""
    sd = {"stem.0.weight": _rand(g, dims[0], 3, 4, 4, scale=48 ** -0.5), "stem.0.bias": _rand(g, dims[0], scale=0.1),
          "stem.1.weight": 1 + _rand(g, dims[0], scale=0.1), "stem.1.bias": _rand(g, dims[0], scale=0.1)}
    for s, (depth, dim) in enumerate(zip(depths, dims)):
        if s > 0:
            sd[f"stages.{s}.downsample.0.weight"] = 1 + _rand(g, dims[s - 1], scale=0.1)
            sd[f"stages.{s}.downsample.0.bias"] = _rand(g, dims[s - 1], scale=0.1)
            sd[f"stages.{s}.downsample.1.weight"] = _rand(g, dim, dims[s - 1], 2, 2, scale=(4 * dims[s - 1]) ** -0.5)
            sd[f"stages.{s}.downsample.1.bias"] = _rand(g, dim, scale=0.1)
        for b in range(depth):
            p = f"stages.{s}.blocks.{b}."
            sd[p + "gamma"] = 0.5 + _rand(g, dim, scale=0.1)
            sd[p + "conv_dw.weight"] = _rand(g, dim, 1, 7, 7, scale=1 / 7)
            sd[p + "conv_dw.bias"] = _rand(g, dim, scale=0.1)
            sd[p + "norm.weight"], sd[p + "norm.bias"] = 1 + _rand(g, dim, scale=0.1), _rand(g, dim, scale=0.1)
            sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"] = _rand(g, 4 * dim, dim), _rand(g, 4 * dim, scale=0.1)
            sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"] = _rand(g, dim, 4 * dim), _rand(g, dim, scale=0.1)
    sd["head.norm.weight"], sd["head.norm.bias"] = 1 + _rand(g, dims[-1], scale=0.1), _rand(g, dims[-1], scale=0.1)
    sd["head.fc.weight"], sd["head.fc.bias"] = _rand(g, num_classes, dims[-1]), _rand(g, num_classes, scale=0.1)
    return sd


def linear(g, prefix, n_in, n_out, scale=None) -> dict[str, torch.Tensor]:
    return {prefix + "weight": _rand(g, n_out, n_in, scale=scale), prefix + "bias": _rand(g, n_out, scale=0.1)}


def positions(patch: int) -> int:
    return (224 // patch) ** 2 + 1


# -- official files ------------------------------------------------------------------------------------------
def c2p_file(root: Path, cfg: dict, seed: int = 1) -> tuple[Path, dict]:
    """C2P_CLIP_release_20240901.pth: the C2P_CLIP module's state dict (CLIPModel minus its text tower)."""
    g = torch.Generator().manual_seed(seed)
    vision = hf_vision_state(g, cfg["width"], cfg["layers"], cfg["patch_size"], positions(cfg["patch_size"]))
    sd = {f"model.vision_model.{k}": v for k, v in vision.items()}
    sd["model.visual_projection.weight"] = _rand(g, cfg["projection_dim"], cfg["width"])
    sd.update(linear(g, "model.fc.", cfg["projection_dim"], 1, scale=3.0))
    path = root / "C2P_CLIP_release_20240901.pth"
    torch.save(sd, path)
    return path, sd


def effort_file(root: Path, cfg: dict, seed: int = 2, wrap: str = "module", position_ids: bool = False):
    """An Effort release: EffortDetector's state dict with SVD-residual projections, DataParallel's ``module.``
    prefix and (``wrap='state_dict'``) a ``{'state_dict': ...}`` wrapper, which demo.py's loader unwraps."""
    g = torch.Generator().manual_seed(seed)
    w = cfg["width"]
    vision = hf_vision_state(g, w, cfg["layers"], cfg["patch_size"], positions(cfg["patch_size"]), svd_rank=w - 1)
    if position_ids:
        vision["embeddings.position_ids"] = torch.arange(positions(cfg["patch_size"]))[None]
    sd = {f"backbone.{k}": v for k, v in vision.items()}
    sd.update(linear(g, "head.", w, 2, scale=1.0))
    saved = {f"module.{k}": v for k, v in sd.items()} if wrap in ("module", "state_dict") else sd
    if wrap == "state_dict":
        saved = {"state_dict": saved}
    path = root / f"effort_{wrap}.pth"
    torch.save(saved, path)
    return path, sd


def drct_convnext_file(root: Path, cfg: dict, seed: int = 3) -> tuple[Path, dict]:
    """14_acc0.9996.pth: ContrastiveModels' state dict (``model.`` = timm ConvNeXt, ``fc``)."""
    g = torch.Generator().manual_seed(seed)
    depths, dims = convnext_shape(cfg)
    sd = {f"model.{k}": v for k, v in convnext_state(g, depths, dims, cfg["embedding_size"]).items()}
    sd.update(linear(g, "fc.", cfg["embedding_size"], 2, scale=0.5))
    path = root / "14_acc0.9996.pth"
    torch.save(sd, path)
    return path, sd


def drct_clip_file(root: Path, cfg: dict, seed: int = 4) -> tuple[Path, dict]:
    """13_acc0.9664.pth: ContrastiveModels(CLIPModelV2): ``model.model`` (all of OpenAI CLIP), ``model.fc``, ``fc``."""
    g = torch.Generator().manual_seed(seed)
    clip = openai_clip_state(g, cfg["width"], cfg["layers"], cfg["patch_size"], positions(cfg["patch_size"]),
                             cfg["projection_dim"])
    sd = {f"model.model.{k}": v for k, v in clip.items()}
    sd.update(linear(g, "model.fc.", cfg["projection_dim"], cfg["embedding_size"]))
    sd.update(linear(g, "fc.", cfg["embedding_size"], 2, scale=1.0))
    path = root / "13_acc0.9664.pth"
    torch.save(sd, path)
    return path, sd


# -- independent forwards (plain torch, from the official modules) --------------------------------------------
def layer_norm(x, sd, p, eps):
    return F.layer_norm(x, x.shape[-1:], sd[p + "weight"], sd[p + "bias"], eps)


def attention(x, q, k, v, heads):
    b, n, w = x.shape
    d = w // heads
    q, k, v = (t.reshape(b, n, heads, d).transpose(1, 2) for t in (q, k, v))
    a = torch.softmax((q * d ** -0.5) @ k.transpose(-1, -2), dim=-1)
    return (a @ v).transpose(1, 2).reshape(b, n, w)


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def hf_vision_pooled(sd, p, x, heads, layers, svd=False):
    """transformers' CLIPVisionTransformer: pooler_output. ``svd``: projections are Effort's SVDResidualLinear."""
    def proj(name, h):
        q = p + name + "."
        if svd:  # SVDResidualLinear.forward
            w = sd[q + "weight_main"] + sd[q + "U_residual"] @ torch.diag(sd[q + "S_residual"]) @ sd[q + "V_residual"]
        else:
            w = sd[q + "weight"]
        return F.linear(h, w, sd[q + "bias"])

    patch = sd[p + "embeddings.patch_embedding.weight"]
    e = F.conv2d(x, patch, stride=patch.shape[-1]).flatten(2).transpose(1, 2)
    cls = sd[p + "embeddings.class_embedding"].expand(x.shape[0], 1, -1)
    h = torch.cat([cls, e], 1) + sd[p + "embeddings.position_embedding.weight"][None]
    h = layer_norm(h, sd, p + "pre_layrnorm.", 1e-5)
    for i in range(layers):
        lp = f"encoder.layers.{i}."
        y = layer_norm(h, sd, p + lp + "layer_norm1.", 1e-5)
        y = attention(y, proj(lp + "self_attn.q_proj", y), proj(lp + "self_attn.k_proj", y),
                      proj(lp + "self_attn.v_proj", y), heads)
        h = h + proj(lp + "self_attn.out_proj", y)
        y = layer_norm(h, sd, p + lp + "layer_norm2.", 1e-5)
        y = F.linear(quick_gelu(F.linear(y, sd[p + lp + "mlp.fc1.weight"], sd[p + lp + "mlp.fc1.bias"])),
                     sd[p + lp + "mlp.fc2.weight"], sd[p + lp + "mlp.fc2.bias"])
        h = h + y
    return layer_norm(h[:, 0], sd, p + "post_layernorm.", 1e-5)


def openai_encode_image(sd, p, x, heads, layers):
    """OpenAI clip's VisionTransformer.forward: ln_post(x[:, 0]) @ proj (nn.MultiheadAttention, QuickGELU)."""
    conv = sd[p + "conv1.weight"]
    e = F.conv2d(x, conv, stride=conv.shape[-1]).flatten(2).transpose(1, 2)
    h = torch.cat([sd[p + "class_embedding"].expand(x.shape[0], 1, -1), e], 1) + sd[p + "positional_embedding"]
    h = layer_norm(h, sd, p + "ln_pre.", 1e-5)
    for i in range(layers):
        lp = f"{p}transformer.resblocks.{i}."
        y = layer_norm(h, sd, lp + "ln_1.", 1e-5)
        q, k, v = F.linear(y, sd[lp + "attn.in_proj_weight"], sd[lp + "attn.in_proj_bias"]).chunk(3, dim=-1)
        h = h + F.linear(attention(y, q, k, v, heads), sd[lp + "attn.out_proj.weight"], sd[lp + "attn.out_proj.bias"])
        y = layer_norm(h, sd, lp + "ln_2.", 1e-5)
        y = F.linear(quick_gelu(F.linear(y, sd[lp + "mlp.c_fc.weight"], sd[lp + "mlp.c_fc.bias"])),
                     sd[lp + "mlp.c_proj.weight"], sd[lp + "mlp.c_proj.bias"])
        h = h + y
    return layer_norm(h[:, 0], sd, p + "ln_post.", 1e-5) @ sd[p + "proj"]


def convnext_forward(sd, p, x, depths):
    """timm ConvNeXt (conv_mlp=False, LayerNorm eps 1e-6, exact GELU), head: avg pool, norm, fc."""
    def ln2d(t, q):
        return layer_norm(t.permute(0, 2, 3, 1), sd, q, 1e-6).permute(0, 3, 1, 2)

    x = ln2d(F.conv2d(x, sd[p + "stem.0.weight"], sd[p + "stem.0.bias"], stride=4), p + "stem.1.")
    for s, depth in enumerate(depths):
        if s > 0:
            q = f"{p}stages.{s}.downsample."
            x = F.conv2d(ln2d(x, q + "0."), sd[q + "1.weight"], sd[q + "1.bias"], stride=2)
        for b in range(depth):
            q = f"{p}stages.{s}.blocks.{b}."
            y = F.conv2d(x, sd[q + "conv_dw.weight"], sd[q + "conv_dw.bias"], padding=3, groups=x.shape[1])
            y = layer_norm(y.permute(0, 2, 3, 1), sd, q + "norm.", 1e-6)
            y = F.linear(F.gelu(F.linear(y, sd[q + "mlp.fc1.weight"], sd[q + "mlp.fc1.bias"])),
                         sd[q + "mlp.fc2.weight"], sd[q + "mlp.fc2.bias"])
            x = x + y.permute(0, 3, 1, 2) * sd[q + "gamma"][None, :, None, None]
    pooled = layer_norm(x.mean(dim=(2, 3)), sd, p + "head.norm.", 1e-6)
    return F.linear(pooled, sd[p + "head.fc.weight"], sd[p + "head.fc.bias"])


def c2p_logits(sd, x, cfg):
    e = F.linear(hf_vision_pooled(sd, "model.vision_model.", x, cfg["heads"], cfg["layers"]),
                 sd["model.visual_projection.weight"])
    return F.linear(e / e.norm(p=2, dim=-1, keepdim=True), sd["model.fc.weight"], sd["model.fc.bias"])[:, 0]


def effort_logits(sd, x, cfg):
    z = F.linear(hf_vision_pooled(sd, "backbone.", x, cfg["heads"], cfg["layers"], svd=True), sd["head.weight"],
                 sd["head.bias"])
    return z[:, 1] - z[:, 0]  # prob = softmax(pred)[:, 1]


def drct_convnext_logits(sd, x, cfg):
    z = F.linear(convnext_forward(sd, "model.", x, convnext_shape(cfg)[0]), sd["fc.weight"], sd["fc.bias"])
    return z[:, 1] - z[:, 0]  # score = 1 - softmax[:, 0]


def drct_clip_logits(sd, x, cfg):
    f = openai_encode_image(sd, "model.model.visual.", x, cfg["heads"], cfg["layers"])
    z = F.linear(F.linear(f, sd["model.fc.weight"], sd["model.fc.bias"]), sd["fc.weight"], sd["fc.bias"])
    return z[:, 1] - z[:, 0]


# -- official test preprocessing ------------------------------------------------------------------------------
def c2p_input(path) -> torch.Tensor:
    """data.py: pil_loader, Resize(224), CenterCrop(224), ToTensor, Normalize(CLIP)."""
    import torchvision.transforms as T

    with open(path, "rb") as f:
        img = Image.open(f).convert("RGB")
    tf = T.Compose([T.Resize(224), T.CenterCrop(224), T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)])
    return tf(img)


def effort_input(path, interpolation=cv2.INTER_LINEAR) -> torch.Tensor:
    """demo.py: cv2.imread, BGR -> RGB, cv2.resize to (224, 224), ToTensor of the PIL image, Normalize(CLIP)."""
    import torchvision.transforms as T

    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (224, 224), interpolation=interpolation)
    return T.Normalize(CLIP_MEAN, CLIP_STD)(T.ToTensor()(Image.fromarray(rgb)))


def drct_input(path) -> torch.Tensor:
    """read_image + create_val_transforms(224, is_crop=True): albumentations PadIfNeeded (constant 0, centre:
    top = int((224 - h) / 2)), CenterCrop (y1 = (h - 224) // 2), Normalize (max_pixel_value 255), ToTensorV2."""
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    top, left = (int((224 - h) / 2.0) if h < 224 else 0), (int((224 - w) / 2.0) if w < 224 else 0)
    img = cv2.copyMakeBorder(img, top, max(224 - h - top, 0), left, max(224 - w - left, 0), cv2.BORDER_CONSTANT,
                             value=0)
    h, w = img.shape[:2]
    y1, x1 = (h - 224) // 2, (w - 224) // 2
    img = img[y1:y1 + 224, x1:x1 + 224].astype(np.float32)
    mean, std = np.array(IMAGENET_MEAN, np.float32) * 255.0, np.array(IMAGENET_STD, np.float32) * 255.0
    img = (img - mean) * np.reciprocal(std)
    return torch.from_numpy(img.transpose(2, 0, 1).copy())


DETECTORS = {  # name -> (official file, tiny options, official forward, official input)
    "c2p_clip": (c2p_file, TINY_C2P, c2p_logits, c2p_input),
    "effort": (effort_file, TINY_VIT, effort_logits, effort_input),
    "drct.convnext": (drct_convnext_file, TINY_CONVNEXT, drct_convnext_logits, drct_input),
    "drct.clip": (drct_clip_file, TINY_DRCT_CLIP, drct_clip_logits, drct_input),
}


def write_images(root: Path, sizes=SIZES, seed: int = 0) -> list[Path]:
    """PNGs of the given sizes and one JPEG whose EXIF orientation (6) cv2.imread applies."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        arr = np.clip(rng.normal(128, 50, (h, w, 3)), 0, 255).astype(np.uint8)
        paths.append(root / f"img{i}_{h}x{w}.png")
        Image.fromarray(arr).save(paths[-1])
    exif = Image.Exif()
    exif[0x0112] = 6
    arr = np.clip(rng.normal(128, 50, (181, 263, 3)), 0, 255).astype(np.uint8)
    paths.append(root / "rotated.jpg")
    Image.fromarray(arr).save(paths[-1], quality=90, exif=exif.tobytes())
    return paths


def sidbench_logits(det, paths) -> torch.Tensor:
    """The detector's default protocol on the file as the engine hands it over (decoded image + bytes)."""
    from sidbench.api import ImageInput
    from sidbench.data.preprocess import make_preprocess

    pre = make_preprocess(det.preprocess, det.pixel_input)
    xs = []
    for p in paths:
        with Image.open(p) as im:
            img = im.convert("RGB")
        xs.append(pre(ImageInput(img, p.read_bytes(), str(p))))
    with torch.no_grad():
        return det.score({"pixels": torch.stack(xs)})


def reference_logits(name, sd, cfg, paths) -> torch.Tensor:
    _, _, forward, to_input = DETECTORS[name]
    with torch.no_grad():
        return forward(sd, torch.stack([to_input(p) for p in paths]), cfg)


# -- the tests -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(DETECTORS))
def test_official_file_gives_the_official_logits(tmp_path, plugins, name):
    from sidbench.registry import load_detector

    make_file, cfg, _, _ = DETECTORS[name]
    path, sd = make_file(tmp_path, cfg)
    det = load_detector(name, weights=str(path), plugins=plugins, **cfg)
    paths = write_images(tmp_path / "img")
    ref = reference_logits(name, sd, cfg, paths)
    got = sidbench_logits(det, paths)
    assert ref.abs().max() > 0.05 and ref.std() > 1e-3  # the weights reach the logit
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("wrap,position_ids", [("module", False), ("state_dict", True), ("bare", False)])
def test_effort_loads_every_released_wrapping(tmp_path, plugins, wrap, position_ids):
    from sidbench.registry import load_detector

    path, sd = effort_file(tmp_path, TINY_VIT, wrap=wrap, position_ids=position_ids)
    det = load_detector("effort.chameleon", weights=str(path), plugins=plugins, **TINY_VIT)
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(det.score({"pixels": x}), effort_logits(sd, x, TINY_VIT), rtol=1e-4, atol=1e-4)


def test_svd_merge_equals_the_unmerged_layer():
    from sidbench.nets.svd import merge_svd_residual

    g = torch.Generator().manual_seed(7)
    w = _rand(g, 48, 40)
    state = svd_entries("attn.q_proj.", w, 37, g) | {"attn.q_proj.bias": _rand(g, 48), "other.weight": _rand(g, 3, 3)}
    merged = merge_svd_residual(state)
    assert set(merged) == {"attn.q_proj.weight", "attn.q_proj.bias", "other.weight"}
    x = _rand(g, 5, 40, scale=1.0)
    u, s, v = (state[f"attn.q_proj.{n}_residual"] for n in "USV")
    residual = u @ torch.diag(s) @ v
    unmerged = F.linear(x, state["attn.q_proj.weight_main"] + residual, state["attn.q_proj.bias"])  # SVDResidualLinear
    torch.testing.assert_close(F.linear(x, merged["attn.q_proj.weight"], merged["attn.q_proj.bias"]), unmerged,
                               rtol=1e-5, atol=1e-5)
    # the residual is not a no-op, the unused principal factors are not required, no residual means weight_main
    assert not torch.allclose(merged["attn.q_proj.weight"], state["attn.q_proj.weight_main"], atol=1e-3)
    lean = {k: v for k, v in state.items() if not k.endswith(("U_r", "S_r", "V_r"))}
    torch.testing.assert_close(merge_svd_residual(lean)["attn.q_proj.weight"], merged["attn.q_proj.weight"])
    main_only = {k: v for k, v in lean.items() if "residual" not in k}
    assert merge_svd_residual(main_only)["attn.q_proj.weight"] is state["attn.q_proj.weight_main"]


def test_effort_refuses_a_residual_with_a_factor_missing_in_one_line(tmp_path, plugins):
    from sidbench.registry import load_detector

    _, sd = effort_file(tmp_path, TINY_VIT, wrap="bare")
    del sd["backbone.encoder.layers.1.self_attn.v_proj.S_residual"]
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(WeightsError, match=r"S_residual missing") as err:
        load_detector("effort", weights=str(tmp_path / "broken.pth"), plugins=plugins, **TINY_VIT)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["c2p_clip", "drct.convnext", "drct.clip"])
def test_loading_is_strict(tmp_path, plugins, name):
    from sidbench.registry import load_detector

    make_file, cfg, _, _ = DETECTORS[name]
    path, sd = make_file(tmp_path, cfg)
    extra = dict(sd)
    extra["model.fc.surplus" if name != "drct.clip" else "model.model.visual.surplus"] = torch.zeros(1)
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(WeightsError):
        load_detector(name, weights=str(tmp_path / "extra.pth"), plugins=plugins, **cfg)
    missing = {k: v for k, v in sd.items() if not k.endswith("fc.bias")}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(WeightsError):
        load_detector(name, weights=str(tmp_path / "missing.pth"), plugins=plugins, **cfg)


def release_zips(root: Path) -> dict[str, tuple[Path, dict, dict]]:
    """The files as the official links serve them: C2P-CLIP's one-member zip, DRCT's pretrained.zip holding
    every model (tiny ones here) under the paths of its README, and Effort's bare .pth."""
    import zipfile

    out = {}
    (root / "c2p").mkdir(parents=True)
    path, sd = c2p_file(root / "c2p", TINY_C2P)
    with zipfile.ZipFile(root / "C2P_CLIP_release_20240901.zip", "w") as z:
        z.write(path, "C2P_CLIP_release_20240901.pth")
    out["c2p_clip"] = (root / "C2P_CLIP_release_20240901.zip", sd, TINY_C2P)
    (root / "effort").mkdir()
    path, sd = effort_file(root / "effort", TINY_VIT)
    out["effort"] = (path, sd, TINY_VIT)
    with zipfile.ZipFile(root / "pretrained.zip", "w") as z:
        for name, make, cfg, run in (("drct.convnext", drct_convnext_file, TINY_CONVNEXT, "convnext_base_in22k"),
                                     ("drct.clip", drct_clip_file, TINY_DRCT_CLIP, "clip-ViT-L-14")):
            (root / name).mkdir()
            path, sd = make(root / name, cfg)
            z.write(path, f"pretrained/DRCT-2M/sdv14/{run}_224_drct_amp_crop/{path.name}")
            z.write(path, f"pretrained/DRCT-2M/sdv2/{run}_224_drct_amp_crop/other_{path.name}")
            out[name] = (root / "pretrained.zip", sd, cfg)
    return out


@pytest.mark.parametrize("name", list(DETECTORS))
def test_the_file_the_official_link_serves_loads(tmp_path, plugins, name):
    from sidbench.registry import load_detector

    path, sd, cfg = release_zips(tmp_path)[name]
    det = load_detector(name, weights=str(path), plugins=plugins, **cfg)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(det.score({"pixels": x}), DETECTORS[name][2](sd, x, cfg), rtol=1e-4, atol=1e-4)


def test_a_zip_without_the_variants_member_is_a_one_line_error(tmp_path, plugins):
    import zipfile

    from sidbench.registry import load_detector

    path, _ = drct_convnext_file(tmp_path, TINY_CONVNEXT)
    with zipfile.ZipFile(tmp_path / "pretrained.zip", "w") as z:
        z.write(path, "pretrained/GenImage/sdv14/convnext_base_in22k_224_drct_amp_crop/last_acc0.9991.pth")
    with pytest.raises(WeightsError, match="no member") as err:
        load_detector("drct.convnext", weights=str(tmp_path / "pretrained.zip"), plugins=plugins, **TINY_CONVNEXT)
    assert "\n" not in str(err.value)
    det = load_detector("drct.convnext_genimage", weights=str(tmp_path / "pretrained.zip"), plugins=plugins,
                        **TINY_CONVNEXT)
    assert det.weights_path.endswith("last_acc0.9991.pth")


def test_effort_cubic_protocol_is_deepfakebench_loader(tmp_path, plugins):
    from sidbench.registry import load_detector

    path, sd = effort_file(tmp_path, TINY_VIT)
    det = load_detector("effort", weights=str(path), plugins=plugins, preprocess="opencv_resize_cubic", **TINY_VIT)
    paths = write_images(tmp_path / "img", sizes=[(97, 310)])
    with torch.no_grad():
        ref = effort_logits(sd, torch.stack([effort_input(p, cv2.INTER_CUBIC) for p in paths]), TINY_VIT)
    torch.testing.assert_close(sidbench_logits(det, paths), ref, rtol=1e-4, atol=1e-4)


def test_opencv_protocols_use_the_pil_pixels_of_a_perturbed_image(plugins):
    from sidbench.api import ImageInput
    from sidbench.data.preprocess import make_preprocess
    from sidbench.registry import load_detector

    rgb = np.random.default_rng(5).integers(0, 255, (150, 260, 3), dtype=np.uint8)
    for name, ref in (("effort", lambda a: cv2.resize(a, (224, 224), interpolation=cv2.INTER_LINEAR)),
                      ("drct.convnext", lambda a: np.pad(a, ((37, 37), (0, 0), (0, 0)))[:, 18:242])):
        det = load_detector(name, plugins=plugins, **DETECTORS[name][1])
        info = det.pixel_input
        x = make_preprocess(det.preprocess, info)(
            ImageInput(Image.fromarray(rgb), None, "perturbed"))
        expected = (torch.from_numpy(ref(rgb)).permute(2, 0, 1) / 255.0 - torch.tensor(info.mean)[:, None, None]) \
            / torch.tensor(info.std)[:, None, None]
        torch.testing.assert_close(x, expected.float(), rtol=1e-5, atol=1e-5)


def test_specs_carry_cards_and_official_weights(plugins):
    def detector_spec(name, plugins):
        return plugins.detector(name)

    for name in ("c2p_clip", "effort.genimage", "effort.chameleon", "drct.convnext", "drct.clip"):
        spec = detector_spec(name, plugins)
        assert spec.paper and spec.license and spec.repository and spec.notes and spec.training_data
        ow = spec.official_weights
        assert ow is not None and ow.url.startswith("https://") and ow.repository == spec.repository
    c2p = detector_spec("c2p_clip", plugins).official_weights
    assert c2p.member == "C2P_CLIP_release_20240901.pth" and c2p.url.endswith(".zip")
    assert detector_spec("drct.clip", plugins).official_weights.member.endswith("13_acc0.9664.pth")
    assert "NC" in detector_spec("effort", plugins).license


def test_one_run_puts_them_in_one_leaderboard(tmp_path):
    """``sidbench run --detectors c2p_clip@F,effort@F,drct.convnext@F,drct.clip@F,npr@F``: every image scored,
    each logit equal to the official forward on the official protocol of that file."""
    from sidbench.cli import main

    from test_pixel_detectors import STAGES, official_shapes, random_state, trainer_dump

    files = release_zips(tmp_path / "files")
    npr = random_state(official_shapes(3, STAGES[:2], head="fc1", head_in=512), 12)
    torch.save(trainer_dump({f"module.{k}": v for k, v in npr.items()}), tmp_path / "NPR.pth")
    data = tmp_path / "data"
    write_images(data / "set" / "0_real", sizes=[(100, 150), (257, 300)], seed=1)
    write_images(data / "set" / "1_fake", sizes=[(231, 346)], seed=2)
    names = [f"{name}{options_text(cfg)}@{path}" for name, (path, _, cfg) in files.items()]
    out = tmp_path / "out"
    rc = main(["run", "--data", str(data), "--detectors", ",".join(names + [f"npr@{tmp_path / 'NPR.pth'}"]),
               "--device", "cpu", "--out", str(out), "--batch-size", "2"])
    assert rc in (0, None)
    scores = pd.read_csv(out / "scores.csv")
    assert scores.groupby("detector").size().to_dict() == {n: 5 for n in scores.detector.unique()}
    assert len(scores.detector.unique()) == 5
    board = (out / "leaderboard.md").read_text()
    spec_names = {"c2p_clip": "c2p_clip", "effort": "effort.genimage", "drct.convnext": "drct.convnext",
                  "drct.clip": "drct.clip"}
    for name, (path, sd, cfg) in files.items():
        rows = scores[scores.detector.str.split("[").str[0] == spec_names[name]]
        assert len(rows) == 5, name
        ref = reference_logits(name, sd, cfg, [Path(p) for p in rows.path])
        np.testing.assert_allclose(rows.logit.to_numpy(), ref.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)
        assert spec_names[name] in board
    assert "npr.progan4" in board


# -- full size ---------------------------------------------------------------------------------------------------
FULL = {"c2p_clip": dict(width=1024, layers=24, heads=16, patch_size=14, projection_dim=768),
        "effort": dict(width=1024, layers=24, heads=16, patch_size=14),
        "drct.convnext": dict(width=128, depth=3, stage3_depth=27, embedding_size=1024),
        "drct.clip": dict(width=1024, layers=24, heads=16, patch_size=14, projection_dim=768, embedding_size=1024)}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FULL))
def test_full_size_official_file_gives_the_official_logits(tmp_path, plugins, name):
    """ViT-L/14 and ConvNeXt-Base at their official sizes, with the default options (no shape options given)."""
    from sidbench.registry import load_detector

    make_file, _, _, _ = DETECTORS[name]
    path, sd = make_file(tmp_path, FULL[name])
    det = load_detector(name, weights=str(path), plugins=plugins)
    paths = write_images(tmp_path / "img", sizes=[(200, 301)])
    got = sidbench_logits(det, paths)
    assert math.isfinite(float(got[0]))
    torch.testing.assert_close(got, reference_logits(name, sd, FULL[name], paths), rtol=1e-4, atol=1e-4)
