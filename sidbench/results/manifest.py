"""The manifest of a results folder: which files sidbench wrote there, so that ``--overwrite`` (and the
clean-up after a run that failed before scoring anything) removes those and nothing else.

``.sidbench-results`` marks the folder as sidbench's and lists, one per line, the path (relative to the
folder) of every file written through :func:`sidbench.api.paths.write_atomic`, ``save_tensors``, the score
log or :func:`~sidbench.api.paths.note_written`. Paths that leave the folder (``..``, absolute, through a
linked folder) are never acted on, whatever the manifest says.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..api.errors import SidbenchError
from ..api.paths import RESULTS_MANIFEST

log = logging.getLogger(__name__)
HEADER = b"# sidbench results folder: the files sidbench wrote here, one path per line\n"


def mark(folder: Path) -> None:
    """Make ``folder`` a results folder (idempotent)."""
    manifest = folder / RESULTS_MANIFEST
    if not manifest.is_file():
        with open(manifest, "xb") as f:
            f.write(HEADER)


# What results folders of sidbench versions before the manifest held (adopted when their config.json is sidbench's).
LEGACY_NAMES = ("config.json", "scores.csv", "scores.rank*-of-*.csv", "skipped.csv", "metrics.csv", "leaderboard.md",
                "run.json", "checkpoints/*.safetensors", "checkpoints/*.confusion.csv", "report/*.*", "report/figures/*.png")
SIDBENCH_CONFIG_KEYS = {"data", "detectors", "backbone", "perturb", "protocol", "seed", "batch_size"}


def register(folder: Path, patterns: tuple[str, ...]) -> None:
    """List the existing files matching ``patterns`` in the manifest (files of a results folder written
    before the manifest existed)."""
    from ..api.paths import note_written

    for pattern in patterns:
        for path in sorted(folder.glob(pattern)):
            if path.is_file() and not path.is_symlink():
                note_written(path)


def is_legacy_results(folder: Path) -> bool:
    """A results folder of an older sidbench: no manifest, but a config.json holding a run configuration."""
    import json

    if is_marked(folder):
        return False
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8", errors="surrogateescape"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and SIDBENCH_CONFIG_KEYS <= set(config)


def is_marked(folder: Path) -> bool:
    return (folder / RESULTS_MANIFEST).is_file()


def listed_files(folder: Path) -> list[Path]:
    """The files the manifest lists that lie inside ``folder`` (each once, in the order written)."""
    try:
        lines = (folder / RESULTS_MANIFEST).read_bytes().splitlines()
    except OSError:
        return []
    out: dict[Path, None] = {}
    for line in lines:
        if line and not line.startswith(b"#"):
            path = _inside(folder, os.fsdecode(line))
            if path is not None:
                out[path] = None
    return list(out)


def _inside(folder: Path, rel: str) -> Path | None:
    """``folder / rel`` when it names a file directly inside ``folder``'s own tree, else None."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts or RESULTS_MANIFEST in parts[-1:]:
        return None
    path = folder.joinpath(*parts)
    real_folder = os.path.realpath(folder)
    real_parent = os.path.realpath(path.parent)
    if real_parent != real_folder and not real_parent.startswith(real_folder + os.sep):
        return None  # a linked sub-folder pointing elsewhere: never delete through it
    return path


def remove_written(folder: Path, keep: tuple[str, ...] = ()) -> tuple[int, list[str]]:
    """Delete the files sidbench wrote in ``folder`` (then folders left empty, then the manifest);
    returns (files removed, what is left there apart from ``keep``)."""
    removed = 0
    parents: set[Path] = set()
    for path in listed_files(folder):
        if path.name in keep:
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()
            removed += 1
        parents.update(p for p in path.parents if p != folder and folder in p.parents)
    for sub in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        try:
            sub.rmdir()  # only when empty: a folder holding someone else's file stays
        except OSError:
            pass
    (folder / RESULTS_MANIFEST).unlink(missing_ok=True)
    return removed, files_left(folder, keep)


def files_left(folder: Path, keep: tuple[str, ...] = ()) -> list[str]:
    """Every file below ``folder`` (links not followed) except those named in ``keep``, relative."""
    left = []
    for dirpath, dirnames, filenames in os.walk(folder):
        left += [os.path.relpath(os.path.join(dirpath, n), folder) for n in filenames if n not in keep]
        left += [os.path.relpath(os.path.join(dirpath, d), folder) for d in dirnames
                 if os.path.islink(os.path.join(dirpath, d))]
    return sorted(left)


def clear_for_overwrite(folder: Path, keep: tuple[str, ...]) -> None:
    """``--overwrite``: remove what an earlier run wrote; refuse (one line) when this is not sidbench's folder."""
    from ..api.escape import one_line

    if not is_marked(folder):
        if not files_left(folder, keep):
            return
        raise SidbenchError(
            f"--overwrite: {folder} is not a sidbench results folder (it has no {RESULTS_MANIFEST} file), so nothing "
            "was deleted; choose another --out, or empty the folder yourself")
    removed, left = remove_written(folder, keep)
    if left:
        shown = ", ".join(one_line(p) for p in left[:10]) + (f" and {len(left) - 10} more" if len(left) > 10 else "")
        log.warning(f"--overwrite: removed {removed} file(s) sidbench wrote in {one_line(folder)}; kept {len(left)} "
                    f"it did not write: {shown}")
