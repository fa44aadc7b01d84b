"""OpenAI's CLIP, written for the tests from openai/CLIP ``clip/model.py`` (commit d05afc4), independent of
open_clip: seeded random weights in OpenAI's key layout, a Hugging Face hub cache folder that serves
them to open_clip's own loading path offline, and a compact forward over the state dict.

The forward follows ``VisionTransformer.forward``: patch convolution, CLS token + positions, ``ln_pre``,
blocks ``x + attn(ln_1(x))`` and ``x + mlp(ln_2(x))`` with ``mlp = c_proj(QuickGELU(c_fc(.)))``, heads =
width // 64, then ``ln_post`` on the CLS token and ``@ proj``. Attention is written out by hand.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

# (image tower: layers, width, patch; text tower: layers, width; embed dim) of OpenAI's released ViTs
ARCHS = {
    "ViT-B-32": dict(layers=12, width=768, patch=32, text_layers=12, text_width=512, embed=512),
    "ViT-L-14": dict(layers=24, width=1024, patch=14, text_layers=12, text_width=768, embed=768),
}
HF_REPOS = {"ViT-B-32": "timm/vit_base_patch32_clip_224.openai", "ViT-L-14": "timm/vit_large_patch14_clip_224.openai"}
RESOLUTION, CONTEXT, VOCAB = 224, 77, 49408


def openai_state_dict(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random weights with the keys and shapes of OpenAI's ``build_model`` (stored fp16, as OpenAI's are)."""
    a = ARCHS[arch]
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def put(key: str, shape: tuple[int, ...], std: float, mean: float = 0.0) -> None:
        sd[key] = (mean + std * torch.randn(shape, generator=g)).half()

    w, grid = a["width"], RESOLUTION // a["patch"]
    put("visual.conv1.weight", (w, 3, a["patch"], a["patch"]), (3 * a["patch"] ** 2) ** -0.5)
    put("visual.class_embedding", (w,), w ** -0.5)
    put("visual.positional_embedding", (grid * grid + 1, w), w ** -0.5)
    _norm(put, "visual.ln_pre", w)
    for i in range(a["layers"]):
        _block(put, f"visual.transformer.resblocks.{i}.", w, a["layers"])
    _norm(put, "visual.ln_post", w)
    put("visual.proj", (w, a["embed"]), w ** -0.5)
    # The text tower must be complete for open_clip's strict load, but no image feature reads it: zeros are
    # cheaper to make than random numbers (a third of ViT-B-32's weights).
    def zeros(key: str, shape: tuple[int, ...], std: float, mean: float = 0.0) -> None:
        sd[key] = torch.full(shape, mean, dtype=torch.float16)

    t = a["text_width"]
    zeros("token_embedding.weight", (VOCAB, t), 0.02)
    zeros("positional_embedding", (CONTEXT, t), 0.01)
    for i in range(a["text_layers"]):
        _block(zeros, f"transformer.resblocks.{i}.", t, a["text_layers"])
    _norm(zeros, "ln_final", t)
    zeros("text_projection", (t, a["embed"]), t ** -0.5)
    sd["logit_scale"] = torch.tensor(math.log(1 / 0.07)).half()
    return sd


def _norm(put, prefix: str, width: int) -> None:
    put(f"{prefix}.weight", (width,), 0.1, mean=1.0)
    put(f"{prefix}.bias", (width,), 0.1)


def _block(put, p: str, w: int, layers: int) -> None:
    """A residual attention block; biases are random too, so no term can hide behind a zero."""
    proj_std = w ** -0.5 * (2 * layers) ** -0.5
    put(p + "attn.in_proj_weight", (3 * w, w), w ** -0.5)
    put(p + "attn.in_proj_bias", (3 * w,), 0.02)
    put(p + "attn.out_proj.weight", (w, w), proj_std)
    put(p + "attn.out_proj.bias", (w,), 0.02)
    _norm(put, p + "ln_1", w)
    put(p + "mlp.c_fc.weight", (4 * w, w), (2 * w) ** -0.5)
    put(p + "mlp.c_fc.bias", (4 * w,), 0.02)
    put(p + "mlp.c_proj.weight", (w, 4 * w), proj_std)
    put(p + "mlp.c_proj.bias", (w,), 0.02)
    _norm(put, p + "ln_2", w)


