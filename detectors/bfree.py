"""B-Free: a fine-tuned DINOv2 ViT-B/14 with registers, trained bias-free, on five 504-pixel token-grid crops.

Guillaro, Zingarini, Cozzolino & Verdoliva, "A Bias-Free Training Paradigm for More General AI-generated Image
Detection", CVPR 2025 (grip-unina/B-Free; GRIP-UNINA licence, informational and nonprofit use only).

Read from ``code/networks/__init__.py`` and ``code/networks/wrapper5crops.py``: the arch
``timm_c5i504_vit_base_patch14_reg4_dinov2.lvd142m`` is timm's ``vit_base_patch14_reg4_dinov2`` with one output,
set to 504 pixels (a 36x36 position embedding, which the released file holds), wrapped by ``Wrapper5crops``.
The wrapper runs the patch embedding (a 14x14, stride-14 convolution) on the whole image, dropping the pixels
past the last full patch; when the token grid is under 36 in either dimension it tiles the grid periodically in
both dimensions and cuts it to 36x36 (a side over 36 is cut too); it takes five 36x36 token crops - the centre
(offset ``(grid - 36) // 2``), then top-left, bottom-left, bottom-right, top-right - runs the ViT on each and
averages the five raw logits. ``main_bfree.py`` feeds the whole image (ToTensor + ImageNet normalisation, the
``norm_type: resnet`` of the release's ``config.yaml``; no resize, no crop) one image at a time.

Because the patch embedding is a non-overlapping stride-14 convolution, a crop of the token grid equals the
embedding of the pixel crop at 14 times its token offset, and tiling the token grid equals tiling the image
cut to whole patches. sidbench's protocol ``bfree_5crops`` therefore produces the five 504x504 pixel crops
(5 views, averaged by the engine), and the network is timm's ViT at 504 pixels with the released weights.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from sidbench.api import (DetectorSpec, ImageInput, NetworkDetector, OfficialWeights, PixelInput, ProtocolSpec,
                          SidbenchError, hookimpl, note)

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData

PAPER = ("Guillaro et al., A Bias-Free Training Paradigm for More General AI-generated Image Detection, CVPR 2025 "
         "(arXiv 2412.17671)")
LICENSE = ("GRIP-UNINA licence: informational and nonprofit use only, no commercial use "
           "(grip-unina/B-Free LICENSE.txt; the weights are distributed under it)")
REPOSITORY = "https://github.com/grip-unina/B-Free"
WEIGHTS_ZIP = "https://www.grip.unina.it/download/prog/B-Free/weights/BFREE_dino2reg4.zip"
PATCH = 14
CROP = 504  # 36 x 36 tokens
ARCH = "vit_base_patch14_reg4_dinov2"
OPTIONS = {"embed_dim": 768, "depth": 12, "num_heads": 12}  # shape the network (tests use tiny ones)


class BFree(NetworkDetector):
    """timm's ``vit_base_patch14_reg4_dinov2`` at 504 px, one logit per crop; the engine averages the five
    crops of :class:`FiveTokenCrops`. Loads the released ``model_epoch_best.pth`` (``{'model': sd}``, timm names)."""

    def build_network(self) -> "torch.nn.Module":
        return build_network(**{k: int(self.options[k]) for k in OPTIONS})

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return self.net(features["pixels"])[:, 0]

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        raise SidbenchError(f"{self.name}: B-Free publishes no training code to reproduce; attach the official "
                            f"weights instead: --detectors {self.name}@official (or @model_epoch_best.pth)")


def build_network(embed_dim: int = 768, depth: int = 12, num_heads: int = 12) -> "torch.nn.Module":
    """timm's ViT-B/14 with 4 registers (built from timm's own configuration, never fetched), 504 px, 1 output."""
    import timm

    return timm.create_model(ARCH, pretrained=False, num_classes=1, img_size=CROP, embed_dim=embed_dim, depth=depth,
                             num_heads=num_heads)


class FiveTokenCrops:
    """B-Free's five crops as pixels: [5, 3, 504, 504] (centre, top-left, bottom-left, bottom-right, top-right),
    normalised, from the image cut to whole 14-pixel patches and tiled when under 36 patches a side."""

    def __init__(self, info: PixelInput):
        self.size, self.mean, self.std = int(info.image_size), tuple(info.mean), tuple(info.std)

    def __call__(self, item: ImageInput) -> "torch.Tensor":
        import torch
        import torchvision.transforms.functional as TF

        from sidbench.data.images import UnreadableImage
        from sidbench.data.pil_decode import pil_convert_rgb

        img, s, n = pil_convert_rgb(item), self.size, self.size // PATCH
        rows, cols = img.size[1] // PATCH, img.size[0] // PATCH
        if rows == 0 or cols == 0:
            raise UnreadableImage(f"smaller than one {PATCH}x{PATCH} patch ({img.size[0]}x{img.size[1]}), which B-Free "
                                  "cannot embed")
        if rows < n or cols < n:  # tile the whole-patch image periodically, then cut to 36 x 36 patches
            x = TF.to_tensor(img.crop((0, 0, cols * PATCH, rows * PATCH)))
            x = x.repeat(1, -(-n // rows), -(-n // cols))[:, :s, :s]
            crops = [x] * 5
        else:
            starts = (((rows - n) // 2, (cols - n) // 2), (0, 0), (rows - n, 0), (rows - n, cols - n), (0, cols - n))
            crops = [TF.to_tensor(img.crop((c * PATCH, r * PATCH, c * PATCH + s, r * PATCH + s))) for r, c in starts]
        return TF.normalize(torch.stack(crops), self.mean, self.std)


PROTOCOL = ProtocolSpec(
    "bfree_5crops", FiveTokenCrops,
    "B-Free's wrapper: no resize; five 504-px crops on the 14-px token grid (centre, then the corners), grids under "
    "36 tokens tiled; mean of the 5 logits; decoded as PIL's convert('RGB') (no EXIF rotation)", views=5,
    variable_size=True, reads_file=True)

NOTES = (
    "Read from code/networks/wrapper5crops.py and main_bfree.py at commit c6a9f89. The official wrapper crops the "
    "token grid after the patch embedding; sidbench crops the pixels at 14-pixel multiples instead, which gives the "
    "same tokens (the embedding is a non-overlapping stride-14 convolution) and lets images of any size batch "
    "together: every image becomes five 504x504 views, at most max_batch_pixels per batch (the official script runs "
    "one image at a time). Images under 14 pixels a side, which the official code cannot embed, are skipped. "
    "Decoding: Image.open(path).convert('RGB') as main_bfree.py does (no EXIF rotation; perturbed images use "
    "sidbench's upright decode). Normalisation: ImageNet mean/std (norm_type 'resnet' in the release's "
    "config.yaml). The released file holds "
    "every weight (a full fine-tune; no base model is fetched). Runs in fp32 as main_bfree.py does.")


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [DetectorSpec(
        name="bfree",
        factory=BFree,
        preprocess="bfree_5crops",
        # 16 images (80 crops of 504 px, 1301 tokens each) per batch at most
        pixels=PixelInput(image_size=CROP, max_batch_pixels=16 * 5 * CROP * CROP, protocols=(PROTOCOL,)),
        default=True,
        needs_fit=True,  # scores only with weights attached (fit explains why it cannot train)
        quickstart=False,  # the weights cannot be fetched offline, and there is no training code
        options=OPTIONS,
        description="B-Free (DINOv2 ViT-B/14 + 4 registers, fine-tuned bias-free); five 504-px token-grid crops, "
                    "no resize; official: bfree@official (BFREE_dino2reg4.zip, non-commercial licence)",
        training_data=("coco (51k reals)", "stable-diffusion-2.1 self-conditioned and inpainted COCO (309k fakes)"),
        official_weights=OfficialWeights(
            url=WEIGHTS_ZIP, filename="model_epoch_best.pth", member="BFREE_dino2reg4/model_epoch_best.pth",
            md5="f3f53fa647848b16cf81c913f148a198", repository=REPOSITORY,
            note="the lab's server; the MD5 is the zip's, published in code/README.md; non-commercial licence"),
        paper=PAPER,
        license=LICENSE,
        repository=REPOSITORY,
        published={
            "demo img0000.png (real), raw logit": "-5.937 (code/demo_images/results.csv)",
            "demo img0001.png (real), raw logit": "-4.442",
            "demo img0002.png (fake), raw logit": "4.431",
            "demo img0003.png (fake), raw logit": "3.850",
        },
        notes=NOTES,
    )]
