"""What the engine runs once per image, protocol and perturbation: a frozen backbone (named features)
or a pixel detector's own network (its logit). Both are *sources*: they know their cache identity
and numerics without running, preprocess with their own size and normalisation, and run one batch
at a time with the same out-of-memory back-off.

A backbone source is lazy: nothing is built or loaded until an image misses the feature cache (or a
prompt misses the text-embedding cache), so a fully cached run never touches the weights.
"""
from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..api.backbone import autocast, check_precision, network_input
from ..api.errors import SidbenchError

if TYPE_CHECKING:
    import torch

    from ..api.backbone import Backbone, BackboneInfo
    from ..api.detector import Detector
    from ..api.specs import PixelInput
    from ..registry.plugins import Plugins
    from .cache import FeatureCache

LOGIT = "logit"  # the one output of a pixel detector's source


def numerics(device: str, precision: str, compiled: bool, batch_size: int) -> str:
    """What, besides the input, fixes a network's outputs bit for bit: e.g. ``cuda-fp16-eager-b64``."""
    kind = str(device).split(":")[0]
    text = f"{kind}-{precision}-{'compiled' if compiled else 'eager'}-b{batch_size}"
    if kind == "cpu":  # CPU kernels split reductions by thread count, which changes the low bits
        import torch

        text += f"-t{torch.get_num_threads()}"
    return text


class DeviceMemoryError(SidbenchError):
    """One image of this shape does not fit in the device's memory even alone."""


def with_oom_backoff(fn: Callable[["torch.Tensor"], dict[str, "torch.Tensor"]], x: "torch.Tensor",
                     halvings: list[int] | None = None) -> dict[str, "torch.Tensor"]:
    """``fn(x)``, retried on CUDA out-of-memory in halves of the batch (concatenated again); each halving is
    counted in ``halvings[0]``. The retry runs after the ``except`` block, so the failed attempt's tensors
    (held by the exception's frames) are freed first. One row that does not fit raises DeviceMemoryError."""
    import torch

    try:
        return fn(x)
    except torch.cuda.OutOfMemoryError:
        pass  # leave the handler: the traceback and the failed attempt's activations go with it
    torch.cuda.empty_cache()
    if x.shape[0] <= 1:
        raise DeviceMemoryError(f"an input of shape {tuple(x.shape[1:])} does not fit in the GPU's memory even "
                                "alone; score such images with --device cpu")
    if halvings is not None:
        halvings[0] += 1
    half = x.shape[0] // 2
    a, b = with_oom_backoff(fn, x[:half], halvings), with_oom_backoff(fn, x[half:], halvings)
    return {k: torch.cat([a[k], b[k]]) for k in a}


class Source:
    """One network the engine feeds: ``info`` says how to preprocess for it, ``identity`` keys its cache."""

    name: str
    info: Any  # BackboneInfo or PixelInput: image_size, mean, std
    device: str
    precision: str
    compiled: bool = False
    max_batch_pixels: int | None = None  # variable-size protocols: memory bound of one batch
    halvings: list[int]  # out-of-memory halvings so far (with_oom_backoff): outputs of a halved batch differ

    @property
    def oom_halvings(self) -> list[int]:
        if not hasattr(self, "halvings"):
            self.halvings = [0]
        return self.halvings

    @property
    def identity(self) -> str:
        raise NotImplementedError

    def numerics(self, batch_size: int) -> str:
        return numerics(self.device, self.precision, self.compiled, batch_size)

    def outputs(self, pixels: "torch.Tensor", names: Sequence[str]) -> dict[str, "torch.Tensor"]:
        """One forward pass over ``pixels`` [B, 3, H, W] -> the named outputs [B, ...] (on the CPU)."""
        raise NotImplementedError


