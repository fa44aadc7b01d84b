"""Resolving backbone names to specs, shapes and live models."""
from __future__ import annotations

from typing import Any

from .base import Backbone, BackboneInfo


def describe_backbone(name: str, plugins: Any = None) -> BackboneInfo:
    """Shapes of a backbone without loading weights."""
    from ..plugins import default_plugins
    from ..specs import resolve_factory

    plugins = plugins or default_plugins()
    spec = plugins.backbone(name)
    if spec.name == "clip-tiny":
        from .clip import describe_tiny

        return describe_tiny()
    if spec.name == "open_clip":
        from .clip import describe_open_clip

        return describe_open_clip(name)
    factory = resolve_factory(spec.factory)
    describe = getattr(factory, "describe", None)
    if describe is None:
        return build_backbone(name, plugins=plugins).info
    return describe(name)


def build_backbone(name: str, weights: str | None = None, device: str = "cpu", plugins: Any = None) -> Backbone:
    """Load a backbone by name (``clip-tiny``, ``ViT-L-14:openai``, a plugin's) onto ``device``."""
    from ..plugins import default_plugins
    from ..specs import resolve_factory

    plugins = plugins or default_plugins()
    spec = plugins.backbone(name)
    return resolve_factory(spec.factory)(name, weights=weights, device=device)
