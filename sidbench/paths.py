"""Where sidbench keeps its files."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``SIDBENCH_CACHE`` or the user cache folder: feature cache and generated quickstart data."""
    env = os.environ.get("SIDBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sidbench"
