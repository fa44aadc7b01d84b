"""C2P-CLIP: CLIP ViT-L/14 whose image encoder was tuned with category common prompts, and a linear head.

Tan et al., "C2P-CLIP: Injecting Category Common Prompt in CLIP to Enhance Generalization in Deepfake
Detection", AAAI 2025 (chuangchuangtan/C2P-CLIP-DeepfakeDetection; no licence file). Its ``inference.py``
builds ``CLIPModel.from_pretrained('openai/clip-vit-large-patch14')``, deletes the text tower, adds
``fc = Linear(768, 1)`` and computes ``fc(e / ||e||)`` with ``e = visual_projection(pooler_output)``;
the release ``C2P_CLIP_release_20240901.zip`` holds one file, ``C2P_CLIP_release_20240901.pth``, the whole
state dict (``model.vision_model.*``, ``model.visual_projection.weight``, ``model.fc.*``; the LoRA of training
already merged), loaded strictly. Test protocol (``data.py``): PIL decode, ``Resize(224)`` (shorter side,
bilinear, antialiased), ``CenterCrop(224)``, CLIP mean/std. P(fake) = sigmoid(logit).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from sidbench.api import (CLIP_MEAN, CLIP_STD, DetectorSpec, NetworkDetector, OfficialWeights, PixelInput,
                          ProtocolSpec, SidbenchError, hookimpl, note, strip_prefix)

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData, ImageInput

PAPER = ("Tan et al., C2P-CLIP: Injecting Category Common Prompt in CLIP to Enhance Generalization in Deepfake "
         "Detection, AAAI 2025 (arXiv 2408.09647)")
LICENSE = ("no licence file in chuangchuangtan/C2P-CLIP-DeepfakeDetection (all rights reserved by default); "
           "base model: OpenAI CLIP ViT-L/14 (MIT)")
REPOSITORY = "https://github.com/chuangchuangtan/C2P-CLIP-DeepfakeDetection"
RELEASE = "https://www.now61.com/f/95OefW/C2P_CLIP_release_20240901.zip"  # inference.py's --model_path default
MEMBER = "C2P_CLIP_release_20240901.pth"  # the zip's one member (torch.hub unpacks it)
SHAPE_OPTIONS = {"width": 1024, "layers": 24, "heads": 16, "patch_size": 14, "projection_dim": 768}


class ResizeBilinearCenterCrop:
    """``transforms.Resize(size)`` (shorter side to ``size``, PIL bilinear, antialiased) then
    ``CenterCrop(size)``, ``ToTensor`` and ``Normalize``: C2P-CLIP's ``data.py`` on its ``pil_loader``'s image
    (``Image.open(f).convert('RGB')`` of the file: no EXIF rotation); a perturbed image as it is."""

    def __init__(self, info: PixelInput):
        self.size, self.mean, self.std = info.image_size, tuple(info.mean), tuple(info.std)

    def __call__(self, item: "ImageInput") -> "torch.Tensor":
        import torchvision.transforms.functional as TF

        from sidbench.data.images import check_short_side_resize
        from sidbench.data.pil_decode import pil_convert_rgb

        img = pil_convert_rgb(item)  # decoded again the plain-PIL way only where that differs (EXIF, modes)
        check_short_side_resize(*img.size, self.size)  # a thin strip would become huge: refused as unreadable
        img = TF.resize(img, self.size, interpolation=TF.InterpolationMode.BILINEAR)
        img = TF.center_crop(img, [self.size, self.size])
        return TF.normalize(TF.to_tensor(img), self.mean, self.std)


PROTOCOLS = (ProtocolSpec("resize_bilinear_center_crop", ResizeBilinearCenterCrop,
                          "PIL decode (no EXIF rotation), shorter side resized to 224 (bilinear, antialiased), "
                          "centre crop 224 (C2P-CLIP's data.py)", reads_file=True),)


class C2PCLIP(NetworkDetector):
    """CLIP image embedding, L2-normalised, through ``fc``: one logit per image."""

    def build_network(self) -> "torch.nn.Module":
        return build_network(self.options)

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return forward(self.net, features["pixels"])

    def convert_checkpoint(self, state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        from sidbench.nets.clip_vision import drop_position_ids

        return {f"net.{k}": v for k, v in drop_position_ids(strip_prefix(state)).items()}

    def load(self, path: str) -> "C2PCLIP":
        """The ``.pth``, or the release zip as downloaded (its member is unpacked into the cache)."""
        from sidbench.nets.release import checkpoint_file

        return super().load(str(checkpoint_file(path, MEMBER)))

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        raise SidbenchError(f"{self.name}: C2P-CLIP publishes no training code; attach its released weights: "
                            f"--detectors {self.name}@official (or @C2P_CLIP_release_20240901.zip)")


def build_network(options: dict[str, Any]) -> "torch.nn.Module":
    """``model.vision_model`` / ``model.visual_projection`` / ``model.fc``, the names of ``inference.py``'s
    ``C2P_CLIP`` module (a CLIPModel without its text tower)."""
    from torch import nn

    from sidbench.nets.clip_vision import build_image_tower, vision_config

    cfg = vision_config(**{k: options[k] for k in SHAPE_OPTIONS})
    net = nn.Module()
    net.model = build_image_tower(cfg)
    net.model.fc = nn.Linear(cfg.projection_dim, 1)
    return net


def forward(net: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    """Logits [B]: ``fc(e / ||e||_2)``, ``e`` the projected pooler output."""
    e = net.model(x)
    return net.model.fc(e / e.norm(p=2, dim=-1, keepdim=True)).squeeze(1)


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [DetectorSpec(
        name="c2p_clip",
        factory=C2PCLIP,
        preprocess="resize_bilinear_center_crop",
        pixels=PixelInput(image_size=224, mean=CLIP_MEAN, std=CLIP_STD, protocols=PROTOCOLS),
        needs_fit=True,
        quickstart=False,
        description="C2P-CLIP (AAAI 2025): tuned CLIP ViT-L/14 image encoder + Linear(768, 1) on the normalised "
                    "embedding, ProGAN 4-class training; resize 224 + centre crop; official: c2p_clip@official",
        options=dict(SHAPE_OPTIONS),
        training_data=("progan",),
        official_weights=OfficialWeights(
            url=RELEASE, filename=MEMBER, member=MEMBER,
            repository=REPOSITORY,
            note="the zip inference.py downloads (torch.hub.load_state_dict_from_url unpacks its single member); "
                 "no checksum published"),
        paper=PAPER,
        license=LICENSE,
        repository=REPOSITORY,
        published={"UniversalFakeDetect (ForenSynths + UFD diffusion sets), mean acc": "93.79",
                   "UniversalFakeDetect, mean AP": "98.66"},
        notes="Written from inference.py and data.py. c2p_clip@FILE takes the .pth or the release zip as "
              "downloaded. The image is decoded from the file as pil_loader does (no "
              "EXIF rotation, unlike sidbench's own decode). The release file loads strictly as published (a "
              "'module.' prefix and an 'embeddings.position_ids' buffer of older transformers are accepted). "
              "sidbench batches images (the official loader does too, 64 a batch) and runs fp32 as the official "
              "script does ([precision=fp16] halves memory on GPU). The shape options (width, layers, heads, "
              "patch_size, projection_dim) default to ViT-L/14 and exist for tests. A user reports (issue #5) "
              "about 60% accuracy on the UFD diffusion sets with the released file; the published numbers are the "
              "paper's (arXiv v2), not reproduced here.",
    )]

