"""Backbones: built-in ones are registered through the same hook as plugins."""
from __future__ import annotations

from ..api.hookspecs import hookimpl
from ..api.specs import BackboneSpec

DEFAULT_BACKBONE = "ViT-L-14:openai"


@hookimpl
def sidbench_backbones() -> list[BackboneSpec]:
    return [
        BackboneSpec(
            name="clip-tiny",
            factory="sidbench.backbones.clip:TINY_CLIP_FACTORY",
            description="tiny randomly initialised CLIP (4 blocks, width 64, embed 32), built offline from seed 0",
        ),
        BackboneSpec(
            name="open_clip",
            factory="sidbench.backbones.clip:OpenClipFactory",
            pattern=r"^(?!timm:)[A-Za-z0-9_\-./]+(:[A-Za-z0-9_\-.]+)?$",
            description="any open_clip ARCH:TAG, e.g. ViT-L-14:openai (the default; QuickGELU, as its weights), "
                        "or ARCH[:TAG] with --weights PATH (the tag's architecture, activation, preprocessing); "
                        "ARCH:random = random weights (speed benchmarks only)",
        ),
        BackboneSpec(
            name="timm",
            factory="sidbench.backbones.timm_vit:TIMM_FACTORY",
            pattern=r"^timm:[A-Za-z0-9_\-.]+(:random)?$",
            description="a timm ViT, e.g. timm:vit_large_patch14_dinov2.lvd142m (DINOv2); timm:MODEL:random for random weights",
        ),
        *foundation_specs(),
    ]


def foundation_specs() -> list[BackboneSpec]:
    """DINOv2, SigLIP and ConvNeXt by short name (see :mod:`sidbench.backbones.foundation`), and tiny twins."""
    from .foundation import DINOV2, OPEN_CLIP  # name tables only: no torch at import

    sizes = {"siglip-so400m": "1152-d attention-pooled embedding, 224 px", "siglip-b": "768-d, 224 px",
             "convnext-xxl": "3072-d pooled, 1024-d embedding, 256 px"}
    towers = {n: f"open_clip {OPEN_CLIP[n]} ({sizes[n]}; pooled, image_embed)" for n in OPEN_CLIP}
    tiny = {"dinov2-tiny": "DINOv2 ViT (2 blocks, width 32, 56 px)", "dinov2-reg-tiny": "DINOv2 ViT with 4 registers (tiny)",
            "siglip-tiny": "SigLIP SO400M-shaped ViT with attention pool (tiny)",
            "convnext-tiny": "ConvNeXt-XXLarge-shaped trunk (depths 1,1,2,1, dims 8-48) with projection (tiny)"}
    module = "sidbench.backbones.foundation"
    return [
        *(BackboneSpec(name=n, factory=f"{module}:DINOV2_FACTORY", description=f"{t} (timm, 224 px; per-block CLS, cls_final, image_embed)")
          for n, t in DINOV2.items()),
        *(BackboneSpec(name=n, factory=f"{module}:TOWER_FACTORY", description=t) for n, t in towers.items()),
        *(BackboneSpec(name=n, factory=f"{module}:TINY_FACTORY", description=f"{t}, random from seed 0 (tests)")
          for n, t in tiny.items()),
    ]
