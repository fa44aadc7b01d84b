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


def file_mode() -> int:
    """The permissions a new file gets here (0o666 less the umask), as every other output of a run has them;
    for files written by libraries that create them private (safetensors writes 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
