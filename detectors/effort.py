"""Effort: CLIP ViT-L/14 whose attention projections learn only an SVD residual, and a two-way linear head.

Yan et al., "Orthogonal Subspace Decomposition for Generalizable AI-Generated Image Detection" (Effort),
ICML 2025 (YZY-stack/Effort-AIGI-Detection; CC BY-NC 4.0). ``DeepfakeBench/training/detectors/
effort_detector.py``: ``backbone`` = ``CLIPModel.vision_model`` of ``openai/clip-vit-large-patch14`` with
every ``self_attn`` Linear (q, k, v, out) replaced by an ``SVDResidualLinear`` (r = 1023: ``weight_main``
frozen, ``U_residual``/``S_residual``/``V_residual`` trained), ``head = Linear(1024, 2)`` on the
``pooler_output``; P(fake) = softmax(...)[:, 1], so the logit is ``z[1] - z[0]``. The released files are the
detector's state dict (``backbone.*``, ``head.*``; perhaps under ``module.`` and inside ``state_dict``) with
``weight_main``, the residual factors and the unused ``U_r``/``S_r``/``V_r``; the residual is merged into
each projection's weight once, at load time (sidbench.nets.svd). Test protocol (``demo.py``): ``cv2.imread``,
BGR to RGB, ``cv2.resize`` of the whole image to 224x224 (INTER_LINEAR), ``ToTensor``, CLIP mean/std.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from sidbench.api import (CLIP_MEAN, CLIP_STD, DetectorSpec, NetworkDetector, OfficialWeights, PixelInput,
                          ProtocolSpec, SidbenchError, WeightsError, hookimpl, note, strip_prefix)

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData, ImageInput

PAPER = ("Yan et al., Orthogonal Subspace Decomposition for Generalizable AI-Generated Image Detection (Effort), "
         "ICML 2025 (arXiv 2411.15633)")
LICENSE = "CC BY-NC 4.0 (YZY-stack/Effort-AIGI-Detection README badge; non-commercial use only)"
REPOSITORY = "https://github.com/YZY-stack/Effort-AIGI-Detection"
FAKE = 1  # softmax(pred)[:, 1] is the fake probability (EffortDetector.forward)
SHAPE_OPTIONS = {"width": 1024, "layers": 24, "heads": 16, "patch_size": 14}


class OpenCVResize:
    """``cv2.resize`` of the whole OpenCV-decoded RGB image to size x size (``interpolation``), then
    ``ToTensor`` and ``Normalize``: ``demo.py``'s ``preprocess_face`` (INTER_LINEAR) or DeepfakeBench's
    ``load_rgb`` (INTER_CUBIC)."""

    interpolation = "linear"

    def __init__(self, info: PixelInput):
        self.size, self.mean, self.std = info.image_size, tuple(info.mean), tuple(info.std)

    def __call__(self, item: "ImageInput") -> "torch.Tensor":
        import cv2

        from sidbench.data.opencv import decode_rgb, to_normalised_tensor

        flag = cv2.INTER_LINEAR if self.interpolation == "linear" else cv2.INTER_CUBIC
        rgb = cv2.resize(decode_rgb(item), (self.size, self.size), interpolation=flag)
        return to_normalised_tensor(rgb, self.mean, self.std)


class OpenCVResizeCubic(OpenCVResize):
    interpolation = "cubic"


PROTOCOLS = (
    ProtocolSpec("opencv_resize", OpenCVResize, "OpenCV decode, whole image cv2.resize to 224x224 (INTER_LINEAR): "
                 "Effort's demo.py", reads_file=True),
    ProtocolSpec("opencv_resize_cubic", OpenCVResizeCubic, "OpenCV decode, whole image cv2.resize to 224x224 "
                 "(INTER_CUBIC): DeepfakeBench's test loader", reads_file=True),
)


class Effort(NetworkDetector):
    """CLIP vision tower (SVD residual merged) -> pooler output -> ``head``: logit ``z[fake] - z[real]``."""

    def build_network(self) -> "torch.nn.Module":
        return build_network(self.options)

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return forward(self.net, features["pixels"])

    def convert_checkpoint(self, state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """Effort's file (``module.`` stripped, SVD residuals merged, an old ``position_ids`` buffer dropped)."""
        from sidbench.nets.clip_vision import drop_position_ids
        from sidbench.nets.svd import merge_svd_residual

        try:
            merged = merge_svd_residual(strip_prefix(state))
        except (KeyError, ValueError) as exc:
            raise WeightsError(f"{self.name}: not an Effort checkpoint ({exc.args[0]})") from None
        return {f"net.{k}": v for k, v in drop_position_ids(merged).items()}

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        raise SidbenchError(f"{self.name}: sidbench does not reproduce Effort's training (DeepfakeBench); attach "
                            f"its released weights: --detectors {self.name}@official (or @FILE.pth)")