def write_hf_cache(root: Path, arch: str, state: dict[str, torch.Tensor]) -> Path:
    """``root/models--<org>--<name>/snapshots/<rev>/open_clip_model.safetensors`` + ``refs/main``: the
    layout ``huggingface_hub.hf_hub_download`` reads offline for the tag's ``hf_hub`` entry."""
    from safetensors.torch import save_file

    org, name = HF_REPOS[arch].split("/")
    repo = root / f"models--{org}--{name}"
    rev = "0" * 40
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(rev)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snap / "open_clip_model.safetensors"))
    return root


def serve_hf_cache(monkeypatch, cache: Path) -> None:
    """Point huggingface_hub (read at import time, so its constants too) at ``cache``, offline."""
    import huggingface_hub.constants as hf

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)


def _ln(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * sd[prefix + ".weight"] + sd[prefix + ".bias"]


def _attention(x: torch.Tensor, sd: dict, p: str, heads: int) -> torch.Tensor:
    """Multi-head self-attention on LND tokens, from the packed in_proj weights."""
    length, batch, width = x.shape
    qkv = x @ sd[p + "in_proj_weight"].T + sd[p + "in_proj_bias"]
    q, k, v = (t.reshape(length, batch, heads, width // heads).permute(1, 2, 0, 3) for t in qkv.chunk(3, dim=-1))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(width // heads), dim=-1)
    out = (weights @ v).permute(2, 0, 1, 3).reshape(length, batch, width)
    return out @ sd[p + "out_proj.weight"].T + sd[p + "out_proj.bias"]


def openai_image_features(state: dict[str, torch.Tensor], images: torch.Tensor, quick_gelu: bool = True) -> dict:
    """cls_ln2, cls_blocks, cls_final and image_embed of OpenAI's image tower, in fp32 on the CPU
    (``quick_gelu=False`` gives the GELU network open_clip builds for ``ViT-L-14`` without the flag)."""
    sd = {k: v.float() for k, v in state.items() if k.startswith("visual.")}
    conv = sd["visual.conv1.weight"]
    width, patch = conv.shape[0], conv.shape[-1]
    n_layers = len([k for k in sd if k.endswith(".attn.in_proj_weight")])
    with torch.no_grad():
        x = F.conv2d(images.float(), conv, stride=patch).flatten(2).permute(0, 2, 1)  # [B, grid^2, W]
        cls = sd["visual.class_embedding"].expand(x.shape[0], 1, width)
        x = torch.cat([cls, x], dim=1) + sd["visual.positional_embedding"]
        x = _ln(x, sd, "visual.ln_pre").permute(1, 0, 2)  # NLD -> LND
        ln2, blocks = [], []
        for i in range(n_layers):
            p = f"visual.transformer.resblocks.{i}."
            x = x + _attention(_ln(x, sd, p + "ln_1"), sd, p + "attn.", width // 64)
            h = _ln(x, sd, p + "ln_2")
            ln2.append(h[0])
            m = h @ sd[p + "mlp.c_fc.weight"].T + sd[p + "mlp.c_fc.bias"]
            m = m * torch.sigmoid(1.702 * m) if quick_gelu else 0.5 * m * (1 + torch.erf(m / math.sqrt(2)))
            x = x + m @ sd[p + "mlp.c_proj.weight"].T + sd[p + "mlp.c_proj.bias"]
            blocks.append(x[0])
        final = _ln(x[0], sd, "visual.ln_post")
    return {"cls_ln2": torch.stack(ln2, 1), "cls_blocks": torch.stack(blocks, 1), "cls_final": final,
            "image_embed": final @ sd["visual.proj"]}
