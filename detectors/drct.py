"""DRCT: detectors trained with diffusion-reconstruction contrastive training, ConvNeXt-Base and CLIP ViT-L/14.

Chen, Zeng, Yang & Yang, "DRCT: Diffusion Reconstruction Contrastive Training towards Universal Detection of
Diffusion Generated Images", ICML 2024 (beibuwandeluori/DRCT; no licence file). Its test scripts run
``train.py --is_test --is_crop --embedding_size 1024``, i.e. ``network/models.py``'s ``ContrastiveModels``:
``model`` = the backbone with a 1024-d output, ``fc = Linear(1024, 2)`` on it; the score is
``1 - softmax[:, 0]``, so the logit is ``z[1] - z[0]``.

- ``drct.convnext``: timm ``convnext_base_in22k`` fine-tuned, its ``head.fc`` replaced by Linear(1024, 1024).
  Keys ``model.*`` (timm ConvNeXt names) and ``fc.*``.
- ``drct.clip``: OpenAI ``clip.load('ViT-L/14')`` frozen (``CLIPModelV2``: ``model.model`` = the whole CLIP,
  ``model.fc`` = Linear(768, 1024) on ``encode_image``), then ``fc``; no nonlinearity between the two linears.
  The file is ``torch.save(model.state_dict())``, so it holds the frozen CLIP too (text tower included,
  recognised and unused); the visual tower is converted to Hugging Face names (sidbench.nets.clip_vision).

Test protocol (``data/transform.py`` ``create_val_transforms(224, is_crop=True)`` after ``cv2.imread`` and
BGR to RGB): ``PadIfNeeded(224, 224)`` with zeros (centred, the extra pixel at the bottom/right), ``CenterCrop``
224 (offsets floored), ``Normalize`` with ImageNet mean/std, for both backbones.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from sidbench.api import (DetectorSpec, IMAGENET_MEAN, IMAGENET_STD, NetworkDetector, OfficialWeights, PixelInput,
                          ProtocolSpec, SidbenchError, WeightsError, hookimpl, note, strip_prefix)

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData, ImageInput

PAPER = ("Chen et al., DRCT: Diffusion Reconstruction Contrastive Training towards Universal Detection of Diffusion "
         "Generated Images, ICML 2024 (PMLR 235:7621-7639)")
LICENSE = ("no licence file in beibuwandeluori/DRCT (all rights reserved by default); bases: ConvNeXt (timm, "
           "Apache-2.0), OpenAI CLIP ViT-L/14 (MIT)")
REPOSITORY = "https://github.com/beibuwandeluori/DRCT"
# the README's "pretrained.zip" on ModelScope (dataset BokingChen/DRCT-2M), through ModelScope's file API
RELEASE = "https://modelscope.cn/api/v1/datasets/BokingChen/DRCT-2M/repo?Revision=master&FilePath=pretrained.zip"
FAKE = 1  # outputs.append(1 - softmax[:, 0]): class 0 is real
# ConvNeXt-Base: widths 128, 256, 512, 1024 (doubling from ``width``), depths 3, 3, 27, 3 (``depth`` except stage 3)
CONVNEXT_OPTIONS = {"width": 128, "depth": 3, "stage3_depth": 27, "embedding_size": 1024}
CLIP_OPTIONS = {"width": 1024, "layers": 24, "heads": 16, "patch_size": 14, "projection_dim": 768,
                "embedding_size": 1024}
OPENAI_TEXT = ("positional_embedding", "text_projection", "logit_scale", "token_embedding.", "transformer.",
               "ln_final.")  # the text tower's entries of an OpenAI CLIP state dict


class PadCenterCrop:
    """DRCT's test view: OpenCV decode, zero padding to at least size x size (centred, floor before), centre
    crop (offsets floored, as albumentations), ``Normalize(mean, std)``."""

    def __init__(self, info: PixelInput):
        self.size, self.mean, self.std = info.image_size, tuple(info.mean), tuple(info.std)

    def __call__(self, item: "ImageInput") -> "torch.Tensor":
        import numpy as np

        from sidbench.data.opencv import decode_rgb, to_normalised_tensor

        rgb, s = decode_rgb(item), self.size
        h, w = rgb.shape[:2]
        if h < s or w < s:
            top, left = max(s - h, 0) // 2, max(s - w, 0) // 2
            padded = np.zeros((max(h, s), max(w, s), 3), dtype=np.uint8)
            padded[top:top + h, left:left + w] = rgb
            rgb, (h, w) = padded, padded.shape[:2]
        y, x = (h - s) // 2, (w - s) // 2
        return to_normalised_tensor(np.ascontiguousarray(rgb[y:y + s, x:x + s]), self.mean, self.std)


PROTOCOLS = (ProtocolSpec("opencv_pad_center_crop", PadCenterCrop, "OpenCV decode, zero padding to 224, centre crop "
                          "224, offsets floored (DRCT's create_val_transforms with is_crop)", reads_file=True),)


class DRCTConvNeXt(NetworkDetector):
    """timm ConvNeXt (``model``, 1024-d head) then ``fc``: logit ``z[fake] - z[real]``."""

    def build_network(self) -> "torch.nn.Module":
        from torch import nn
        from timm.models.convnext import ConvNeXt

        o = self.options
        depth, width = int(o["depth"]), int(o["width"])
        net = nn.Module()
        net.model = ConvNeXt(depths=(depth, depth, int(o["stage3_depth"]), depth),
                             dims=tuple(width * 2 ** i for i in range(4)), num_classes=int(o["embedding_size"]))
        net.fc = nn.Linear(int(o["embedding_size"]), 2)
        return net

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        z = self.net.fc(self.net.model(features["pixels"]))
        return z[:, FAKE] - z[:, 1 - FAKE]

    def load(self, path: str) -> "DRCTConvNeXt":
        return super().load(release_member(path, self.spec))

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        raise _no_fit(self.name)


class DRCTCLIP(NetworkDetector):
    """Frozen CLIP image embedding -> ``embed`` (official ``model.fc``) -> ``fc``; no nonlinearity between."""

    def build_network(self) -> "torch.nn.Module":
        from torch import nn

        from sidbench.nets.clip_vision import build_image_tower, vision_config

        o = self.options
        cfg = vision_config(**{k: o[k] for k in CLIP_OPTIONS if k != "embedding_size"})
        net = nn.Module()
        net.clip = build_image_tower(cfg)
        net.embed = nn.Linear(cfg.projection_dim, int(o["embedding_size"]))
        net.fc = nn.Linear(int(o["embedding_size"]), 2)
        return net

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        z = self.net.fc(self.net.embed(self.net.clip(features["pixels"])))
        return z[:, FAKE] - z[:, 1 - FAKE]

    def convert_checkpoint(self, state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """``model.model.visual.*`` -> ``clip.*`` (Hugging Face names), ``model.fc`` -> ``embed``, ``fc`` -> ``fc``;
        the text tower's entries are dropped, anything else is an error."""
        from sidbench.nets.clip_vision import openai_visual_to_hf

        state = strip_prefix(state)
        visual, out, unknown = {}, {}, []
        for key, value in state.items():
            if key.startswith("model.model.visual."):
                visual[key[len("model.model.visual."):]] = value
            elif key.startswith("model.fc."):
                out["net.embed." + key[len("model.fc."):]] = value
            elif key.startswith("fc."):
                out["net." + key] = value
            elif not (key.startswith("model.model.") and key[len("model.model."):].startswith(OPENAI_TEXT)):
                unknown.append(key)
        if not visual:
            raise WeightsError(f"{self.name}: the checkpoint holds no CLIP visual tower (model.model.visual.*); "
                               "DRCT's released files hold the whole frozen CLIP: use the file as published")
        if unknown:
            raise WeightsError(f"{self.name}: unexpected entries in the checkpoint: {', '.join(sorted(unknown)[:3])}")
        try:
            out.update({f"net.clip.{k}": v for k, v in openai_visual_to_hf(visual).items()})
        except KeyError as exc:
            raise WeightsError(f"{self.name}: unexpected CLIP visual entry model.model.visual.{exc.args[0]}") from None
        return out

    def load(self, path: str) -> "DRCTCLIP":
        return super().load(release_member(path, self.spec))

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        raise _no_fit(self.name)


