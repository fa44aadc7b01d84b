"""Streaming one checkpoint from its URL for ``NAME@official`` (:mod:`sidbench.registry.weights`): share links made
direct, an overall deadline and a minimum rate, exactly the announced Content-Length, web pages and Git LFS
pointers refused, a zip's member unpacked (found by :func:`sidbench.nets.release.find_member`), the digests
computed on the way; nothing is left behind when any step fails.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..api.errors import WeightsError
from ..api.paths import file_mode
from ..nets.release import find_member

TIMEOUT_S = 30  # per network read: a dead connection fails instead of hanging
DEADLINE_S = 3 * 3600  # a whole download: no file sidbench knows of takes longer on a working link
MIN_RATE = 16 * 1024  # bytes per second, averaged over RATE_WINDOW_S: a trickle is a failure, not a wait
RATE_WINDOW_S = 60
MAX_BYTES = 16 << 30  # a body without Content-Length stops here (an endless stream is not a checkpoint)
CHUNK = 1 << 20
HASHES = ("sha256", "md5")  # computed while streaming; git blob ids need the size first (computed after)


def direct_url(url: str) -> str:
    """The download link of a share link: Dropbox's ``dl=0`` becomes ``dl=1``; a Google Drive file page
    becomes its ``uc?export=download`` link (Drive serves small files there directly, and a confirmation
    page instead of large ones, which :func:`download` reports)."""
    if "dropbox.com" in url:
        return re.sub(r"([?&])dl=0", r"\1dl=1", url) if "dl=0" in url else url + ("&" if "?" in url else "?") + "dl=1"
    m = re.match(r"https://drive\.google\.com/file/d/([^/]+)", url)
    return f"https://drive.google.com/uc?export=download&id={m.group(1)}" if m else url


def download(url: str, dest: Path, verify: Callable[[Path, dict[str, str]], None], member: str | None = None,
             ) -> dict[str, str]:
    """Stream ``url`` to a temporary file beside ``dest`` (with ``member``: unpack that member of the zip it
    serves), ``verify(file, digests)`` it, then rename it; returns its digests (``sha256``, ``md5``, and for a
    zip ``archive_sha256``/``archive_md5``). Nothing is left behind when any step fails."""
    import http.client
    import urllib.error
    import urllib.request

    from .. import __version__

    tmp = partial(dest)
    archive = dest.with_name(f".part-{os.getpid()}-{dest.name}.zip")
    fix = f"download it by hand and save it as {dest}" if not member else \
        f"download it by hand, unpack its member {member} and save it as {dest}"
    try:
        request = urllib.request.Request(url, headers={"User-Agent": f"sidbench/{__version__}"})
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            if response.headers.get("Content-Type", "").startswith("text/html"):
                raise WeightsError(f"{url} sent a web page instead of the checkpoint (Google Drive does for large "
                                   f"files, as do expired or private links); open it in a browser, {fix}")
            total = _content_length(response.headers.get("Content-Length"))
            digests = _stream(response, archive if member else tmp, total, url, fix)
        _refuse_obvious_non_checkpoints(archive if member else tmp, url, fix)
        if member:
            digests = {**unpack_member(archive, member, tmp, url, fix),
                       **{f"archive_{k}": v for k, v in digests.items()}}
            archive.unlink()
        verify(tmp, digests)
        os.chmod(tmp, file_mode())
        os.replace(tmp, dest)
        return digests
    except urllib.error.HTTPError as exc:
        raise WeightsError(f"{url}: HTTP {exc.code} {exc.reason}; {fix}") from None
    except http.client.HTTPException as exc:  # e.g. IncompleteRead of a chunked body cut short
        raise WeightsError(f"could not download {url} ({type(exc).__name__}: the connection ended early); nothing "
                           f"was kept; {fix}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise WeightsError(f"could not download {url} ({reason}); {fix}") from None
    finally:
        tmp.unlink(missing_ok=True)
        archive.unlink(missing_ok=True)


def partial(dest: Path) -> Path:
    """The temporary file a download (or unpacked member) is written to beside ``dest``: hidden, with this
    process's id, and ending like ``dest`` (so it is loaded as the format its suffix names)."""
    return dest.with_name(f".part-{os.getpid()}-{dest.name}")


def _content_length(value: str | None) -> int | None:
    try:
        n = int(value) if value is not None else None
    except ValueError:
        return None
    return n if n is not None and n >= 0 else None


