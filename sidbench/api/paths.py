"""Where sidbench keeps its files, and how it writes them."""
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


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
