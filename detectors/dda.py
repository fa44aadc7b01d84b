"""DDA (Dual Data Alignment): DINOv2 ViT-L/14 adapted with LoRA, trained on VAE-reconstructed COCO images.

Chen et al., "Dual Data Alignment Makes AI-Generated Image Detector Easier Generalizable", NeurIPS 2025
(roy-ch/Dual-Data-Alignment; Apache-2.0 code and checkpoint).

Read from ``Inference/inference.py`` and ``Inference/models/{dinov2_models,dinov2_models_lora,lora}.py``:
``DINOv2ModelWithLoRA('dinov2_vitl14', lora_rank=8, lora_alpha=1)`` is the torch.hub DINOv2 ViT-L/14 (no
registers) whose ``nn.Linear`` layers named with ``attn.qkv``, ``attn.proj``, ``mlp.fc1`` or ``mlp.fc2`` are wrapped
by ``LoRALinear`` (``original_layer`` + ``lora.lora_A`` [8, in] and ``lora.lora_B`` [out, 8], output scaled by
alpha / rank = 1/8), and ``fc = Linear(1024, 1)`` on the normalised class token. The checkpoint is
``torch.load(ckpt)['model']``, loaded strictly, so it holds the whole base model too. Test transform:
``CenterCrop(336)`` (zero padding for smaller images, no resize), ToTensor, CLIP mean/std; sigmoid of the logit.

sidbench merges the LoRA factors into the base weights at load time (``W + B @ A / 8``: one plain ViT-L) and
resizes the 37x37 position embedding to 24x24 the DINOv2 way (bicubic, scale (24 + 0.1) / 37, no antialias).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from sidbench.api import (CLIP_MEAN, CLIP_STD, DetectorSpec, ImageInput, NetworkDetector, OfficialWeights, PixelInput,
                          ProtocolSpec, SidbenchError, hookimpl, note, strip_prefix)

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData

PAPER = ("Chen et al., Dual Data Alignment Makes AI-Generated Image Detector Easier Generalizable, NeurIPS 2025 "
         "(arXiv 2505.14359)")
LICENSE = "Apache-2.0 (roy-ch/Dual-Data-Alignment LICENSE; the weights are the same authors' Hugging Face release)"
REPOSITORY = "https://github.com/roy-ch/Dual-Data-Alignment"
HF_REPO = "Junwei-Xi/Dual-Data-Alignment"
HF_REVISION = "4390d9023899196b437480bb6a441915ef5d816c"
CROP = 336
LORA_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
# shape the network (tests use tiny ones); lora_rank / lora_alpha as Inference/inference.py sets them
OPTIONS = {"embed_dim": 1024, "depth": 24, "num_heads": 16, "lora_rank": 8, "lora_alpha": 1.0}
PREFIX = "base_model."  # DINOv2ModelWithLoRA.base_model = DINOv2Model(model=<hub ViT>, fc=Linear)


class DDA(NetworkDetector):
    """The hub DINOv2 ViT (``model``) with the LoRA factors merged and ``fc`` on its class token."""

    def build_network(self) -> "torch.nn.Module":
        o = self.options
        return build_network(int(o["embed_dim"]), int(o["depth"]), int(o["num_heads"]))

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return self.net.fc(self.net.model(features["pixels"]))[:, 0]

    def convert_checkpoint(self, state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """``base_model.model.*`` (LoRA-wrapped hub names) and ``base_model.fc.*`` -> merged ``net.model.*``, ``net.fc.*``."""
        from sidbench.nets.lora import lora_targets, merge_lora

        state = strip_prefix(strip_prefix(state), PREFIX)
        rank, alpha = int(self.options["lora_rank"]), float(self.options["lora_alpha"])
        expected = [f"model.{n}" for n in lora_targets(self.net.model, LORA_TARGETS)]
        return {f"net.{k}": v for k, v in merge_lora(state, alpha / rank, expected=expected, rank=rank).items()}

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        raise SidbenchError(f"{self.name}: DDA's training (Training/train.py, on VAE-reconstructed COCO) is not ported "
                            f"to sidbench; attach the official weights: --detectors {self.name}@official (or @DDA_ckpt.pth)")


def build_network(embed_dim: int = 1024, depth: int = 24, num_heads: int = 16) -> "torch.nn.Module":
    """``model``: DINOv2 ViT-L/14 in torch.hub names (518-px position embedding); ``fc``: Linear(embed_dim, 1)."""
    from torch import nn

    from sidbench.nets.dinov2 import DinoV2Config, DinoVisionTransformer

    net = nn.Module()
    net.model = DinoVisionTransformer(DinoV2Config(embed_dim=embed_dim, depth=depth, num_heads=num_heads))
    net.fc = nn.Linear(embed_dim, 1)
    return net


class CenterCrop:
    """inference.py's transform: torchvision's ``CenterCrop(336)`` on the PIL image (zero padding when smaller, no
    resize), ToTensor, CLIP normalisation; the image decoded as ``Image.open(path).convert('RGB')``."""

    def __init__(self, info: PixelInput):
        self.size, self.mean, self.std = int(info.image_size), tuple(info.mean), tuple(info.std)

    def __call__(self, item: ImageInput) -> "torch.Tensor":
        import torchvision.transforms.functional as TF

        from sidbench.data.pil_decode import pil_convert_rgb

        img = TF.center_crop(pil_convert_rgb(item), [self.size, self.size])
        return TF.normalize(TF.to_tensor(img), self.mean, self.std)


PROTOCOL = ProtocolSpec(
    "dda_center_crop", CenterCrop,
    "DDA's inference.py: centre crop 336 (zero padding when smaller), no resize; decoded as PIL's convert('RGB') "
    "(no EXIF rotation)", reads_file=True)

NOTES = (
    "Read from Inference/inference.py and Inference/models/*.py (commit 21f1e39). sidbench merges the LoRA factors "
    "(rank 8, alpha 1, on every block's attn.qkv, attn.proj, mlp.fc1, mlp.fc2) into the frozen weights when the file "
    "loads, so the network is one plain ViT-L/14 (same logits to float precision); a file whose LoRA layers differ from "
    "those targets is refused. The released file holds the whole DINOv2 base (the official code loads it strictly), "
    "so nothing else is fetched. Protocol dda_center_crop: torchvision's CenterCrop(336) (zero padding for smaller "
    "images, no resize), CLIP mean/std, decoded as Image.open(path).convert('RGB') (no EXIF rotation; perturbed "
    "images use sidbench's upright decode); position embeddings resized the DINOv2 way, not timm's. The default "
    "weights are the February 2026 re-release (the README: the earlier upload 'slightly differed from the results "
    "reported in the paper'). Runs in fp32 as inference.py does (--precision fp16 halves the memory of the ViT-L).")


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [DetectorSpec(
        name="dda",
        factory=DDA,
        preprocess="dda_center_crop",
        pixels=PixelInput(image_size=CROP, mean=CLIP_MEAN, std=CLIP_STD, protocols=(PROTOCOL,)),
        default=True,
        needs_fit=True,  # scores only with weights attached (fit explains why it cannot train)
        quickstart=False,  # the weights cannot be fetched offline; training is not ported
        options=OPTIONS,
        description="DDA (DINOv2 ViT-L/14 + LoRA r=8, merged at load); centre crop 336, no resize; "
                    "official: dda@official (DDA_ckpt.pth, 2026 re-release)",
        training_data=("coco (MSCOCO train2017 reals)",
                       "VAE reconstructions of the same images, pixel- and frequency-aligned (DDA fakes)"),
        official_weights=OfficialWeights(
            url=f"https://huggingface.co/{HF_REPO}/resolve/{HF_REVISION}/DDA_ckpt.pth", filename="DDA_ckpt.pth",
            sha256="b27a31d39374803ddeff02bfabb2be76e190b04300490cddfafb24f683f37e3e", revision=HF_REVISION,
            repository=REPOSITORY,
            note=f"Hugging Face {HF_REPO} (the README's 'New release', Feb 2026), 1,255,621,296 bytes; the SHA-256 is "
                 "the file's Git LFS object id at that revision (no checksum in the README)"),
        paper=PAPER,
        license=LICENSE,
        repository=REPOSITORY,
        published={
            "GenImage (1G + 7D), mean acc": "91.7 (fakes JPEG q96, README table)",
            "DRCT-2M (16D), mean acc": "98.1",
            "Synthbuster (9D), mean acc": "90.1",
            "ForenSynths (11G), mean acc": "81.4 (fakes JPEG q96)",
            "AIGCDetectionBenchmark (7G + 10D), mean acc": "87.8 (fakes JPEG q96)",
            "Chameleon, acc": "82.4",
            "SynthWildX (3D), mean acc": "90.9",
            "WildRF, mean acc": "90.3",
            "B-Free online, acc": "95.1",
        },
        notes=NOTES,
    )]
