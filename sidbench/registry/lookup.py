"""From names to things: backbone shapes, identities and live models, and detectors (built, with weights)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..api.backbone import Backbone, as_backbone_factory
from ..api.detector import Detector
from ..api.errors import SidbenchError, WeightsError
from ..api.names import label, split_name, split_options
from ..api.options import role_of
from ..api.restore import same_value
from ..api.specs import resolve_factory
from ..data.preprocess import check_protocol
from .weights import OFFICIAL, fetch_official

if TYPE_CHECKING:
    from ..api.backbone import BackboneFactory, BackboneInfo
    from .plugins import Plugins


def _plugins(plugins: "Plugins | None") -> "Plugins":
    from .plugins import default_plugins

    return plugins or default_plugins()


def backbone_factory(name: str, plugins: "Plugins | None" = None) -> "BackboneFactory":
    """The factory of the spec serving ``name`` (a plugin's plain function comes wrapped)."""
    spec = _plugins(plugins).backbone(name)
    return as_backbone_factory(resolve_factory(spec.factory) if isinstance(spec.factory, str) else spec.factory,
                               spec.origin)


def describe_backbone(name: str, plugins: "Plugins | None" = None) -> "BackboneInfo":
    """Shapes of a backbone without loading weights (its factory's ``describe``; else it is built once)."""
    plugins = _plugins(plugins)
    info = backbone_factory(name, plugins).describe(name)
    return info if info is not None else build_backbone(name, plugins=plugins).info


def check_backbone_name(name: str, plugins: "Plugins | None" = None) -> None:
    """Unknown backbone names fail in one line without building anything (the factory's ``check`` looks deeper
    than the name pattern: open_clip's architectures)."""
    backbone_factory(name, plugins).check(name)


def backbone_identity(name: str, weights: str | None = None, plugins: "Plugins | None" = None) -> str | None:
    """The identity a backbone will report once built (feature-cache keys), computed without loading it;
    None when its factory cannot say so (then it is built to find out)."""
    return backbone_factory(name, plugins).identity(name, weights)


def backbone_activation(name: str, weights: str | None = None, plugins: "Plugins | None" = None) -> str | None:
    """The activation a backbone is built with (``quick_gelu``, ``gelu``), known without loading it; None when
    its factory does not say (the architecture's own)."""
    return backbone_factory(name, plugins).activation(name, weights)


def build_backbone(name: str, weights: str | None = None, device: str = "cpu", plugins: "Plugins | None" = None,
                   precision: str | None = None) -> "Backbone":
    """Load a backbone by name (``clip-tiny``, ``ViT-L-14:openai``, a plugin's) onto ``device``."""
    plugins = _plugins(plugins)
    backbone = backbone_factory(name, plugins).build(name, weights=weights, device="cpu")
    if not isinstance(backbone, Backbone):
        raise SidbenchError(f"backbone {name!r} factory ({plugins.backbone(name).origin}) returned "
                            f"{type(backbone).__name__}, not a sidbench.api.Backbone")
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
    ``backbone`` overrides a feature detector's backbone (e.g. ``"clip-tiny"``), unless the detector takes a
    ``backbone`` option and was given one (``probe[backbone=dinov2-l]``); shapes are read from the architecture
    config, so no backbone weights are loaded here. Pixel detectors ignore it.
    """
    plugins = _plugins(plugins)
    base, at_weights = split_name(name)
    weights = weights or at_weights
    base, name_options = split_options(base)
    spec = plugins.detector(base)
    if weights == OFFICIAL:
        weights = str(fetch_official(spec))
    given = {**options, **name_options}
    restored = options_of_checkpoint(spec, weights, given) if weights else {}
    # a detector's own backbone option (probe[backbone=...], or the one its checkpoint was fitted on) wins
    chosen = {**given, **restored}.get("backbone") if "backbone" in spec.options else None
    fitted_on = checkpoint_backbone(spec, weights, backbone) if weights and spec.input == "features" else None
    info = describe_backbone(chosen or backbone or fitted_on or spec.backbone, plugins) if spec.input == "features" else None
    try:
        det = resolve_factory(spec.factory)(spec, info, **{**given, **restored})
    except (ValueError, TypeError) as exc:  # an option value of the wrong kind, e.g. C=abc
        raise SidbenchError(f"detector {spec.name!r}: invalid option value ({exc})") from None
    if not isinstance(det, Detector):
        raise SidbenchError(f"detector {spec.name!r} factory ({spec.origin}) returned {type(det).__name__}, not a Detector")
    check_protocol(det.preprocess, det.pixel_input)  # a built-in protocol, or one of the detector's own
    if restored:  # the checkpoint's, not the caller's: run.json says so, and a changed network shows in the name
        det.explicit_options = dict(given)
        defaults = {k: getattr(v, "default", v) for k, v in spec.options.items()}  # an Option, or a plain default
        det.options_from_checkpoint = {k: v for k, v in restored.items() if v != defaults.get(k)}
        shaped = {k: v for k, v in det.options_from_checkpoint.items() if role_of(spec, k) == "network"}
        if shaped and not name_options:
            det.display_name = label(spec.name, {k: shaped[k] for k in spec.options if k in shaped})
    if name_options:
        det.display_name = label(spec.name, name_options)
    det.checkpoint_backbone = fitted_on
    if weights:
        det.load(weights)
    return det.eval()


def own_metadata(spec: Any, weights: str) -> dict[str, Any]:
    """The sidbench metadata of ``weights`` when it is a sidbench checkpoint of ``spec`` ({} otherwise)."""
    from ..api.checkpoints import read_metadata

    meta = read_metadata(weights)
    detector = meta.get("detector")
    return meta if isinstance(detector, str) and split_options(detector)[0] == spec.name else {}


def checkpoint_backbone(spec: Any, weights: str, given: str | None) -> str | None:
    """The backbone a sidbench checkpoint of a feature detector was fitted on (None: not recorded, or not a
    sidbench checkpoint of this detector), so that ``NAME@ckpt`` reads the features it was fitted on; a
    ``--backbone`` that names another one is an error naming both."""
    fitted_on = own_metadata(spec, weights).get("backbone")
    if not isinstance(fitted_on, str) or not fitted_on:
        return None
    if given and given != fitted_on:
        raise WeightsError(f"{spec.name}: --backbone {given} contradicts {weights}, which was fitted on features of "
                           f"{fitted_on}; drop --backbone (the checkpoint's is used) or attach a checkpoint fitted on "
                           f"{given}")
    return fitted_on


def options_of_checkpoint(spec: Any, weights: str, given: dict[str, Any]) -> dict[str, Any]:
    """The options a sidbench checkpoint restores *before* the detector (and its network) is built: those the
    caller did not give; a given option that contradicts the file is an error naming both values, unless its
    role is ``"test"`` (the caller's value wins)."""
    from ..api.restore import checkpoint_options, contradiction

    meta = own_metadata(spec, weights)
    if not meta:
        return {}  # not sidbench's, or another detector's: loading says so
    saved = checkpoint_options(spec, meta.get("options"), weights)
    for key, value in saved.items():
        if key in given and not same_value(given[key], value) and role_of(spec, key) != "test":
            raise contradiction(spec.name if not given else label(spec.name, given), key, given[key], value, weights)
    return {k: v for k, v in saved.items() if k not in given}

