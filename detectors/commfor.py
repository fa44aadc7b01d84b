"""Community Forensics: a fine-tuned timm ViT-S/16 trained on images of thousands of generators.

Park & Owens, "Community Forensics: Using Thousands of Generators to Train Fake Image Detectors", CVPR 2025
(JeongsooP/Community-Forensics; MIT licence for the code; the Hugging Face model repositories name no licence).

Read from ``models.py``, ``dataloader.py`` (``get_transform``, ``determine_resize_crop_sizes``),
``dataprocessor_hf.py`` and ``eval.py``: ``ViTClassifier`` is timm's ``vit_small_patch16_384`` (or ``_224``) as
``self.vit`` with its head replaced by ``Linear(384, 1)``; the Hugging Face ``model.safetensors``
(``PyTorchModelHubMixin``) therefore has every key under ``vit.``. Test transform: ``Resize(440)`` (``256`` for
the 224 model; torchvision's short-side resize of the PIL image, bilinear and antialiased), ``CenterCrop(384)``
(224), ToTensor, ImageNet mean/std; the logit's sigmoid is P(fake).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from sidbench.api import (DetectorSpec, IMAGENET_MEAN, IMAGENET_STD, ImageInput, NetworkDetector, OfficialWeights,
                          PixelInput, ProtocolSpec, SidbenchError, hookimpl, note, strip_prefix)

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData

PAPER = ("Park & Owens, Community Forensics: Using Thousands of Generators to Train Fake Image Detectors, CVPR 2025 "
         "(arXiv 2411.04125)")
LICENSE = ("MIT for the code (JeongsooP/Community-Forensics LICENSE); the Hugging Face weights carry no licence of "
           "their own (ask the authors before any commercial use)")
REPOSITORY = "https://github.com/JeongsooP/Community-Forensics"
RESIZE = {384: 440, 224: 256}  # dataloader.determine_resize_crop_sizes
REVISIONS = {384: ("OwensLab/commfor-model-384", "6076002bf0d9dd37537f965ee2f06f826c333b61",
                   "b89f36275f3bf5e2b040eee36597a8f19db051bff9a473a9cf7b2466284fb387"),
             224: ("OwensLab/commfor-model-224", "26afc31e6b40c312c3fd42c05a758be62446215b",
                   "a6cc439d5a6d2dfadd60c77d27a2838ad55b34e601ecd30f46ad97266d6ac4e0")}
OPTIONS = {"embed_dim": 384, "depth": 12, "num_heads": 6}  # shape the network (tests use tiny ones)


class CommunityForensics(NetworkDetector):
    """timm's ViT-S/16 with a one-output head; loads ``model.safetensors`` (keys under ``vit.``) strictly."""

    def build_network(self) -> "torch.nn.Module":
        return build_network(int(self.spec.pixels.image_size), **{k: int(self.options[k]) for k in OPTIONS})

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return self.net(features["pixels"])[:, 0]

    def convert_checkpoint(self, state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        return {f"net.{k}": v for k, v in strip_prefix(strip_prefix(state), "vit.").items()}

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        raise SidbenchError(f"{self.name}: Community Forensics' training (train.py, 2.7M images of 4803 generators) is not "
                            f"ported to sidbench; attach the official weights: --detectors {self.name}@official "
                            "(or @model.safetensors)")


def build_network(image_size: int = 384, embed_dim: int = 384, depth: int = 12, num_heads: int = 6) -> "torch.nn.Module":
    """timm's ``vit_small_patch16_<size>`` (its own configuration, never fetched) with ``head = Linear(384, 1)``."""
    import timm

    return timm.create_model(f"vit_small_patch16_{image_size}", pretrained=False, num_classes=1, embed_dim=embed_dim,
                             depth=depth, num_heads=num_heads)


class ResizeCenterCrop:
    """``Resize(440)`` + ``CenterCrop(384)`` (256 / 224 for the 224 model) on the PIL image, as torchvision does
    them (short side, bilinear with PIL's antialiasing; crop offsets ``int(round(...))``), then normalised."""

    def __init__(self, info: PixelInput):
        self.crop, self.mean, self.std = int(info.image_size), tuple(info.mean), tuple(info.std)
        if self.crop not in RESIZE:
            raise SidbenchError(f"commfor_resize_crop: no published resize for a {self.crop}-pixel crop (384 or 224)")
        self.resize = RESIZE[self.crop]

    def __call__(self, item: ImageInput) -> "torch.Tensor":
        import torchvision.transforms.functional as TF

        from sidbench.data.images import check_short_side_resize
        from sidbench.data.pil_decode import pil_convert_rgb

        img = pil_convert_rgb(item)
        check_short_side_resize(*img.size, self.resize)
        img = TF.resize(img, self.resize, interpolation=TF.InterpolationMode.BILINEAR)
        return TF.normalize(TF.to_tensor(TF.center_crop(img, [self.crop, self.crop])), self.mean, self.std)


PROTOCOL = ProtocolSpec(
    "commfor_resize_crop", ResizeCenterCrop,
    "Community Forensics' test transform: short side resized to 440 (256 for the 224 model; bilinear, antialiased), "
    "centre crop 384 (224); decoded as PIL's convert('RGB') (no EXIF rotation)", reads_file=True)

NOTES = (
    "Read from models.py, dataloader.py (get_transform, test mode) and eval.py at commit 5ec815f. The official loader "
    "(PyTorchModelHubMixin.from_pretrained) does not load strictly; sidbench does, so a file missing a tensor is refused "
    "instead of scoring with random weights. Decoding: PIL's convert('RGB') as dataloader.py does (no EXIF rotation; "
    "perturbed images use sidbench's upright decode). The released files hold the whole fine-tuned ViT (no base model is "
    "fetched). Batched like any fixed-size protocol; fp32 as eval.py runs.")


def _spec(size: int, default: bool) -> DetectorSpec:
    repo, revision, sha256 = REVISIONS[size]
    return DetectorSpec(
        name=f"commfor.{size}",
        factory=CommunityForensics,
        preprocess="commfor_resize_crop",
        pixels=PixelInput(image_size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD, protocols=(PROTOCOL,)),
        default=default,
        needs_fit=True,  # scores only with weights attached (fit explains why it cannot train)
        quickstart=False,  # the weights cannot be fetched offline; training is not ported
        options=OPTIONS,
        description=f"Community Forensics ViT-S/16 at {size} px: resize {RESIZE[size]}, centre crop {size}; "
                    f"official: commfor.{size}@official ({repo} model.safetensors)",
        training_data=("community-forensics (2.7M images from 4803 generators, and real images)",),
        official_weights=OfficialWeights(
            url=f"https://huggingface.co/{repo}/resolve/{revision}/model.safetensors", filename="model.safetensors",
            sha256=sha256, revision=revision, repository=REPOSITORY,
            note=f"Hugging Face {repo} (linked from the README); the SHA-256 is the file's Git LFS object id at that "
                 "revision; no licence on the model card"),
        paper=PAPER,
        license=LICENSE,
        repository=REPOSITORY,
        published={"paper numbers": "not copied here: the paper was not at hand offline when this card was written"},
        notes=NOTES,
    )


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [_spec(384, default=True), _spec(224, default=False)]
