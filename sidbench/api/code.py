"""A detector's code identity: a hash of the source of the modules that define it, with its plugin's version.

It enters the logit cache key, the resume check and run.json, so an edited plugin never gets stale scores.
Files are hashed once per state (path, size, mtime, inode, ctime): a file rewritten in place is hashed again.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import sys
from typing import Any

_MEMO: dict[str, tuple[tuple[int, int, int, int], str]] = {}
CORE = ("sidbench.api", "builtins", "abc", "typing")


def file_digest(path: str) -> str | None:
    """SHA-256 of a file's bytes (None: unreadable), remembered by its state."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    state = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    hit = _MEMO.get(path)
    if hit is not None and hit[0] == state:
        return hit[1]
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None
    _MEMO[path] = (state, digest)
    return digest


def defining_modules(obj: Any, factory: Any = None) -> list[str]:
    """The modules whose source defines a detector: its class and the classes it derives from, and its
    spec's factory (sidbench's own ``sidbench.api`` classes excluded: the sidbench version covers them)."""
    names = []
    for cls in type(obj).__mro__:
        names.append(cls.__module__)
    if factory is not None and not isinstance(factory, str):
        names.append(getattr(factory, "__module__", "") or "")
    elif isinstance(factory, str):
        names.append(factory.partition(":")[0])
    return [n for n in dict.fromkeys(names) if n and not n.startswith(CORE)]


def source_digest(modules: list[str]) -> str:
    """A short SHA-256 over the named modules' source files (their text when a module has no file)."""
    h = hashlib.sha256()
    for name in sorted(modules):
        mod = sys.modules.get(name)
        path = getattr(mod, "__file__", None) if mod is not None else None
        digest = file_digest(path) if path else None
        if digest is None and mod is not None:
            try:
                digest = hashlib.sha256(inspect.getsource(mod).encode()).hexdigest()
            except (OSError, TypeError):
                digest = "unknown"
        h.update(f"{name}|{digest}\n".encode())
    return h.hexdigest()[:16]


def code_identity(det: Any) -> dict[str, str]:
    """``{"version": the plugin's version, "source_sha256": a hash of the defining modules' source}``."""
    spec = det.spec
    return {"version": str(getattr(spec, "plugin_version", "") or ""),
            "source_sha256": source_digest(defining_modules(det, spec.factory))}