def release_member(path: str, spec: DetectorSpec) -> str:
    """The ``.pth``, or ``pretrained.zip`` as downloaded: this variant's member, unpacked into the cache."""
    from sidbench.nets.release import checkpoint_file

    return str(checkpoint_file(path, spec.official_weights.member if spec.official_weights else None))


def _no_fit(name: str) -> SidbenchError:
    return SidbenchError(f"{name}: sidbench does not reproduce DRCT's contrastive training (it needs diffusion "
                         f"reconstructions of the training set); attach the released weights: --detectors "
                         f"{name}@official (or @FILE.pth from pretrained.zip)")


# variant -> (backbone, training set folder, DR model folder, file in the run folder)
VARIANTS = {
    "convnext": ("convnext", "DRCT-2M", "sdv14", "14_acc0.9996.pth"),
    "clip": ("clip", "DRCT-2M", "sdv14", "13_acc0.9664.pth"),
    "convnext_sdv2": ("convnext", "DRCT-2M", "sdv2", "16_acc0.9993.pth"),
    "clip_sdv2": ("clip", "DRCT-2M", "sdv2", "last_acc0.9112.pth"),
    "convnext_genimage": ("convnext", "GenImage", "sdv14", "last_acc0.9991.pth"),
    "clip_genimage": ("clip", "GenImage", "sdv14", "2_acc0.9558.pth"),
}
TRAINING = {"DRCT-2M": ("stable-diffusion-v1-4",), "GenImage": ("stable_diffusion_v_1_4",)}