def build_network(options: dict[str, Any]) -> "torch.nn.Module":
    """``backbone`` (CLIP vision transformer, Hugging Face names) and ``head`` (Linear(width, 2))."""
    from torch import nn

    from sidbench.nets.clip_vision import build_vision_transformer, vision_config

    cfg = vision_config(**{k: options[k] for k in SHAPE_OPTIONS})
    net = nn.Module()
    net.backbone = build_vision_transformer(cfg)
    net.head = nn.Linear(cfg.width, 2)
    return net


def forward(net: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    z = net.head(net.backbone(x)[1])
    return z[:, FAKE] - z[:, 1 - FAKE]


def _spec(variant: str, drive_id: str, trained: str, default: bool) -> DetectorSpec:
    return DetectorSpec(
        name=f"effort.{variant}",
        factory=Effort,
        preprocess="opencv_resize",
        pixels=PixelInput(image_size=224, mean=CLIP_MEAN, std=CLIP_STD, protocols=PROTOCOLS),
        needs_fit=True,
        default=default,
        quickstart=False,
        description=f"Effort (ICML 2025): CLIP ViT-L/14 with SVD-residual attention + Linear(1024, 2), the checkpoint "
                    f"released for {trained}; demo.py protocol (OpenCV resize to 224x224); official: "
                    f"effort.{variant}@official",
        options=dict(SHAPE_OPTIONS),
        training_data=("stable_diffusion_v_1_4",),
        official_weights=OfficialWeights(
            url=f"https://drive.google.com/file/d/{drive_id}/view?usp=sharing", filename=f"effort_{variant}_sdv14.pth",
            repository=REPOSITORY,
            note=f"the README's Google Drive link for {trained}; no checksum published (the Drive file's own name "
                 "is not given in the repository: the cache keeps it under this name)"),
        paper=PAPER,
        license=LICENSE,
        repository=REPOSITORY,
        published={"GenImage (trained on SD v1.4), mean acc": "91.1"} if variant == "genimage" else {},
        notes="Written from effort_detector.py and demo.py. Fake index 1 (softmax(pred)[:, 1]). The file loads "
              "strictly: every key of the detector's state dict must be present and nothing else (U_r/S_r/V_r "
              "and an old embeddings.position_ids buffer are recognised and unused; a 'module.' prefix and a "
              "{'state_dict': ...} wrapper are unwrapped); demo.py itself loads with strict=False, which would "
              "hide a wrong file. The SVD residual is merged into each projection's weight once (the same "
              "function as SVDResidualLinear). The default protocol is demo.py's, with OpenCV itself (its "
              "fixed-point bilinear resize; a float resize moves logits by ~2e-2); DeepfakeBench's INTER_CUBIC "
              "loader is --protocol opencv_resize_cubic. A perturbed image is resized from its PIL pixels "
              "(no file to decode). sidbench batches images (demo.py runs one at a time) and runs fp32 as "
              "demo.py does. The published GenImage mean is the paper's, not reproduced here; users report "
              "(issue #14) low GenImage accuracy with the released SD v1.4 file in the UnivFD codebase.",
    )


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [
        _spec("genimage", "1UXf1hC9FC1yV93uKwXSkdtepsgpIAU9d", "GenImage (SD v1.4)", default=True),
        _spec("chameleon", "1GlJ1y4xmTdqV0FfIcyBwNNU6cQird9DR", "the Chameleon protocol (trained on SD v1.4)",
              default=False),
    ]
