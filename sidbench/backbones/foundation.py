"""Frozen foundation backbones by short name: DINOv2 (timm, with and without registers), SigLIP and ConvNeXt
(open_clip, whose image towers are timm trunks), each with a tiny randomly initialised twin for tests.

DINOv2 emits the timm ViT features (``cls_ln2``, ``cls_blocks``, ``cls_final``, ``image_embed``; CLS first, the
registers after it). SigLIP has no CLS token and ConvNeXt no tokens at all, so their towers emit ``pooled`` (the
trunk's own pooling: SigLIP's attention-pool head, ConvNeXt's average pool then LayerNorm) and ``image_embed``
(open_clip's image embedding, not normalised: SigLIP's is the pooled feature itself, ConvNeXt's its linear
projection). Every backbone emits ``image_embed``, the feature a probe reads by default.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..api.backbone import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Backbone, BackboneInfo, FunctionFactory
from ..api.errors import WeightsError

if TYPE_CHECKING:
    import torch

DINOV2 = {f"dinov2-{s}{r}": f"timm:vit_{size}_patch14{reg}_dinov2.lvd142m"
          for s, size in (("s", "small"), ("b", "base"), ("l", "large"), ("g", "giant"))
          for r, reg in (("", ""), ("-reg", "_reg4"))}
OPEN_CLIP = {"siglip-so400m": "ViT-SO400M-14-SigLIP:webli", "siglip-b": "ViT-B-16-SigLIP:webli",
             "convnext-xxl": "convnext_xxlarge:laion2b_s34b_b82k_augreg_soup"}
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)
TINY_SEED = 0


@dataclass(frozen=True)
class PooledInfo(BackboneInfo):
    """A tower without per-block CLS tokens: ``width`` is the pooled feature's size, ``embed_dim`` the embedding's."""

    def feature_shape(self, name: str) -> tuple[int, ...]:
        return {"pooled": (self.width,), "image_embed": (self.embed_dim,)}[name]


class PooledTower(Backbone):
    """An open_clip timm tower: ``trunk`` (timm) then ``head`` (open_clip's projection, or nothing)."""

    feature_names = ("pooled", "image_embed")

    def __init__(self, trunk: "torch.nn.Module", head: "torch.nn.Module", info: BackboneInfo, identity: str):
        super().__init__()
        self.trunk, self.head = trunk.eval().requires_grad_(False), head.eval().requires_grad_(False)
        self.info, self.identity = info, identity

    def _forward(self, images: "torch.Tensor", names: tuple[str, ...]) -> dict[str, "torch.Tensor"]:
        pooled = self.trunk(images)
        out = {"pooled": pooled}
        if "image_embed" in names:
            out["image_embed"] = self.head(pooled)
        return {k: v for k, v in out.items() if k in names}

    def _move(self, device: str) -> None:
        self.trunk.to(device)
        self.head.to(device)


# -- DINOv2 ---------------------------------------------------------------------------------------------------
def build_dinov2(name: str, weights: str | None = None, device: str = "cpu") -> Backbone:
    """``dinov2-l`` and friends: timm's DINOv2 (through :mod:`.timm_vit`) under its short name."""
    from .timm_vit import build_timm

    backbone = build_timm(DINOV2[name], weights=weights, device=device)
    backbone.info = _renamed(backbone.info, name)
    return backbone


def describe_dinov2(name: str) -> BackboneInfo:
    from .timm_vit import describe_timm

    return _renamed(describe_timm(DINOV2[name]), name)


def dinov2_identity(name: str, weights: str | None = None) -> str:
    from .timm_vit import timm_identity

    return timm_identity(DINOV2[name], weights)


# -- SigLIP and ConvNeXt through open_clip ----------------------------------------------------------------------
def build_open_clip_tower(name: str, weights: str | None = None, device: str = "cpu") -> Backbone:
    """The image tower of open_clip's ``ARCH:TAG`` for ``name``; weights from open_clip's cache or ``weights``."""
    import open_clip
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    arch, tag = OPEN_CLIP[name].split(":")
    try:  # the file first (from open_clip's cache when offline), so a missing one fails before the model is built
        path = str(weights) if weights else download_pretrained(get_pretrained_cfg(arch, tag))
        model = open_clip.create_model(arch, pretrained=path)
    except Exception as exc:  # noqa: BLE001 - hub and file errors come in many types
        offline = any(os.environ.get(v, "") not in ("", "0") for v in ("HF_HUB_OFFLINE", "SIDBENCH_OFFLINE"))
        hint = " (offline)" if offline else ""
        raise WeightsError(f"backbone {name} ({arch}:{tag}) weights could not be loaded{hint} ({type(exc).__name__}); "
                           "run once where the network is reachable so open_clip caches them, or pass --weights PATH")
    visual = model.visual
    return PooledTower(visual.trunk, visual.head, describe_open_clip_tower(name), tower_identity(name, weights)).to(device)


def describe_open_clip_tower(name: str) -> BackboneInfo:
    """Shapes and preprocessing from open_clip's configuration (no weights)."""
    import open_clip

    arch = OPEN_CLIP[name].split(":")[0]
    cfg = open_clip.get_model_config(arch)
    vision, embed = cfg["vision_cfg"], int(cfg["embed_dim"])
    siglip = "SigLIP" in arch
    width = embed if siglip else {"convnext_xxlarge": 3072}.get(vision["timm_model_name"], embed)
    mean, std = (SIGLIP_MEAN, SIGLIP_STD) if siglip else (CLIP_MEAN, CLIP_STD)
    return PooledInfo(name, 0, width, embed, int(vision.get("image_size", 224)), mean, std)


def tower_identity(name: str, weights: str | None = None) -> str:
    if weights:
        from pathlib import Path

        from ..api.checkpoints import file_sha256

        if not Path(weights).is_file():
            raise WeightsError(f"--weights {weights}: no such file; give an open_clip checkpoint of {OPEN_CLIP[name]}")
        return f"{OPEN_CLIP[name].split(':')[0]}@sha256:{file_sha256(Path(weights))[:16]}"
    return OPEN_CLIP[name]


# -- tiny twins (tests, quick runs): the same architectures, small, random, from a fixed seed -----------------
def build_tiny(name: str, weights: str | None = None, device: str = "cpu") -> Backbone:
    """``dinov2-tiny``, ``dinov2-reg-tiny``, ``siglip-tiny``, ``convnext-tiny``: random weights from seed 0."""
    import torch

    if weights:
        raise WeightsError(f"backbone {name} is random by construction; --weights applies to the real backbones")
    state = torch.random.get_rng_state()
    torch.manual_seed(TINY_SEED)
    try:
        return _tiny(name).to(device)
    finally:
        torch.random.set_rng_state(state)


def _tiny(name: str) -> Backbone:
    import timm
    from torch import nn

    from .timm_vit import TimmViTBackbone

    identity, info = f"{name}:random-seed{TINY_SEED}", describe_tiny(name)
    vit = dict(pretrained=False, num_classes=0, img_size=info.image_size, embed_dim=32, depth=2, num_heads=2)
    if name.startswith("dinov2"):
        arch = "vit_small_patch14_reg4_dinov2" if "reg" in name else "vit_small_patch14_dinov2"
        return TimmViTBackbone(timm.create_model(arch, **vit), info, identity)
    if name == "siglip-tiny":  # open_clip's ViT-SO400M-14-SigLIP: timm trunk, attention pool, no projection
        return PooledTower(timm.create_model("vit_so400m_patch14_siglip_224", global_pool="map", **vit), nn.Identity(),
                           info, identity)
    trunk = timm.create_model("convnext_xxlarge", pretrained=False, num_classes=0, depths=[1, 1, 2, 1],
                              dims=[8, 16, 32, 48])  # open_clip's convnext_xxlarge: avg pool, LayerNorm, then proj
    head = nn.Sequential()
    head.add_module("drop", nn.Dropout(0.0))
    head.add_module("proj", nn.Linear(48, 24, bias=False))
    return PooledTower(trunk, head, info, identity)


TINY = {"dinov2-tiny": (2, 32, 32, 56, IMAGENET_MEAN, IMAGENET_STD),
        "dinov2-reg-tiny": (2, 32, 32, 56, IMAGENET_MEAN, IMAGENET_STD),
        "siglip-tiny": (0, 32, 32, 56, SIGLIP_MEAN, SIGLIP_STD),
        "convnext-tiny": (0, 48, 24, 64, CLIP_MEAN, CLIP_STD)}


def describe_tiny(name: str) -> BackboneInfo:
    blocks, width, embed, size, mean, std = TINY[name]
    kind = BackboneInfo if name.startswith("dinov2") else PooledInfo
    return kind(name, blocks, width, embed, size, mean, std)


def tiny_identity(name: str, weights: str | None = None) -> str:
    return f"{name}:random-seed{TINY_SEED}"


def _renamed(info: BackboneInfo, name: str) -> BackboneInfo:
    import dataclasses

    return dataclasses.replace(info, name=name)


# The factories the registry holds ("sidbench.backbones.foundation:DINOV2_FACTORY"): shapes and identities answered
# without loading weights
DINOV2_FACTORY = FunctionFactory(build_dinov2, describe=describe_dinov2, identity=dinov2_identity)  # dinov2-l, ... (timm)
TOWER_FACTORY = FunctionFactory(build_open_clip_tower, describe=describe_open_clip_tower,
                                identity=tower_identity)  # siglip-so400m, siglip-b, convnext-xxl (open_clip towers)
TINY_FACTORY = FunctionFactory(build_tiny, describe=describe_tiny, identity=tiny_identity)  # dinov2-tiny, ... (random)
