"""CLIP zero-shot (and, with a cache, Tip-Adapter): a text classifier from real/fake prompts.

Zhang et al., "Tip-Adapter: Training-free Adaption of CLIP for Few-shot Classification", ECCV 2022.
``clip_zeroshot`` is the zero-shot term alone (Tip-Adapter with alpha = 0): 100 * f W_c^T.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sidbench.detector import Detector
from sidbench.hookspecs import hookimpl
from sidbench.specs import DetectorSpec

if TYPE_CHECKING:
    import torch

    from sidbench.backbones.base import Backbone

TIP_PAPER = "Zhang et al., Tip-Adapter: Training-free Adaption of CLIP for Few-shot Classification, ECCV 2022"
# Class order everywhere: index 0 = real, 1 = fake. Each list is averaged (after normalising).
DEFAULT_PROMPTS: dict[str, tuple[str, ...]] = {
    "real": ("a real photo.", "a photo of a real image.", "a real photograph taken with a camera."),
    "fake": ("a fake photo.", "a photo of a fake image.", "a generated image.", "an AI-generated image."),
}
ZERO_SHOT_SCALE = 100.0  # the fixed CLIP logit scale of the zero-shot term


def text_classifier(backbone: "Backbone", prompts: dict[str, Any]) -> "torch.Tensor":
    """W_c [2, E]: per class, embed each template, L2-normalise, average, L2-normalise again."""
    import torch.nn.functional as F
    import torch

    rows = []
    for cls in ("real", "fake"):
        emb = F.normalize(backbone.text_embed(list(prompts[cls])), dim=-1)
        rows.append(F.normalize(emb.mean(0), dim=-1))
    return torch.stack(rows)


def zero_shot_logits(f: "torch.Tensor", weights: "torch.Tensor") -> "torch.Tensor":
    """100 * f W_c^T for L2-normalised image features f [B, E] -> [B, 2]."""
    return ZERO_SHOT_SCALE * f @ weights.t()


def binary_score(logits: "torch.Tensor") -> "torch.Tensor":
    """The harness's one logit per image: logit_fake - logit_real."""
    return logits[:, 1] - logits[:, 0]


class ClipZeroShot(Detector):
    """Zero-shot CLIP with real/fake prompts; needs no training data."""

    def __init__(self, spec: DetectorSpec, backbone: Any, **options: Any):
        super().__init__(spec, backbone, **options)
        import torch

        self._text = torch.nn.Module()
        self._text.register_buffer("weights", torch.zeros(2, backbone.embed_dim))
        self.bound = False

    def modules(self) -> dict[str, "torch.nn.Module"]:
        return {"text": self._text}

    def prompts(self) -> dict[str, Any]:
        return {"real": self.options["prompts_real"], "fake": self.options["prompts_fake"]}

    def bind(self, backbone: "Backbone") -> None:
        self._text.weights = text_classifier(backbone, self.prompts()).to(self.device)
        self.bound = True

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        import torch.nn.functional as F

        if not self.bound:
            from sidbench.errors import SidbenchError

            raise SidbenchError(f"{self.name}: call bind(backbone) first, the text classifier comes from the backbone")
        f = F.normalize(features["image_embed"].float(), dim=-1)
        return binary_score(zero_shot_logits(f, self._text.weights))


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [
        DetectorSpec(
            name="clip_zeroshot",
            factory=ClipZeroShot,
            features=("image_embed",),
            preprocess="resize_center_crop",
            description="zero-shot CLIP with real/fake prompts (Tip-Adapter with alpha = 0); no training",
            options={"prompts_real": list(DEFAULT_PROMPTS["real"]), "prompts_fake": list(DEFAULT_PROMPTS["fake"])},
            training_data=(),
            paper=TIP_PAPER,
            license="MIT (Tip-Adapter), MIT (CLIP)",
        )
    ]
