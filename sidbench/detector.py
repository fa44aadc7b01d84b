"""The detector contract: named backbone features in, one logit per image out (higher = more fake)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .backbones.base import BackboneInfo
from .checkpoints import load_tensors, save_tensors
from .errors import SidbenchError, WeightsError
from .specs import DetectorSpec

if TYPE_CHECKING:
    import torch

    from .backbones.base import Backbone
    from .training import FitData


class Detector:
    """Base class of every detector.

    Subclasses set up their torch modules in ``__init__`` (importing torch there, so that
    listing plugins stays fast), return them from :meth:`modules`, and implement
    :meth:`score`. Fittable detectors implement :meth:`fit`.
    """

    def __init__(self, spec: DetectorSpec, backbone: BackboneInfo, **options: Any):
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
            "backbone": self.backbone_info.name,
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
            self.load_state_dict(tensors)
        else:
            self.load_state_dict(self.convert_checkpoint(tensors))
        self.fitted = True
        self.weights_path = str(path)
        return self.to(self.device).eval()


def _option_text(v: Any) -> str:
    import json

    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))


def _jsonable(v: Any) -> bool:
    import json

    try:
        json.dumps(v)
        return True
    except TypeError:
        return False


def split_name(name: str) -> tuple[str, str | None]:
    """``"rine.progan2@/path/ckpt.pth"`` -> ``("rine.progan2", "/path/ckpt.pth")``."""
    base, sep, weights = name.partition("@")
    return base.strip(), (weights.strip() or None) if sep else None


def split_options(base: str) -> tuple[str, dict[str, Any]]:
    """``"rine.progan4[tie=false,blocks=last]"`` -> ``("rine.progan4", {"tie": False, "blocks": "last"})``.

    Values are JSON when they parse (``false``, ``2``, ``[30,100]``), else strings.
    """
    import re

    m = re.fullmatch(r"\s*([^\[\]]+?)\s*\[(.*)\]\s*", base)
    if not m:
        if "[" in base or "]" in base:
            raise SidbenchError(f"detector {base!r}: write options as NAME[key=value,key=value]")
        return base.strip(), {}
    items = filter(None, (i.strip() for i in re.split(r",(?![^\[]*\])", m.group(2))))
    return m.group(1), parse_key_values(items, f"detector {base!r}")


def parse_key_values(items: Any, where: str) -> dict[str, Any]:
    """``["epochs=2", "tie=false"]`` -> ``{"epochs": 2, "tie": False}``: JSON values when they parse, else strings."""
    import json

    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SidbenchError(f"{where}: option {item!r} is not key=value")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value.strip()
    return options


def load_detector(
    name: str,
    weights: str | None = None,
    *,
    backbone: str | None = None,
    plugins: Any = None,
    **options: Any,
) -> Detector:
    """Build a registered detector, optionally with a checkpoint (official or sidbench's own).

    ``backbone`` overrides the spec's backbone (e.g. ``"clip-tiny"``); shapes are read from
    the architecture config, so no backbone weights are loaded here.
    """
    from .backbones.registry import describe_backbone
    from .plugins import default_plugins
    from .specs import resolve_factory

    plugins = plugins or default_plugins()
    base, at_weights = split_name(name)
    weights = weights or at_weights
    base, name_options = split_options(base)
    spec = plugins.detector(base)
    info = describe_backbone(backbone or spec.backbone, plugins)
    try:
        det = resolve_factory(spec.factory)(spec, info, **{**options, **name_options})
    except (ValueError, TypeError) as exc:  # an option value of the wrong kind, e.g. C=abc
        raise SidbenchError(f"detector {spec.name!r}: invalid option value ({exc})") from None
    if not isinstance(det, Detector):
        raise SidbenchError(f"detector {spec.name!r} factory ({spec.origin}) returned {type(det).__name__}, not a Detector")
    if name_options:
        det.label = spec.name + "[" + ",".join(f"{k}={_option_text(v)}" for k, v in name_options.items()) + "]"
    if weights:
        det.load(weights)
    return det.eval()
