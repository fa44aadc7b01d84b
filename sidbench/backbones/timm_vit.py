"""timm ViT backbones (e.g. DINOv2) emitting the same named features as CLIP, minus the text tower.

Names: ``timm:MODEL`` (pretrained weights through timm's hub, cached where online),
``timm:MODEL`` with ``--weights PATH``, and ``timm:MODEL:random`` (random init, for tests and
speed benchmarks; never for numbers you report). Images are fed at 224 px.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..api.backbone import IMAGENET_MEAN, IMAGENET_STD, Backbone, BackboneInfo, FunctionFactory
from ..api.errors import UnknownNameError, WeightsError
from .capture import ClsCapture

if TYPE_CHECKING:
    import torch

IMAGE_SIZE = 224


def _parse(name: str) -> tuple[str, bool]:
    parts = name.split(":")
    if parts[0] != "timm" or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "random"):
        raise UnknownNameError("backbone", name, ["timm:vit_large_patch14_dinov2.lvd142m", "timm:MODEL:random"])
    return parts[1], len(parts) == 3


class TimmViTBackbone(Backbone):
    """Forward hooks on each block's ``norm2`` and output collect the CLS tokens in one pass."""

    feature_names = ("cls_ln2", "cls_blocks", "cls_final", "image_embed")

    def __init__(self, model, info: BackboneInfo, identity: str):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.info, self.identity = info, identity
        self.capture = ClsCapture()  # timm blocks are batch-first, CLS first
        self.capture.watch("cls_ln2", [block.norm2 for block in model.blocks])
        self.capture.watch("cls_blocks", model.blocks)

    def _forward(self, images: "torch.Tensor", names: tuple[str, ...]) -> dict[str, "torch.Tensor"]:
        tokens, out = self.capture.run(lambda: self.model.forward_features(images), names)  # final norm applied
        if "cls_final" in names:
            out["cls_final"] = tokens[:, 0]
        if "image_embed" in names:
            out["image_embed"] = self.model.forward_head(tokens, pre_logits=True)
        return out

    def _move(self, device: str) -> None:
        self.model.to(device)


def _create(model_name: str, pretrained: bool, **kwargs):
    import timm

    if model_name not in timm.list_models(model_name.split(".")[0]) and not timm.is_model(model_name):
        raise UnknownNameError("backbone", f"timm:{model_name}", [f"timm:{m}" for m in timm.list_models("vit_*")])
    return timm.create_model(model_name, pretrained=pretrained, num_classes=0, img_size=IMAGE_SIZE, **kwargs)


def describe_timm(name: str) -> BackboneInfo:
    """Shapes without loading weights (the model is built on the meta device)."""
    import torch

    model_name, _ = _parse(name)
    with torch.device("meta"):
        model = _create(model_name, pretrained=False)
    cfg = model.pretrained_cfg
    return BackboneInfo(name, len(model.blocks), model.embed_dim, model.num_features, IMAGE_SIZE,
                        tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)))


def build_timm(name: str, weights: str | None = None, device: str = "cpu") -> TimmViTBackbone:
    import torch

    model_name, random_init = _parse(name)
    info = describe_timm(name)
    if random_init:
        state = torch.random.get_rng_state()
        torch.manual_seed(0)
        try:
            model = _create(model_name, pretrained=False)
        finally:
            torch.random.set_rng_state(state)
        return TimmViTBackbone(model, info, timm_identity(name)).to(device)
    if weights:
        identity = timm_identity(name, weights)  # checks the file first
        model = _create(model_name, pretrained=True, pretrained_cfg_overlay={"file": str(weights)})
        return TimmViTBackbone(model, info, identity).to(device)
    offline = any(os.environ.get(v, "") not in ("", "0") for v in ("HF_HUB_OFFLINE", "SIDBENCH_OFFLINE"))
    try:
        model = _create(model_name, pretrained=True)
    except Exception as exc:  # noqa: BLE001 - hub errors come in many types
        hint = " (HF_HUB_OFFLINE is set)" if offline else ""
        raise WeightsError(
            f"timm:{model_name} weights could not be loaded{hint} ({type(exc).__name__}); run once where the "
            f"network is reachable so timm caches them, or pass --weights PATH"
        ) from None
    return TimmViTBackbone(model, info, timm_identity(name)).to(device)


def timm_identity(name: str, weights: str | None = None) -> str:
    """The identity of ``timm:MODEL[:random]`` (with ``weights``: of that file), known without building it."""
    model_name, random_init = _parse(name)
    if random_init:
        return f"timm:{model_name}:random-seed0"
    if weights:
        from pathlib import Path

        from ..api.checkpoints import file_sha256

        if not Path(weights).is_file():
            raise WeightsError(f"--weights {weights}: no such file; give a timm checkpoint for {model_name}")
        return f"timm:{model_name}@sha256:{file_sha256(Path(weights))[:16]}"
    return f"timm:{model_name}"


# timm:MODEL[:random]: shapes from the model built on the meta device, identity from the name or file
TIMM_FACTORY = FunctionFactory(build_timm, describe=describe_timm, identity=timm_identity)