def _spec(variant: str) -> DetectorSpec:
    backbone, trained_on, dr, filename = VARIANTS[variant]
    run = "convnext_base_in22k_224_drct_amp_crop" if backbone == "convnext" else "clip-ViT-L-14_224_drct_amp_crop"
    member = f"pretrained/{trained_on}/{dr}/{run}/{filename}"
    what = "ConvNeXt-Base (timm convnext_base_in22k, fine-tuned)" if backbone == "convnext" else \
        "frozen CLIP ViT-L/14 + Linear(768, 1024) + Linear(1024, 2)"
    dr_text = "SD v1.4" if dr == "sdv14" else "SD v2"
    return DetectorSpec(
        name=f"drct.{variant}",
        factory=DRCTConvNeXt if backbone == "convnext" else DRCTCLIP,
        preprocess="opencv_pad_center_crop",
        pixels=PixelInput(image_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, protocols=PROTOCOLS),
        needs_fit=True,
        default=variant == "convnext",
        quickstart=False,
        description=f"DRCT (ICML 2024): {what}, trained on {trained_on} SD v1.4 with {dr_text} reconstructions; "
                    f"pad + centre crop 224; official: drct.{variant}@official",
        options=dict(CONVNEXT_OPTIONS if backbone == "convnext" else CLIP_OPTIONS),
        training_data=TRAINING[trained_on],
        official_weights=OfficialWeights(
            url=RELEASE, filename=filename, member=member, repository=REPOSITORY,
            note=f"pretrained.zip on ModelScope (the README's link, master branch: no pinned revision); member path "
                 f"from the README's test commands (../output/{member}); no checksum published"),
        paper=PAPER,
        license=LICENSE,
        repository=REPOSITORY,
        # the README corrects the paper's BigGAN accuracy of the GenImage-trained Conv-B to 59.81%
        published={"GenImage BigGAN, acc": "59.81"} if variant == "convnext_genimage" else {},
        notes="Written from network/models.py, scripts/train.py (is_test), data/dataset.py and data/transform.py. "
              "Fake index 1 (the score is 1 - softmax[:, 0]). NAME@FILE takes the .pth or pretrained.zip as "
              "downloaded (the variant's member is unpacked into the cache). Files load strictly as "
              "torch.save(state_dict) wrote them (a 'module.' prefix is accepted). The CLIP variant's file holds "
              "the whole frozen OpenAI CLIP; its text tower is recognised and left unused, its visual tower is "
              "converted to Hugging Face names (the same function: QuickGELU, ln_post on the class token, then "
              "proj). The protocol decodes with OpenCV as the test loader does (a perturbed image uses its PIL "
              "pixels). sidbench batches images as the official loader does and runs fp32 (the official test "
              "runs without AMP). The paper's tables are images in the README and are not transcribed here (only "
              "the README's corrected BigGAN accuracy of the GenImage-trained ConvB).",
    )


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [_spec(v) for v in VARIANTS]
