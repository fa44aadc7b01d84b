"""The backbone contract: one forward pass emits every named feature a detector may ask for."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

if TYPE_CHECKING:
    import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

IMAGE_FEATURES = ("cls_ln2", "cls_blocks", "cls_final", "image_embed")
PRECISIONS = ("fp32", "fp16", "bf16")
DEFAULT_CUDA_PRECISION = "fp16"  # what RINE's and Tip-Adapter's reference code ran (autocast fp16)


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


def network_input(images: "torch.Tensor", mean: Sequence[float], std: Sequence[float], device: str) -> "torch.Tensor":
    """``images`` on ``device``, normalised there when they come as uint8 (the engine's loader sends uint8:
    a quarter of the bytes); float tensors (already normalised) pass unchanged. The arithmetic is
    torchvision's ``to_tensor`` + ``normalize`` (float32, /255, - mean, / std), so values are bit-identical
    to normalising on the host."""
    import torch

    x = images.to(device, non_blocking=True)
    if x.dtype != torch.uint8:
        return x
    m = torch.tensor(tuple(mean), dtype=torch.float32, device=x.device).view(-1, 1, 1)
    s = torch.tensor(tuple(std), dtype=torch.float32, device=x.device).view(-1, 1, 1)
    return x.float().div_(255).sub_(m).div_(s)


def check_precision(precision: str | None, device: str) -> str:
    """The precision a network runs in on ``device``: fp32 on CPU; ``precision`` (default fp16) on CUDA."""
    if precision is not None and precision not in PRECISIONS:
        from .errors import SidbenchError

        raise SidbenchError(f"--precision {precision}: use one of {', '.join(PRECISIONS)}")
    if not str(device).startswith("cuda"):
        return "fp32"
    return precision or DEFAULT_CUDA_PRECISION


def autocast(device: str, precision: str):
    """``torch.autocast`` for ``precision`` on ``device`` (a no-op context for fp32)."""
    import torch

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    return torch.autocast(device_type=str(device).split(":")[0], dtype=dtype or torch.float32, enabled=dtype is not None)


class Backbone:
    """A frozen feature extractor. Subclasses implement :meth:`_forward`, :meth:`_move` and, with a text
    tower, :meth:`text_embed`."""

    info: BackboneInfo
    identity: str  # architecture + weights (+ activation): part of every feature-cache key
    activation: str | None = None  # e.g. "quick_gelu" (OpenAI's CLIP) or "gelu"; None: as the architecture defines
    feature_names: tuple[str, ...] = IMAGE_FEATURES

    def __init__(self) -> None:
        self.device = "cpu"
        self.precision = "fp32"
        self.compiled = False  # part of the feature-cache key: compiled kernels round differently

    def to(self, device: "str | torch.device", precision: str | None = None) -> "Backbone":
        """Move to ``device``; on CUDA the forward runs under autocast in ``precision`` (default fp16)."""
        self.device = str(device)
        self.precision = check_precision(precision, self.device)
        self._move(self.device)
        return self

    def compile(self) -> "Backbone":
        """``torch.compile`` the image tower (worth it on GPU: about 1.4x on ViT-L/14 in half precision)."""
        self._compile()
        self.compiled = True
        return self

    def features(self, images: "torch.Tensor", names: Iterable[str]) -> dict[str, "torch.Tensor"]:
        """Run the backbone once on ``images`` [B, 3, H, W] and return the named features as fp32
        (the engine retries a batch in halves on CUDA out-of-memory)."""
        import torch

        names = tuple(names)
        unknown = [n for n in names if n not in self.feature_names]
        if unknown:
            from .errors import SidbenchError

            raise SidbenchError(
                f"backbone {self.info.name!r} has no feature(s) {unknown}; it emits {list(self.feature_names)}"
            )
        # no_grad rather than inference_mode: the outputs may feed a trainable head (RINE's pixel path)
        with torch.no_grad(), autocast(self.device, self.precision):
            out = self._forward(self._input(images), names)
        return {k: v.float() for k, v in out.items()}

    def _input(self, images: "torch.Tensor") -> "torch.Tensor":
        """Non-blocking copy from (pinned) host memory; channels-last on CUDA, the layout its convolutions prefer."""
        import torch

        x = network_input(images, self.info.mean, self.info.std, self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.device.startswith("cuda") else x

    # -- to implement -------------------------------------------------------------
    def _forward(self, images: "torch.Tensor", names: tuple[str, ...]) -> dict[str, "torch.Tensor"]:
        raise NotImplementedError

    def _move(self, device: str) -> None:
        raise NotImplementedError

    def _compile(self) -> None:
        from .errors import SidbenchError

        raise SidbenchError(f"backbone {self.info.name!r} does not support --compile")

    def text_embed(self, prompts: list[str]) -> "torch.Tensor":
        """Text-tower embeddings [P, E] (not normalised). Backbones without a text tower raise."""
        from .errors import SidbenchError

        raise SidbenchError(f"backbone {self.info.name!r} has no text tower; pick a CLIP backbone")

    @property
    def has_text(self) -> bool:
        """Whether :meth:`text_embed` is implemented (DINOv2 and other image-only backbones: False)."""
        return type(self).text_embed is not Backbone.text_embed


class BackboneFactory:
    """How a registered backbone is made, and what the registry may learn about it without making it.

    Subclass it and implement :meth:`build`; the other methods are optional answers that save loading weights
    (a fully cached run never builds the backbone when :meth:`describe` and :meth:`identity` answer). A
    ``BackboneSpec`` takes an instance (or a plain function ``build``, wrapped in :class:`FunctionFactory`).
    """

    def build(self, name: str, weights: str | None = None, device: str = "cpu") -> Backbone:
        """The backbone ``name`` with ``weights`` (a file, or None for the name's own) on ``device``."""
        raise NotImplementedError

    def describe(self, name: str) -> BackboneInfo | None:
        """Shapes and preprocessing of ``name`` without loading weights; None: build it once to find out."""
        return None

    def check(self, name: str) -> None:
        """Raise a one-line ``SidbenchError`` when ``name`` cannot be built (deeper than the spec's pattern)."""

    def identity(self, name: str, weights: str | None = None) -> str | None:
        """The identity the built backbone will report (feature-cache keys); None: build it to find out."""
        return None

    def activation(self, name: str, weights: str | None = None) -> str | None:
        """The activation it is built with (``quick_gelu``, ``gelu``), for run.json; None: the architecture's own."""
        return None

    def __call__(self, name: str, weights: str | None = None, device: str = "cpu") -> Backbone:
        return self.build(name, weights=weights, device=device)


class FunctionFactory(BackboneFactory):
    """Functions as a factory: ``build(name, weights=None, device="cpu") -> Backbone``, and optionally the
    answers ``describe(name)``, ``identity(name, weights)``, ``activation(name, weights)`` and ``check(name)``.
    A plain function alone answers nothing ahead, so the backbone is built to learn its shapes and identity."""

    def __init__(self, fn: Callable[..., Backbone], *, describe: Callable[[str], BackboneInfo] | None = None,
                 identity: Callable[[str, str | None], str] | None = None,
                 activation: Callable[[str, str | None], str] | None = None,
                 check: Callable[[str], None] | None = None) -> None:
        self.fn, self._describe, self._identity, self._activation, self._check = fn, describe, identity, activation, check

    def build(self, name: str, weights: str | None = None, device: str = "cpu") -> Backbone:
        return self.fn(name, weights=weights, device=device)

    def describe(self, name: str) -> BackboneInfo | None:
        return self._describe(name) if self._describe is not None else None

    def check(self, name: str) -> None:
        if self._check is not None:
            self._check(name)

    def identity(self, name: str, weights: str | None = None) -> str | None:
        return self._identity(name, weights) if self._identity is not None else None

    def activation(self, name: str, weights: str | None = None) -> str | None:
        return self._activation(name, weights) if self._activation is not None else None

    def __repr__(self) -> str:
        return f"FunctionFactory({getattr(self.fn, '__qualname__', self.fn)!r})"


def as_backbone_factory(obj: Any, origin: str = "") -> BackboneFactory:
    """A :class:`BackboneFactory` from what a ``BackboneSpec`` holds (already resolved from ``"module:attr"``):
    an instance, a subclass (instantiated without arguments) or a plain function."""
    if isinstance(obj, BackboneFactory):
        return obj
    if isinstance(obj, type) and issubclass(obj, BackboneFactory):
        return obj()
    if callable(obj):
        return FunctionFactory(obj)
    from .errors import PluginError

    raise PluginError(f"backbone factory {obj!r}{f' ({origin})' if origin else ''} is neither a BackboneFactory "
                      "nor a function; see docs/plugins.md#backbones")
