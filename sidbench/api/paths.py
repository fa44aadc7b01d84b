"""Where sidbench keeps its files, and how it writes them.

Text files are UTF-8; file names that are not valid UTF-8 (Python holds their bytes as surrogate escapes)
are written as their original bytes (``errors="surrogateescape"``), so they read back exactly.
Every file written into a results folder (a folder holding :data:`RESULTS_MANIFEST`) is listed in that
manifest, so ``--overwrite`` removes what sidbench wrote there and nothing else.
"""
from __future__ import annotations

import os
from pathlib import Path

ENCODING, ERRORS = "utf-8", "surrogateescape"  # how every text file sidbench writes is encoded
RESULTS_MANIFEST = ".sidbench-results"  # marks a results folder; lists (relative) every file sidbench wrote there
MANIFEST_DEPTH = 3  # a file is registered with the nearest manifest at most this many folders up


def cache_dir() -> Path:
    """``SIDBENCH_CACHE`` or the user cache folder: feature cache and generated quickstart data."""
    env = os.environ.get("SIDBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sidbench"


def temporary_sibling(path: Path) -> Path:
    """The temporary name a file is written under before it is renamed into place."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it: readers never see half a file,
    and a failed write (a full disk) leaves neither a half file nor the temporary one."""
    path = Path(path)
    check_replace(path)
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "w", encoding=ENCODING, errors=ERRORS, newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    note_written(path)


def _manifest_of(path: Path) -> tuple[Path, Path] | None:
    """(results folder, its manifest) of the nearest results folder above ``path``, if any."""
    for folder in list(Path(path).parents)[:MANIFEST_DEPTH]:
        manifest = folder / RESULTS_MANIFEST
        if manifest.is_file():
            return folder, manifest
    return None


def _entry(path: Path, folder: Path) -> bytes:
    return os.fsencode(os.path.relpath(path, folder))


def written_by_sidbench(path: Path) -> bool:
    """Whether the results-folder manifest above ``path`` lists it (False outside a results folder)."""
    found = _manifest_of(path)
    return found is not None and _entry(path, found[0]) in found[1].read_bytes().splitlines()


def check_replace(path: Path) -> None:
    """Refuse to replace a file in a results folder that sidbench did not write there (one line)."""
    if _manifest_of(path) is not None and os.path.lexists(path) and not written_by_sidbench(path):
        from .errors import SidbenchError

        raise SidbenchError(f"{path} is in the way: sidbench did not write it, so it will not replace it; "
                            "move it elsewhere, or choose another --out")


def note_written(path: Path) -> None:
    """Record ``path`` in the manifest of the results folder it lies in (if any), one line per file."""
    found = _manifest_of(path)
    if found is None:
        return
    folder, manifest = found
    line = _entry(path, folder)
    if b"\n" in line or line in manifest.read_bytes().splitlines():
        return  # listed already (or a name a line cannot hold: such a file is left in place by --overwrite)
    fd = os.open(manifest, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line + b"\n")  # one write per line: O_APPEND keeps concurrent writers' lines whole
    finally:
        os.close(fd)


def file_mode() -> int:
    """The permissions a new file gets here (0o666 less the umask), as every other output of a run has them;
    for files written by libraries that create them private (safetensors writes 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
