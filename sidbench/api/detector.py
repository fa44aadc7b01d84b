"""The detector contract: named backbone features (or pixels) in, one logit per image out (higher = more fake)."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from .checkpoints import load_tensors, save_tensors, strip_prefix
from .errors import SidbenchError, WeightsError
from .names import split_options
from .specs import DetectorSpec, PixelInput

if TYPE_CHECKING:
    import torch

    from .backbone import Backbone, BackboneInfo
    from .fitting import FitData


class Detector:
    """Base class of every detector.

    Subclasses set up their torch modules in ``__init__`` (importing torch there, so that
    listing plugins stays fast), return them from :meth:`modules`, and implement
    :meth:`score`. Fittable detectors implement :meth:`fit`. A feature detector's ``score`` gets
    the named backbone features; a pixel detector's (``spec.pixels`` set) gets ``{"pixels": x}``,
    the preprocessed images [B, 3, H, W], and runs its own network (``backbone`` is then None).
    """

    def __init__(self, spec: DetectorSpec, backbone: "BackboneInfo | None", **options: Any):
        unknown = set(options) - set(spec.options) - {"preprocess"}
        if unknown:
            raise SidbenchError(
                f"detector {spec.name!r} has no option(s) {sorted(unknown)}; it takes {sorted(spec.options) or 'none'}"
            )
        self.spec = spec
        self.backbone_info = backbone
        self.options: dict[str, Any] = {**spec.options, **options}
        self.fitted = not spec.needs_fit
        self.device = "cpu"
        self.weights_path: str | None = None
        self.label: str | None = None  # e.g. "rine.progan4[tie=false]" when built with bracket options
        self.trained_on: list[str] | None = None  # generators of the data it was fitted on in this run (None: published)

    # -- what the harness reads ---------------------------------------------------
    @property
    def name(self) -> str:
        return self.label or self.spec.name

    @property
    def required_features(self) -> tuple[str, ...]:
        return tuple(self.spec.features)

    @property
    def preprocess(self) -> str:
        return self.options.get("preprocess") or self.spec.preprocess

    @property
    def input(self) -> str:
        """``"pixels"`` or ``"features"`` (see :attr:`sidbench.api.DetectorSpec.input`)."""
        return self.spec.input

    @property
    def pixel_input(self) -> "PixelInput | None":
        """How the engine preprocesses for a pixel detector: the spec's :class:`~sidbench.api.PixelInput`, with
        its ``image_size`` taken from the ``image_size`` option when the detector has one (None: a feature detector)."""
        pixels = self.spec.pixels
        if pixels is not None and "image_size" in self.options and self.options["image_size"] != pixels.image_size:
            import dataclasses

            return dataclasses.replace(pixels, image_size=int(self.options["image_size"]))
        return pixels

    def modules(self) -> dict[str, "torch.nn.Module"]:
        """The torch modules holding this detector's parameters and buffers."""
        return {}

    def bind(self, backbone: "Backbone") -> None:
        """Called once with the live backbone before scoring (e.g. to embed text prompts)."""

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        """Logits [B] for a batch of features (eval mode, no dropout)."""
        raise NotImplementedError

    def fit(self, data: "FitData", log: Callable[[str], None] = print) -> dict[str, Any]:
        """Fit on training data (features served by ``data``); return a summary for the log."""
        raise SidbenchError(f"detector {self.name!r} has nothing to fit")

    # -- state --------------------------------------------------------------------
    def to(self, device: str) -> "Detector":
        self.device = str(device)
        for m in self.modules().values():
            m.to(device)
        return self

    def eval(self) -> "Detector":
        for m in self.modules().values():
            m.eval()
        return self

    def train(self) -> "Detector":
        for m in self.modules().values():
            m.train()
        return self

    def state_dict(self) -> dict[str, "torch.Tensor"]:
        out = {}
        for prefix, module in self.modules().items():
            for k, v in module.state_dict().items():
                out[f"{prefix}.{k}"] = v
        return out

    def load_state_dict(self, state: dict[str, "torch.Tensor"]) -> None:
        for prefix, module in self.modules().items():
            sub = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
            try:
                module.load_state_dict(sub)
            except RuntimeError as exc:
                lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
                detail = "; ".join(lines[1:4]) or lines[0]  # torch lists the mismatching tensors after its header
                raise WeightsError(f"checkpoint does not fit detector {self.name!r}: {detail}") from None

    def convert_checkpoint(self, state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """Translate an official checkpoint's keys to this detector's; sidbench's own pass through."""
        return state

    def save(self, path: str) -> str:
        """Save as safetensors with the spec name, options and backbone in the metadata."""
        meta = {
            "detector": self.name,
            "options": {k: v for k, v in self.options.items() if _jsonable(v)},
            "backbone": self.backbone_info.name if self.backbone_info is not None else None,
            "extra": self.extra_metadata(),
        }
        return str(save_tensors(path, self.state_dict(), meta))

    def extra_metadata(self) -> dict[str, Any]:
        """Non-tensor state (e.g. chosen hyper-parameters) to keep in a saved checkpoint."""
        return {}

    def load_extra_metadata(self, extra: dict[str, Any]) -> None:
        """Restore what :meth:`extra_metadata` saved."""

    def load(self, path: str) -> "Detector":
        tensors, meta = load_tensors(path)
        if meta:
            if meta.get("detector") and split_options(meta["detector"])[0] != self.spec.name:
                raise WeightsError(
                    f"{path} was saved by detector {meta['detector']!r}, not {self.name!r}; "
                    f"use --detectors {meta['detector']}@{path}"
                )
            self.load_extra_metadata(meta.get("extra") or {})
            if self.input == "pixels":
                self._adopt_input(meta.get("options") or {})
            self.load_state_dict(tensors)
        else:
            self.load_state_dict(self.convert_checkpoint(tensors))
        self.fitted = True
        self.weights_path = str(path)
        return self.to(self.device).eval()

    def _adopt_input(self, saved: dict[str, Any]) -> None:
        """A pixel detector fitted under another protocol or image size scores under it again, unless the
        caller chose one (a network trained on 64 px crops is not meant for 256 px resizes)."""
        if saved.get("preprocess") and not self.options.get("preprocess"):
            self.options["preprocess"] = saved["preprocess"]
        if "image_size" in saved and "image_size" in self.spec.options and \
                self.options["image_size"] == self.spec.options["image_size"]:
            self.options["image_size"] = saved["image_size"]


class NetworkDetector(Detector):
    """A detector whose parameters are one torch module, ``self.net`` from :meth:`build_network` (a pixel
    detector's CNN, say). Its official checkpoint is that module's state dict, perhaps inside a training dump
    (``{'model': ...}``) and with DataParallel's ``module.`` prefix; both are unwrapped when it loads."""

    def __init__(self, spec: DetectorSpec, backbone: "BackboneInfo | None", **options: Any):
        super().__init__(spec, backbone, **options)
        self.net = self.build_network()

    def build_network(self) -> "torch.nn.Module":
        """The network with its official module names (torch imported inside, as everywhere in plugins)."""
        raise NotImplementedError

    def modules(self) -> dict[str, "torch.nn.Module"]:
        return {"net": self.net}

    def convert_checkpoint(self, state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        return {f"net.{k}": v for k, v in strip_prefix(state).items()}


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False
