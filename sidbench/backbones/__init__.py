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
    ]