@dataclass
class _Pace:
    """The deadline and minimum-rate watch of one download."""

    start: float
    window_start: float
    window_bytes: int = 0

    def check(self, received: int, url: str, fix: str) -> None:
        now = time.monotonic()
        if now - self.start > DEADLINE_S:
            raise WeightsError(f"{url}: the download did not finish within {DEADLINE_S} s ({received} bytes "
                               f"received); nothing was kept; {fix}")
        if now - self.window_start >= RATE_WINDOW_S:
            rate = (received - self.window_bytes) / (now - self.window_start)
            if rate < MIN_RATE:
                raise WeightsError(f"{url}: the server sends {rate:.0f} bytes/s, under the minimum of {MIN_RATE} "
                                   f"bytes/s; nothing was kept; {fix}")
            self.window_start, self.window_bytes = now, received


def _stream(response, tmp: Path, total: int | None, url: str, fix: str) -> dict[str, str]:
    """Write the body to ``tmp``: at most the announced Content-Length (exactly that much), else at most
    :data:`MAX_BYTES`, within the deadline and above the minimum rate; the digests of what was written."""
    from tqdm.auto import tqdm

    hashes = {name: hashlib.new(name) for name in HASHES}
    limit = MAX_BYTES if total is None else total
    now = time.monotonic()
    pace, received = _Pace(now, now), 0
    read = getattr(response, "read1", response.read)  # read1: what has arrived, so a trickle is seen as one
    with open(tmp, "wb") as f, tqdm(total=total or None, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                                    disable=not sys.stderr.isatty(), leave=False) as bar:
        while chunk := read(min(CHUNK, limit + 1 - received)):
            received += len(chunk)
            if received > limit:
                what = f"more than the {total} bytes its Content-Length announced" if total is not None else \
                    f"more than {MAX_BYTES} bytes"
                raise WeightsError(f"{url} sent {what}; nothing was kept; {fix}")
            f.write(chunk)
            for h in hashes.values():
                h.update(chunk)
            bar.update(len(chunk))
            pace.check(received, url, fix)
    if total is not None and received != total:
        raise WeightsError(f"{url}: the connection ended after {received} of the {total} bytes announced (a cut "
                           f"download); nothing was kept; {fix}")
    return {name: h.hexdigest() for name, h in hashes.items()}


def _refuse_obvious_non_checkpoints(path: Path, url: str, fix: str) -> None:
    """A web page served as anything, or a Git LFS pointer instead of the file it points to."""
    with open(path, "rb") as f:
        head = f.read(512)
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        raise WeightsError(f"{url} sent a web page instead of the checkpoint; nothing was kept; {fix}")
    if head.startswith(b"version https://git-lfs.github.com/spec/"):
        raise WeightsError(f"{url} sent a Git LFS pointer instead of the file it points to (use the repository's "
                           f"media/LFS link); nothing was kept; {fix}")


def unpack_member(archive: Path, member: str, out: Path, url: str, fix: str) -> dict[str, str]:
    """Copy ``member`` of the zip ``archive`` to ``out`` (at most its declared size, never past
    :data:`MAX_BYTES`); its digests. The member is named exactly, or by a unique path suffix (a zip that
    wraps everything in one more folder)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            info = _find_member(zf, member, url, fix)
            if info.file_size > MAX_BYTES:
                raise WeightsError(f"{url}: zip member {info.filename} declares {info.file_size} bytes, more than "
                                   f"{MAX_BYTES}; nothing was kept; {fix}")
            hashes = {name: hashlib.new(name) for name in HASHES}
            written = 0
            with zf.open(info) as src, open(out, "wb") as dst:
                while chunk := src.read(CHUNK):
                    written += len(chunk)
                    if written > info.file_size:
                        raise WeightsError(f"{url}: zip member {info.filename} is larger than it declares; "
                                           f"nothing was kept; {fix}")
                    dst.write(chunk)
                    for h in hashes.values():
                        h.update(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
        raise WeightsError(f"{url} did not serve a readable zip ({type(exc).__name__}: {exc}); nothing was kept; "
                           f"{fix}") from None
    return {name: h.hexdigest() for name, h in hashes.items()}


def _find_member(zf: zipfile.ZipFile, member: str, url: str, fix: str) -> zipfile.ZipInfo:
    infos = {i.filename: i for i in zf.infolist() if not i.is_dir()}
    found = find_member(infos, member)
    if len(found) != 1:
        names = ", ".join(list(infos)[:6]) + (", ..." if len(infos) > 6 else "")
        problem = "has no member" if not found else "has several members matching"
        raise WeightsError(f"{url}: the zip {problem} {member} (it holds {names or 'nothing'}); nothing was kept; {fix}")
    return infos[found[0]]


def git_blob_id(path: Path) -> str:
    """The id git gives the file's content (SHA-1 of ``blob <size>\\0<bytes>``): what a repository's tree lists."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(path: Path, names: "tuple[str, ...]" = HASHES) -> dict[str, str]:
    """The hex digests ``names`` of a file, computed in one read of it."""
    hashes = {name: hashlib.new(name) for name in names}
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            for h in hashes.values():
                h.update(chunk)
    return {name: h.hexdigest() for name, h in hashes.items()}
