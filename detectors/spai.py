"""SPAI: spectral reconstruction similarity of a frozen masked-frequency-modelling ViT, any resolution.

Karageorgiou, Papadopoulos, Kompatsiaris & Gavves, "Any-Resolution AI-Generated Image Detection by Spectral
Learning", CVPR 2025 (mever-team/spai; Apache-2.0 code and weights). The network is
:mod:`sidbench.nets.spai` (the official ``PatchBasedMFViT`` of ``configs/spai.yaml``). The test protocol of
``python -m spai test/infer`` with ``TEST.ORIGINAL_RESOLUTION: True``: ``Image.open(path).convert('RGB')``, no
resize, albumentations' ``PadIfNeeded(224, 224)`` (centred, OpenCV's reflect-101 border) only where a side is
under 224, pixels / 255 (the model normalises each patch itself), fp32 (the test path runs no AMP).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from sidbench.api import (DetectorSpec, ImageInput, NetworkDetector, OfficialWeights, PixelInput, ProtocolSpec,
                          SidbenchError, hookimpl, note)

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData

PAPER = ("Karageorgiou et al., Any-Resolution AI-Generated Image Detection by Spectral Learning, CVPR 2025 "
         "(arXiv 2411.19417)")
LICENSE = "Apache-2.0 (code and model weights, mever-team/spai README)"
REPOSITORY = "https://github.com/mever-team/spai"
WEIGHTS = "https://drive.google.com/file/d/1vvXmZqs6TVJdj8iF1oJ4L_fcgdQrp_YI/view?usp=sharing"
PATCH = 224
# shape the network (tests use tiny ones); patch_batch bounds the 224 patches per ViT pass (memory only)
OPTIONS = {"embed_dim": 768, "depth": 12, "num_heads": 12, "proj_dim": 1024, "attn_embed_dim": 1536,
           "attn_heads": 12, "patch_batch": 400}
SHAPE = ("embed_dim", "depth", "num_heads", "proj_dim", "attn_embed_dim", "attn_heads")


class Spai(NetworkDetector):
    """SPAI's ``PatchBasedMFViT`` on the whole image (padded to 224 where smaller); one logit per image.
    Loads the released ``spai.pth`` state dict (``{'model': sd, ...}``; see the card's note on its pickled
    config)."""

    def build_network(self) -> "torch.nn.Module":
        from sidbench.nets.spai import Spai as Net
        from sidbench.nets.spai import SpaiConfig

        if int(self.options["patch_batch"]) < 1:
            raise SidbenchError(f"{self.name}: patch_batch must be at least 1, got {self.options['patch_batch']!r}")
        cfg = SpaiConfig(**{k: int(self.options[k]) for k in SHAPE})
        return Net(cfg, patch_batch=int(self.options["patch_batch"]))

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        x = features["pixels"]
        if x.shape[-2] < PATCH or x.shape[-1] < PATCH:
            raise SidbenchError(f"{self.name} needs images of at least {PATCH}x{PATCH} pixels (got "
                                f"{x.shape[-2]}x{x.shape[-1]} under protocol {self.preprocess!r}); use its own "
                                "protocol spai_native, which pads smaller images as the official test does")
        return self.net(x.float())

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        raise SidbenchError(f"{self.name}: SPAI's training needs the MFM pre-trained ViT and NVIDIA APEX, which "
                            f"sidbench does not reproduce; attach the released weights: --detectors "
                            f"{self.name}@official (or @spai.pth)")


class PadToPatch:
    """SPAI's test view: the image as plain PIL decodes it, centred reflect-101 padding to at least 224 a side,
    pixels / 255, [3, H, W] (no normalisation: the network normalises each patch)."""

    def __init__(self, info: PixelInput):
        self.size = int(info.image_size)

    def __call__(self, item: ImageInput) -> "torch.Tensor":
        import cv2
        import numpy as np
        import torch

        from sidbench.data.pil_decode import pil_convert_rgb

        img = np.asarray(pil_convert_rgb(item), dtype=np.uint8)
        h, w = img.shape[:2]
        top, left = max(self.size - h, 0) // 2, max(self.size - w, 0) // 2
        bottom, right = max(self.size - h - top, 0), max(self.size - w - left, 0)
        if top or bottom or left or right:
            img = cv2.copyMakeBorder(np.ascontiguousarray(img), top, bottom, left, right, cv2.BORDER_REFLECT_101)
        return torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()


PROTOCOL = ProtocolSpec(
    "spai_native", PadToPatch,
    "SPAI's original-resolution test: no resize, centred reflect-101 padding to 224 where a side is smaller "
    "(albumentations PadIfNeeded), pixels / 255; decoded as PIL's convert('RGB') (no EXIF rotation)",
    variable_size=True, reads_file=True)

NOTES = (
    "Read from spai/models/sid.py, vision_transformer.py, filters.py, utils.py, data/data_finetune.py, "
    "__main__.py and configs/spai.yaml at commit 8ff7b3b. Same network and test view as `python -m spai infer`: "
    "224 patches on a stride-224 grid (remainder dropped; fewer than 4 patches -> torchvision's five 224 crops, "
    "MINIMUM_PATCHES 4 of the config and README test command), low/high-pass by a radius-16 circular mask on the "
    "shifted DFT of each patch, the MFM ViT-B/16 on all three, spectral reconstruction similarity, spectral "
    "context attention over the image's patches. Memory bound: the patches go through the network in chunks "
    "of at most patch_batch (original, low- and high-pass images in three ViT passes of that size, as MFViT "
    "does), 400 as the official "
    "MODEL.FEATURE_EXTRACTION_BATCH, and the engine batches equal-size images up to max_batch_pixels; lower "
    "patch_batch on a small GPU (the logits do not change). The official loop scores one image at a time; "
    "sidbench batches images of equal size together (the patch attention stays per image). fp32 as the "
    "official test path (no AMP there). The released file is a training dump "
    "that also pickles the yacs config: sidbench refuses pickled objects and prints the one-line conversion to "
    "plain tensors; the state dict inside then loads strictly (its unused MFM head, fc_norm, "
    "intermediate_fc_norm, cls_pos_embed, actual_cls_token and cls_blocks are built so nothing is skipped).")


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [DetectorSpec(
        name="spai",
        factory=Spai,
        preprocess="spai_native",
        pixels=PixelInput(image_size=PATCH, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                          max_batch_pixels=32 * 1024 * 1024, protocols=(PROTOCOL,)),
        default=True,
        needs_fit=True,  # scores only with weights attached (fit explains why it does not train)
        quickstart=False,  # the weights cannot be fetched offline
        options=OPTIONS,
        description="SPAI (frozen MFM ViT-B/16, spectral reconstruction similarity, spectral context attention "
                    "over native-resolution 224 patches); official: spai@official (spai.pth, Apache-2.0)",
        training_data=("latent diffusion training set of Corvi et al. 2023 (LDM fakes)", "coco", "lsun (reals)"),
        official_weights=OfficialWeights(
            url=WEIGHTS, filename="spai.pth", repository=REPOSITORY,
            note="Google Drive link of the README (Weights Checkpoint); no checksum or revision published; "
                 "a training dump with a pickled config: convert once as the loader says"),
        paper=PAPER,
        license=LICENSE,
        repository=REPOSITORY,
        published={
            "mean AUC over 13 generators (paper, Table 1)": "91.0 (+5.5 over the second best)",
        },
        notes=NOTES,
    )]
