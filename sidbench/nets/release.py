"""Release archives: the checkpoint inside a zip that an author publishes instead of the bare file.

C2P-CLIP's link serves ``C2P_CLIP_release_20240901.zip`` (one member, which ``torch.hub`` unpacks) and DRCT's
serves ``pretrained.zip`` (every model of the paper). ``NAME@ZIP`` takes such a file as it was downloaded: the
detector's member is unpacked once into the sidbench cache (keyed by the archive's SHA-256) and loaded from
there. A PyTorch checkpoint (itself a zip archive of ``data.pkl`` and tensors) is not a release archive.
:func:`find_member` is the one rule by which a published member path finds its zip entry, here and for
``NAME@official`` downloads (:mod:`sidbench.registry.download`).
"""
from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from sidbench.api import WeightsError

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")


def checkpoint_file(path: str | Path, member: str | None = None) -> Path:
    """``path`` itself, or, when it is a release zip, its checkpoint ``member`` unpacked into the cache (found as
    :func:`find_member` says; with no member, the zip's only checkpoint)."""
    path = Path(path).expanduser()
    if not path.is_file() or not zipfile.is_zipfile(path):
        return path
    with zipfile.ZipFile(path) as archive:
        names = [i.filename for i in archive.infolist() if not i.is_dir()]
        if _is_torch_archive(names):
            return path
        name = _pick(names, member, path)
        return _unpacked(archive, name, path)


def _is_torch_archive(names: list[str]) -> bool:
    """``torch.save``'s zip format: ``<folder>/data.pkl`` and ``<folder>/version`` under one top folder."""
    tops = {n.split("/", 1)[0] for n in names}
    return len(tops) == 1 and any(n.endswith("/data.pkl") for n in names) and any(n.endswith("/version") for n in names)


def _pick(names: list[str], member: str | None, path: Path) -> str:
    if member is not None:
        found = find_member(names, member)
    else:
        found = [n for n in names if n.lower().endswith(CHECKPOINT_SUFFIXES)]
    if len(found) == 1:
        return found[0]
    listing = ", ".join(n for n in names if n.lower().endswith(CHECKPOINT_SUFFIXES))[:300] or "no checkpoint files"
    what = f"member {member!r}" if member else "a single checkpoint"
    raise WeightsError(f"{path}: the zip holds {'no' if not found else 'more than one'} {what} ({listing}); "
                       "unpack the checkpoint you mean and attach that file")


def find_member(names: Iterable[str], member: str) -> list[str]:
    """The entries of a zip (file ``names``) that ``member`` names, for ``NAME@ZIP`` and ``NAME@official`` alike:
    the entry of exactly that path when there is one, else every entry whose path and ``member`` end in the same
    whole folder and file names over the shorter of the two (``a/b/c.pth`` finds ``b/c.pth`` and ``x/a/b/c.pth``:
    a zip that wraps everything in one more folder, or one that lacks a folder the published path names).
    Leading and trailing slashes are ignored; the caller refuses anything but exactly one entry."""
    want = member.strip("/")
    names = list(names)
    exact = [n for n in names if n.strip("/") == want]
    if exact:
        return exact
    wanted = PurePosixPath(want).parts
    return [n for n in names if _suffix_match(PurePosixPath(n.strip("/")).parts, wanted)]


def _suffix_match(parts: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    """One path is a trailing part of the other (``a/b/c.pth`` matches ``b/c.pth`` and ``x/a/b/c.pth``)."""
    k = min(len(parts), len(wanted))
    return k > 0 and parts[-k:] == wanted[-k:]


def _unpacked(archive: zipfile.ZipFile, name: str, path: Path) -> Path:
    from sidbench.api.checkpoints import file_sha256
    from sidbench.api.paths import cache_dir, temporary_sibling

    dest = cache_dir() / "unpacked" / file_sha256(path)[:16] / PurePosixPath(name).name
    if dest.is_file() and dest.stat().st_size == archive.getinfo(name).file_size:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(dest)
    try:
        with archive.open(name) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        tmp.replace(dest)
    except (OSError, zipfile.BadZipFile) as exc:
        tmp.unlink(missing_ok=True)
        raise WeightsError(f"{path}: could not unpack {name} ({type(exc).__name__}: {exc})") from None
    return dest