class BackboneSource(Source):
    """A frozen backbone by name, built on first use (``backbone``); text embeddings are cached too."""

    def __init__(self, name: str, plugins: "Plugins", *, weights: str | None = None, device: str = "cpu",
                 precision: str | None = None, compile: bool = False, cache: "FeatureCache | None" = None,
                 backbone: "Backbone | None" = None):
        from ..registry.lookup import describe_backbone

        self.name, self.plugins, self.weights, self.cache = name, plugins, weights, cache
        self.device, self.precision = str(device), check_precision(precision, device)
        self.compiled = compile or bool(backbone is not None and backbone.compiled)
        self._backbone = backbone
        self._identity: str | None = backbone.identity if backbone is not None else None
        self.info: "BackboneInfo" = backbone.info if backbone is not None else describe_backbone(name, plugins)

    @property
    def loaded(self) -> bool:
        return self._backbone is not None

    @property
    def backbone(self) -> "Backbone":
        """The live backbone (built and moved to the device on first access)."""
        if self._backbone is None:
            from ..registry.lookup import build_backbone

            bb = build_backbone(self.name, weights=self.weights, device=self.device, plugins=self.plugins,
                                precision=self.precision)
            self._backbone = bb.compile() if self.compiled else bb
            self._identity = bb.identity
        return self._backbone

    @property
    def identity(self) -> str:
        if self._identity is None:
            from ..registry.lookup import backbone_identity

            self._identity = backbone_identity(self.name, self.weights, self.plugins) or self.backbone.identity
        return self._identity

    @property
    def has_text(self) -> bool:
        return self.backbone.has_text

    def outputs(self, pixels: "torch.Tensor", names: Sequence[str]) -> dict[str, "torch.Tensor"]:
        backbone = self.backbone
        return with_oom_backoff(lambda x: backbone.features(x, names), pixels, self.oom_halvings)

    def features(self, pixels: "torch.Tensor", names: Sequence[str]) -> dict[str, "torch.Tensor"]:
        """The backbone's features (the Backbone interface, so a source can stand in for it)."""
        return self.outputs(pixels, names)

    def text_embed(self, prompts: list[str]) -> "torch.Tensor":
        """[P, E] text embeddings, from the cache when every prompt is there (the backbone is not built)."""
        import torch

        prompts = list(prompts)
        if self.cache is None:
            return self.backbone.text_embed(prompts)
        from .cache import text_key

        num = self.numerics(1)
        keys = [text_key(self.identity, num, p) for p in prompts]
        found = self.cache.get_many(keys)
        if len(found) == len(set(keys)):
            return torch.stack([found[k] for k in keys]).float()
        out = self.backbone.text_embed(prompts).float().cpu()
        self.cache.put_many([(k, "text_embed", self.identity, row) for k, row in zip(keys, out)])
        return out

    def describe(self) -> dict[str, Any]:
        """For run.json: identity, shapes, numerics, and whether the weights had to be loaded."""
        import dataclasses

        return {"identity": self.identity, **dataclasses.asdict(self.info), "activation": self.activation,
                "precision": self.precision, "compiled": self.compiled, "loaded": self.loaded}

    @property
    def activation(self) -> str | None:
        """The backbone's activation (``quick_gelu`` for OpenAI's CLIP weights), without loading it."""
        if self._backbone is not None:
            return self._backbone.activation
        from ..registry.lookup import backbone_activation

        return backbone_activation(self.name, self.weights, self.plugins)


def as_source(obj: "Source | Backbone") -> "Source":
    """A source as is; a live :class:`~sidbench.api.Backbone` wrapped as one (scripts and tests pass backbones)."""
    if isinstance(obj, Source):
        return obj
    source = BackboneSource(obj.info.name, None, device=obj.device, backbone=obj)  # type: ignore[arg-type]
    source.precision = obj.precision  # what the live backbone really runs in
    return source


class PixelSource(Source):
    """A pixel detector's own network: ``outputs`` is ``{"logit": detector.score({"pixels": x})}``."""

    def __init__(self, det: "Detector", device: str):
        pixels: "PixelInput" = det.pixel_input
        self.det, self.name, self.info = det, det.name, pixels
        self.device = str(device)
        self.precision = check_precision(det.options.get("precision", pixels.precision), device)
        self.max_batch_pixels = pixels.max_batch_pixels
        self._identity: str | None = None

    @property
    def identity(self) -> str:
        """``detector:NAME|options|weights|code``: the weights file's SHA-256 (or a digest of the fitted state)
        and a hash of the detector's module source, so an edited plugin never gets its old logits."""
        if self._identity is None:
            from ..api.code import code_identity

            det = self.det
            if det.weights_path:
                from pathlib import Path

                from ..api.checkpoints import file_sha256

                weights = "sha256:" + file_sha256(Path(det.weights_path))[:16]
            else:
                weights = "state:" + state_digest(det)
            options = json.dumps({k: v for k, v in det.options.items() if k != "precision"}, sort_keys=True, default=str)
            opt = hashlib.sha256(options.encode()).hexdigest()[:12]
            code = code_identity(det)
            self._identity = f"detector:{det.name}|{opt}|{weights}|code:{code['version']}:{code['source_sha256']}"
        return self._identity

    def outputs(self, pixels: "torch.Tensor", names: Sequence[str] = (LOGIT,)) -> dict[str, "torch.Tensor"]:
        import torch

        det, info = self.det, self.info

        def run(x: "torch.Tensor") -> dict[str, "torch.Tensor"]:
            with torch.inference_mode(), autocast(self.device, self.precision):
                return {LOGIT: det.score({"pixels": network_input(x, info.mean, info.std, self.device)}).float()}

        return with_oom_backoff(run, pixels, self.oom_halvings)


def state_digest(det: "Detector") -> str:
    """A short SHA-256 over a detector's tensors (names, shapes and bytes)."""
    import torch

    h = hashlib.sha256()
    for k, v in sorted(det.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
