"""The plugin manager (discovery of built-in, installed and folder plugins) and lookups by name."""
from __future__ import annotations

from .lookup import backbone_identity, build_backbone, describe_backbone, load_detector
from .plugins import Plugins, default_plugins, load_plugins

__all__ = ["Plugins", "backbone_identity", "build_backbone", "default_plugins", "describe_backbone",
           "load_detector", "load_plugins"]
