"""From names to things: backbone shapes, identities and live models, and detectors (built, with weights)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..api.detector import Detector
from ..api.errors import SidbenchError
from ..api.names import label, split_name, split_options
from ..api.specs import resolve_factory
from ..data.preprocess import check_protocol
from .weights import OFFICIAL, fetch_official

if TYPE_CHECKING:
    from ..api.backbone import Backbone, BackboneInfo
    from .plugins import Plugins


def _plugins(plugins: "Plugins | None") -> "Plugins":
    from .plugins import default_plugins

    return plugins or default_plugins()


def describe_backbone(name: str, plugins: "Plugins | None" = None) -> "BackboneInfo":
    """Shapes of a backbone without loading weights (the factory's ``describe``; else it is built once)."""
    plugins = _plugins(plugins)
    factory = resolve_factory(plugins.backbone(name).factory)
    describe = getattr(factory, "describe", None)
    return describe(name) if describe is not None else build_backbone(name, plugins=plugins).info


def check_backbone_name(name: str, plugins: "Plugins | None" = None) -> None:
    """Unknown backbone names fail in one line without building anything (the factory's ``check``, where it has
    one, looks deeper than the name pattern: open_clip's architectures)."""
    plugins = _plugins(plugins)
    check = getattr(resolve_factory(plugins.backbone(name).factory), "check", None)
    if check is not None:
        check(name)


def backbone_identity(name: str, weights: str | None = None, plugins: "Plugins | None" = None) -> str | None:
    """The identity a backbone will report once built (feature-cache keys), computed without loading it;
    None when its factory cannot say so (then it is built to find out)."""
    plugins = _plugins(plugins)
    factory = resolve_factory(plugins.backbone(name).factory)
    identity = getattr(factory, "identity", None)
    return identity(name, weights) if identity is not None else None


def backbone_activation(name: str, weights: str | None = None, plugins: "Plugins | None" = None) -> str | None:
    """The activation a backbone is built with (``quick_gelu``, ``gelu``), known without loading it; None when
    its factory does not say (the architecture's own)."""
    plugins = _plugins(plugins)
    factory = resolve_factory(plugins.backbone(name).factory)
    activation = getattr(factory, "activation", None)
    return activation(name, weights) if activation is not None else None


def build_backbone(name: str, weights: str | None = None, device: str = "cpu", plugins: "Plugins | None" = None,
                   precision: str | None = None) -> "Backbone":
    """Load a backbone by name (``clip-tiny``, ``ViT-L-14:openai``, a plugin's) onto ``device``."""
    plugins = _plugins(plugins)
    backbone = resolve_factory(plugins.backbone(name).factory)(name, weights=weights, device="cpu")
    return backbone.to(device, precision)


def load_detector(
    name: str,
    weights: str | None = None,
    *,
    backbone: str | None = None,
    plugins: "Plugins | None" = None,
    **options: Any,
) -> Detector:
    """Build a registered detector, optionally with a checkpoint (official or sidbench's own).

    ``name`` may carry options and a checkpoint: ``rine.progan4[tie=false]@ckpt.safetensors``; the checkpoint
    ``official`` is the published one, downloaded once (:mod:`sidbench.registry.weights`).
    ``backbone`` overrides a feature detector's backbone (e.g. ``"clip-tiny"``); shapes are read from
    the architecture config, so no backbone weights are loaded here. Pixel detectors ignore it.
    """
    plugins = _plugins(plugins)
    base, at_weights = split_name(name)
    weights = weights or at_weights
    base, name_options = split_options(base)
    spec = plugins.detector(base)
    info = describe_backbone(backbone or spec.backbone, plugins) if spec.input == "features" else None
    try:
        det = resolve_factory(spec.factory)(spec, info, **{**options, **name_options})
    except (ValueError, TypeError) as exc:  # an option value of the wrong kind, e.g. C=abc
        raise SidbenchError(f"detector {spec.name!r}: invalid option value ({exc})") from None
    if not isinstance(det, Detector):
        raise SidbenchError(f"detector {spec.name!r} factory ({spec.origin}) returned {type(det).__name__}, not a Detector")
    check_protocol(det.preprocess, det.pixel_input)  # a built-in protocol, or one of the detector's own
    if name_options:
        det.label = label(spec.name, name_options)
    if weights == OFFICIAL:
        weights = str(fetch_official(spec))
    if weights:
        det.load(weights)
    return det.eval()
