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
            factory="sidbench.backbones.clip:build_tiny",
            description="tiny randomly initialised CLIP (4 blocks, width 64, embed 32), built offline from seed 0",
        ),
        BackboneSpec(
            name="open_clip",
            factory="sidbench.backbones.clip:build_open_clip",
            pattern=r"^(?!timm:)[A-Za-z0-9_\-./]+(:[A-Za-z0-9_\-.]+)?$",
            description="any open_clip ARCH:TAG, e.g. ViT-L-14:openai (the default; QuickGELU, as its weights), "
                        "or ARCH[:TAG] with --weights PATH (the tag's architecture, activation, preprocessing); "
                        "ARCH:random = random weights (speed benchmarks only)",
        ),
        BackboneSpec(
            name="timm",
            factory="sidbench.backbones.timm_vit:build_timm",
            pattern=r"^timm:[A-Za-z0-9_\-.]+(:random)?$",
            description="a timm ViT, e.g. timm:vit_large_patch14_dinov2.lvd142m (DINOv2); timm:MODEL:random for random weights",
        ),
        *foundation_specs(),
    ]


def foundation_specs() -> list[BackboneSpec]:
    """DINOv2, SigLIP and ConvNeXt by short name (see :mod:`sidbench.backbones.foundation`), and tiny twins."""
    dinov2 = {f"dinov2-{s}{r}": f"timm:vit_{size}_patch14{reg}_dinov2.lvd142m"
              for s, size in (("s", "small"), ("b", "base"), ("l", "large"), ("g", "giant"))
              for r, reg in (("", ""), ("-reg", "_reg4"))}
    towers = {"siglip-so400m": "open_clip ViT-SO400M-14-SigLIP:webli (1152-d attention-pooled embedding), 224 px",
              "siglip-b": "open_clip ViT-B-16-SigLIP:webli, 224 px",
              "convnext-xxl": "open_clip convnext_xxlarge:laion2b_s34b_b82k_augreg_soup (3072-d pooled, 1024-d embedding), 256 px"}
    tiny = {"dinov2-tiny": "DINOv2 ViT (2 blocks, width 32, 56 px)", "dinov2-reg-tiny": "DINOv2 ViT with 4 registers (tiny)",
            "siglip-tiny": "SigLIP SO400M-shaped ViT with attention pool (tiny)",
            "convnext-tiny": "ConvNeXt-XXLarge-shaped trunk (depths 1,1,2,1, dims 8-48) with projection (tiny)"}
    module = "sidbench.backbones.foundation"
    return [
        *(BackboneSpec(name=n, factory=f"{module}:build_dinov2", description=f"{t} (timm; CLS, per-block CLS, pooled)")
          for n, t in dinov2.items()),
        *(BackboneSpec(name=n, factory=f"{module}:build_open_clip_tower", description=t) for n, t in towers.items()),
        *(BackboneSpec(name=n, factory=f"{module}:build_tiny", description=f"{t}, random from seed 0 (tests)")
          for n, t in tiny.items()),
    ]
