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
    """Make ``folder`` a results folder (idempotent); a link in the manifest's place is refused."""
    from ..api.paths import open_no_follow, refuse_link

    manifest = folder / RESULTS_MANIFEST
    if os.path.islink(manifest):
        refuse_link(manifest)
    if os.path.lexists(manifest) and not manifest.is_file():
        raise SidbenchError(f"{manifest} is in the way: it is not sidbench's manifest file; move it elsewhere, "
                            "or choose another --out")
    if not manifest.is_file():
        fd = open_no_follow(manifest, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with os.fdopen(fd, "wb") as f:
            f.write(HEADER)


SIDBENCH_CONFIG_KEYS = {"data", "detectors", "backbone", "perturb", "protocol", "seed", "batch_size"}
SCORE_HEADER = {"detector", "split", "perturbation", "path", "label", "logit", "prob"}
METRICS_HEADER = {"detector", "split", "perturbation", "n_real", "n_fake", "acc"}
RUN_JSON_KEYS = {"config", "detectors", "environment"}
STUDY_RUN_JSON_KEYS = {"study", "detectors", "environment"}  # run.json of an older `sidbench ablate` (no config)
STUDY_JSON_KEYS = {"study", "title", "command", "environment"}


def register(folder: Path, patterns: tuple[str, ...]) -> None:
    """List the existing score files matching ``patterns`` in the manifest, those whose header is a scores
    table's (files of a folder adopted for this run)."""
    from ..api.paths import note_written

    for pattern in patterns:
        for path in sorted(folder.glob(pattern)):
            if _csv_header(path) >= SCORE_HEADER:
                note_written(path)


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _head(path: Path, n: int = 1 << 16) -> bytes:
    if not _regular(path):
        return b""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _csv_header(path: Path) -> set[str]:
    import csv

    first = _head(path).split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
    return set(next(csv.reader([first]), []))


def json_dict(path: Path) -> dict:
    import json

    if not _regular(path) or path.stat().st_size > 64 << 20:
        return {}
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _sidbench_checkpoint(path: Path) -> bool:
    """A safetensors file sidbench saved for the detector it is named after (its metadata says so)."""
    import json
    import struct

    head = _head(path, 1 << 20)
    if len(head) < 8:
        return False
    size = struct.unpack("<Q", head[:8])[0]
    try:
        meta = json.loads(json.loads(head[8:8 + size])["__metadata__"]["sidbench"])
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(meta, dict) and meta.get("detector") == path.name[: -len(".safetensors")]


def is_hash_index(path: Path) -> bool:
    """Lines ``[path, sha256, size, mtime, ctime, inode]`` as the resume's hash index writes them."""
    import json

    try:
        lines = [json.loads(line) for line in _head(path, 1 << 20).splitlines()[:100] if line.strip()]
    except ValueError:
        return False
    return bool(lines) and all(isinstance(x, list) and len(x) == 6 for x in lines)


def is_detector_record(path: Path) -> bool:
    """``{detector name: identity digest}`` as the resume's record of the detectors that scored writes it."""
    import re

    record = json_dict(path)
    return bool(record) and all(isinstance(v, str) and re.fullmatch(r"[0-9a-f]{16}", v) for v in record.values())


def legacy_files(folder: Path) -> list[Path]:
    """The files of a results folder of an older sidbench (no manifest) that are sidbench's by their content:
    a user's file is never taken for one by its name."""
    checks = {"config.json": lambda p: SIDBENCH_CONFIG_KEYS <= set(json_dict(p)),
              "run.json": lambda p: RUN_JSON_KEYS <= set(json_dict(p)) or STUDY_RUN_JSON_KEYS <= set(json_dict(p)),
              "study.json": lambda p: STUDY_JSON_KEYS <= set(json_dict(p)),
              "scores.csv": lambda p: _csv_header(p) >= SCORE_HEADER,
              "val_scores.csv": lambda p: _csv_header(p) >= SCORE_HEADER,
              "scores.rank*-of-*.csv": lambda p: _csv_header(p) >= SCORE_HEADER,
              "metrics.csv": lambda p: _csv_header(p) >= METRICS_HEADER,
              "skipped.csv": lambda p: _csv_header(p) in ({"path", "reason"}, {"path", "reason", "split"}),
              "leaderboard.md": lambda p: _head(p, 64).startswith(b"# sidbench leaderboard"),
              ".sidbench-hashes": is_hash_index,
              ".sidbench-detectors": is_detector_record,
              "checkpoints/*.safetensors": _sidbench_checkpoint}
    found = [p for pattern, check in checks.items() for p in sorted(folder.glob(pattern)) if _regular(p) and check(p)]
    return found + _legacy_report(folder / "report")


def _legacy_report(report: Path) -> list[Path]:
    """An HTML report of an older sidbench: its index.html (by its title) and the figures that page shows."""
    import re

    index = report / "index.html"
    page = _head(index, 64 << 20)
    if b"<title>sidbench report: " not in page[:4096] or report.is_symlink():
        return []
    shown = {m.decode("utf-8", "replace") for m in re.findall(rb'<img src="(figures/[A-Za-z0-9_.-]+\.png)"', page)}
    return [index] + [report / f for f in sorted(shown) if _regular(report / f) and not (report / "figures").is_symlink()]


def is_legacy_results(folder: Path) -> bool:
    """A results folder of an older sidbench: no manifest, a sidbench config.json, and scores or a run.json
    that are sidbench's by content (a copied config.json alone does not make a folder sidbench's); or a study
    folder of ``sidbench ablate`` (its study.json and run.json)."""
    if is_marked(folder):
        return False
    names = {p.name for p in legacy_files(folder)}
    return ("config.json" in names and bool(names & {"scores.csv", "run.json"})) or {"study.json", "run.json"} <= names


def adopt_legacy(folder: Path) -> None:
    """Mark a legacy results folder and list the files that are sidbench's by content."""
    from ..api.paths import note_written

    files = legacy_files(folder)
    mark(folder)
    for path in files:
        note_written(path)


def is_marked(folder: Path) -> bool:
    return (folder / RESULTS_MANIFEST).is_file() and not (folder / RESULTS_MANIFEST).is_symlink()


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
    from ..api.paths import temporary_siblings

    for path in listed_files(folder):
        if path.name in keep:
            continue
        for stale in temporary_siblings(path):  # left by a writer killed before its rename
            stale.unlink(missing_ok=True)
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
