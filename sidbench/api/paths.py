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


def temporary_siblings(path: Path) -> list[Path]:
    """The temporary files of ``path`` that a killed writer left beside it (``.NAME.<pid>.tmp``)."""
    import glob

    prefix = f".{path.name}."
    return [p for p in path.parent.glob(glob.escape(prefix) + "*.tmp")
            if p.name[len(prefix):-len(".tmp")].isdigit()]


NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def open_no_follow(path: Path, flags: int, mode: int = 0o666) -> int:
    """``os.open`` that never follows a symbolic link at ``path`` (a planted link is refused in one line)."""
    try:
        return os.open(path, flags | NOFOLLOW, mode)
    except FileExistsError:  # O_EXCL: the caller decides (a stale temporary file is replaced)
        raise
    except OSError:
        if os.path.islink(path):
            refuse_link(path)
        raise


def refuse_link(path: Path) -> None:
    from .errors import SidbenchError

    raise SidbenchError(f"{path} is a symbolic link: sidbench never writes through a link in a results folder; "
                        "remove the link, or choose another --out")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it: readers never see half a file,
    and a failed write (a full disk) leaves neither a half file nor the temporary one."""
    write_atomic_bytes(path, text.encode(ENCODING, ERRORS))


def write_atomic_bytes(path: Path, data: bytes) -> None:
    """:func:`write_atomic` for bytes. In a results folder the file is listed in the manifest *before* it is
    renamed into place, so a kill in between leaves a file sidbench knows as its own (resumed, or removed by
    ``--overwrite``), never one "in the way"; no link is followed, neither the temporary file nor a folder."""
    path = Path(path)
    check_replace(path)
    note_written(path)
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "wb", opener=lambda name, flags: _create_new(Path(name))) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_new(tmp: Path) -> int:
    """A new file at ``tmp``: a stale one of a killed process with the same pid is replaced, a link never followed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        return open_no_follow(tmp, flags)
    except FileExistsError:
        tmp.unlink()
        return open_no_follow(tmp, flags)


def _manifest_of(path: Path) -> tuple[Path, Path] | None:
    """(results folder, its manifest) of the nearest results folder above ``path``, if any."""
    for folder in list(Path(path).parents)[:MANIFEST_DEPTH]:
        manifest = folder / RESULTS_MANIFEST
        if os.path.lexists(manifest):
            return folder, manifest
    return None


def _check_links(path: Path) -> None:
    """Refuse (one line) a symbolic link at ``path`` or at any folder between it and the outermost results
    folder above it: a link planted in a results folder must never lead a write outside it."""
    parents = list(Path(path).parents)[:MANIFEST_DEPTH]
    roots = [i for i, folder in enumerate(parents) if os.path.lexists(folder / RESULTS_MANIFEST)]
    if not roots:
        return
    for p in [Path(path), *parents[:roots[-1]], *(parents[i] / RESULTS_MANIFEST for i in roots)]:
        if os.path.islink(p):
            refuse_link(p)


def _entry(path: Path, folder: Path) -> bytes:
    return os.fsencode(os.path.relpath(path, folder))


def written_by_sidbench(path: Path) -> bool:
    """Whether the results-folder manifest above ``path`` lists it (False outside a results folder)."""
    found = _manifest_of(path)
    return found is not None and _entry(path, found[0]) in found[1].read_bytes().splitlines()


def check_replace(path: Path) -> None:
    """Refuse to replace a file in a results folder that sidbench did not write there, or to write through a
    link there (one line)."""
    _check_links(path)
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
    fd = open_no_follow(manifest, os.O_WRONLY | os.O_APPEND)
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
