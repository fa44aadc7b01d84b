"""The backbone contract: one forward pass emits every named feature a detector may ask for."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

IMAGE_FEATURES = ("cls_ln2", "cls_blocks", "cls_final", "image_embed")


@dataclass(frozen=True)
class BackboneInfo:
    """Shapes and preprocessing of a backbone, known without loading its weights."""

    name: str
    n_blocks: int
    width: int
    embed_dim: int
    image_size: int = 224
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD

    def feature_shape(self, name: str) -> tuple[int, ...]:
        return {
            "cls_ln2": (self.n_blocks, self.width),
            "cls_blocks": (self.n_blocks, self.width),
            "cls_final": (self.width,),
            "image_embed": (self.embed_dim,),
        }[name]


class Backbone:
    """A frozen feature extractor. Subclasses implement :meth:`_forward` and :meth:`text_embed`."""

    info: BackboneInfo
    identity: str  # architecture + weights hash: part of every feature-cache key
    feature_names: tuple[str, ...] = IMAGE_FEATURES

    def __init__(self) -> None:
        self.device = "cpu"
        self.autocast = False
        self.compiled = False  # part of the feature-cache key: compiled kernels round differently

    def to(self, device: str | "torch.device", autocast: bool | None = None) -> "Backbone":
        """Move to ``device``; bf16 autocast defaults to on for CUDA, off elsewhere."""
        self.device = str(device)
        self.autocast = self.device.startswith("cuda") if autocast is None else autocast
        self._move(self.device)
        return self

    def compile(self) -> "Backbone":
        """``torch.compile`` the image tower (worth it on GPU: about 1.4x on ViT-L/14 in bf16)."""
        self._compile()
        self.compiled = True
        return self

    def features(self, images: "torch.Tensor", names: Iterable[str]) -> dict[str, "torch.Tensor"]:
        """Run the backbone once on ``images`` [B, 3, H, W] and return the named features as fp32.

        On CUDA out-of-memory the batch is split in halves and retried.
        """
        import torch

        names = tuple(names)
        unknown = [n for n in names if n not in self.feature_names]
        if unknown:
            from ..errors import SidbenchError

            raise SidbenchError(
                f"backbone {self.info.name!r} has no feature(s) {unknown}; it emits {list(self.feature_names)}"
            )
        try:
            # no_grad rather than inference_mode: the outputs may feed a trainable head (RINE's pixel path)
            with torch.no_grad(), torch.autocast(
                device_type=self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.autocast
            ):
                out = self._forward(self._input(images), names)
            return {k: v.float() for k, v in out.items()}
        except torch.cuda.OutOfMemoryError:
            if images.shape[0] <= 1:
                raise
            torch.cuda.empty_cache()
            half = images.shape[0] // 2
            a, b = self.features(images[:half], names), self.features(images[half:], names)
            return {k: torch.cat([a[k], b[k]]) for k in a}

    def _input(self, images: "torch.Tensor") -> "torch.Tensor":
        """Non-blocking copy from (pinned) host memory; channels-last on CUDA, the layout its convolutions prefer."""
        import torch

        x = images.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.device.startswith("cuda") else x

    # -- to implement -------------------------------------------------------------
    def _forward(self, images: "torch.Tensor", names: tuple[str, ...]) -> dict[str, "torch.Tensor"]:
        raise NotImplementedError

    def _move(self, device: str) -> None:
        raise NotImplementedError

    def _compile(self) -> None:
        from ..errors import SidbenchError

        raise SidbenchError(f"backbone {self.info.name!r} does not support --compile")

    def text_embed(self, prompts: list[str]) -> "torch.Tensor":
        """Text-tower embeddings [P, E] (not normalised). Backbones without a text tower raise."""
        from ..errors import SidbenchError

        raise SidbenchError(f"backbone {self.info.name!r} has no text tower; pick a CLIP backbone")
