"""sidbench: a benchmark suite for synthetic-image detection.

Heavy modules (torch, open_clip, scikit-learn) are imported where they are used,
so ``import sidbench`` and ``sidbench --help`` stay instant. Plugin authors import
from :mod:`sidbench.api`.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .api.errors import SidbenchError  # noqa: E402

__all__ = ["__version__", "SidbenchError", "build_backbone", "load_detector", "load_plugins", "score"]

# public name -> (module, attribute), imported on first use
_LAZY = {"load_detector": ("registry.lookup", "load_detector"), "build_backbone": ("registry.lookup", "build_backbone"),
         "load_plugins": ("registry.plugins", "load_plugins"), "score": ("run.score", "score")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'sidbench' has no attribute {name!r}")
