"""sidbench: a benchmark suite for synthetic-image detection.

Heavy modules (torch, open_clip, scikit-learn) are imported where they are used,
so ``import sidbench`` and ``sidbench --help`` stay instant.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import SidbenchError  # noqa: E402

__all__ = ["__version__", "SidbenchError", "load_detector", "load_plugins"]


def __getattr__(name: str):
    if name == "load_detector":
        from .detector import load_detector

        return load_detector
    if name == "load_plugins":
        from .plugins import load_plugins

        return load_plugins
    raise AttributeError(f"module 'sidbench' has no attribute {name!r}")
