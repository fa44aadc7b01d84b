"""Published checkpoints by name: ``NAME@official``.

The spec records where the paper's code published its checkpoint (:class:`sidbench.api.OfficialWeights`).
The file is downloaded once into ``$SIDBENCH_CACHE/weights/NAME/FILENAME`` and checked before it is kept:
against its published SHA-256, MD5 and git blob id where they are known, and, where none is published, by
loading it the way the detector will (``torch.load(weights_only=True)`` or safetensors), after which its
SHA-256 is printed and recorded beside it. A URL that serves a zip (``member``) is unpacked: only that member
is kept. A download has an overall deadline and a minimum rate, must deliver the Content-Length the server
announced, and leaves nothing behind when any of this fails. Offline (``SIDBENCH_OFFLINE`` or
``HF_HUB_OFFLINE`` set) or without network, one line says which URL to fetch and where to put the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlparse

from ..api.errors import WeightsError
from ..api.log import note
from ..api.paths import cache_dir, file_mode, write_atomic

if TYPE_CHECKING:
    from ..api.specs import DetectorSpec, OfficialWeights

OFFICIAL = "official"  # the checkpoint name that means "the published file"
OFFLINE_ENV = ("SIDBENCH_OFFLINE", "HF_HUB_OFFLINE")
TIMEOUT_S = 30  # per network read: a dead connection fails instead of hanging
DEADLINE_S = 3 * 3600  # a whole download: no file sidbench knows of takes longer on a working link
MIN_RATE = 16 * 1024  # bytes per second, averaged over RATE_WINDOW_S: a trickle is a failure, not a wait
RATE_WINDOW_S = 60
MAX_BYTES = 16 << 30  # a body without Content-Length stops here (an endless stream is not a checkpoint)
CHUNK = 1 << 20
HASHES = ("sha256", "md5")  # computed while streaming; git blob ids need the size first (computed after)

Log = Callable[[str], None]


def offline() -> str | None:
    """The environment variable that forbids downloads, if one is set (to anything but 0/false/no/off)."""
    for var in OFFLINE_ENV:
        if os.environ.get(var, "").strip().lower() not in ("", "0", "false", "no", "off"):
            return var
    return None


def official_path(spec: "DetectorSpec") -> Path:
    """Where ``NAME@official`` is kept: ``$SIDBENCH_CACHE/weights/NAME/FILENAME``."""
    return cache_dir() / "weights" / spec.name / published(spec).filename


def published(spec: "DetectorSpec") -> "OfficialWeights":
    if spec.official_weights is None:
        raise WeightsError(f"detector {spec.name!r} has no published checkpoint that sidbench knows of; attach a "
                           f"file with {spec.name}@CHECKPOINT (`sidbench weights list` shows the published ones)")
    return spec.official_weights


def checksums(ow: "OfficialWeights") -> list[str]:
    """The published checksums of ``ow`` by name (``sha256``, ``md5``, ``git blob``); empty when none is."""
    return [name for name, value in (("sha256", ow.sha256), ("md5", ow.md5), ("git blob", ow.git_blob)) if value]


def fetch_instructions(ow: "OfficialWeights", path: Path) -> str:
    """What to do by hand: fetch the URL and save it as ``path`` (a zip: as ``path.zip``, or its member as ``path``)."""
    if ow.member:
        return (f"fetch {ow.url} (a zip) where the network is reachable and save it as {local_zip(path)} (sidbench "
                f"unpacks its member {ow.member} and checks it), or save that member itself as {path}")
    return f"fetch {ow.url} where the network is reachable and save it as {path}"


def local_zip(path: Path) -> Path:
    """Where a zip fetched by hand is put for sidbench to unpack: ``FILENAME.zip`` beside the checkpoint."""
    return path.with_name(path.name + ".zip")


def install_from_zip(archive: Path, path: Path, ow: "OfficialWeights", name: str) -> dict[str, str]:
    """Unpack ``ow.member`` of a zip put in the cache by hand into ``path``, checked as a download is."""
    digests = {f"archive_{h}": _file_digest(archive, h) for h in HASHES}
    tmp = partial(path)
    fix = f"replace {archive} with the zip {ow.url} serves"
    try:
        digests.update(unpack_member(archive, ow.member, tmp, str(archive), fix))
        verify(tmp, digests, ow, name)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return digests


def fetch_official(spec: "DetectorSpec", log: Log = note) -> Path:
    """The published checkpoint of ``spec`` on disk: the cached copy (checked again), or downloaded once."""
    ow = published(spec)
    path = official_path(spec)
    if path.is_file():
        check(path, ow, spec.name)
        return path
    if ow.member and local_zip(path).is_file():  # a zip fetched by hand (offline, or from a browser)
        record(path, ow, install_from_zip(local_zip(path), path, ow, spec.name))
        log(f"{spec.name}@official: unpacked {ow.member} of {local_zip(path)} to {path} (checked)")
        return path
    var = offline()
    if var:
        raise WeightsError(f"{spec.name}@official is not downloaded yet and {var} is set (offline): "
                           f"{fetch_instructions(ow, path)}")
    if "drive.google.com/drive/folders/" in ow.url:
        raise WeightsError(f"{spec.name}@official is published in a Google Drive folder, which sidbench cannot "
                           f"download: open {ow.url} in a browser, download {ow.member or 'the checkpoint it holds'} and save "
                           f"it as {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = download(direct_url(ow.url), path, lambda tmp, got: verify(tmp, got, ow, spec.name), member=ow.member)
    record(path, ow, digest)
    revision = f" at revision {ow.revision}" if ow.revision else ""
    if not checksums(ow):
        log(f"{spec.name}@official: no published SHA-256 to check against; the file's SHA-256 is {digest['sha256']} "
            f"(recorded in {record_path(path)}; its content was checked by loading it)")
    elif not ow.sha256:
        log(f"{spec.name}@official: no published SHA-256 to check against ({' and '.join(checksums(ow))} checked); "
            f"the file's SHA-256 is {digest['sha256']} (recorded in {record_path(path)})")
    else:
        log(f"{spec.name}@official: downloaded {ow.url}{revision} to {path} (SHA-256 checked)")
    return path


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
    want = member.strip("/")
    infos = [i for i in zf.infolist() if not i.is_dir()]
    exact = [i for i in infos if i.filename.strip("/") == want]
    found = exact or [i for i in infos if i.filename.endswith("/" + want)]
    if len(found) != 1:
        names = ", ".join(i.filename for i in infos[:6]) + (", ..." if len(infos) > 6 else "")
        problem = "has no member" if not found else "has several members matching"
        raise WeightsError(f"{url}: the zip {problem} {member} (it holds {names or 'nothing'}); nothing was kept; {fix}")
    return found[0]


def git_blob_id(path: Path) -> str:
    """The id git gives the file's content (SHA-1 of ``blob <size>\\0<bytes>``): what a repository's tree lists."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_digest(path: Path, name: str) -> str:
    h = hashlib.new(name)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(tmp: Path, digests: dict[str, str], ow: "OfficialWeights", name: str) -> None:
    """Accept a downloaded file (unpacked member): each published checksum must match (a zip member's MD5 or
    SHA-256 may be that of the member or of the zip as published); with none published, it must load as
    the checkpoint the detector reads."""
    published_hashes = {"SHA-256": ("sha256", ow.sha256), "MD5": ("md5", ow.md5)}
    for what, (key, want) in published_hashes.items():
        if not want:
            continue
        got = digests[key]
        if want.lower() not in (got, digests.get(f"archive_{key}")):
            raise WeightsError(f"{name}@official: the download of {ow.url} has {what} {got}, not the published "
                               f"{want}; it was not kept")
    if ow.git_blob and (got := git_blob_id(tmp)) != ow.git_blob.lower():
        raise WeightsError(f"{name}@official: the download of {ow.url} has git blob id {got}, not the published "
                           f"{ow.git_blob}; it was not kept")
    if not checksums(ow):
        check_content(tmp, ow, name)


def check_content(path: Path, ow: "OfficialWeights", name: str) -> None:
    """The file loads as the detector will load it: safetensors, or ``torch.load(weights_only=True)`` of a
    torch zip or legacy file, holding tensors (a cut body, a web page or random bytes does not)."""
    from ..api.checkpoints import load_tensors

    try:
        tensors, _ = load_tensors(path)
        if not tensors:
            raise WeightsError("it holds no tensors")
    except WeightsError as exc:
        reason = str(exc).split(": ", 1)[-1] if str(exc).startswith(str(path)) else str(exc)
        raise WeightsError(f"{name}@official: the download of {ow.url} is not a loadable checkpoint ({reason}); "
                           "no checksum is published, so it was checked by loading it; it was not kept") from None


def check(path: Path, ow: "OfficialWeights", name: str) -> None:
    """Refuse a cached file whose SHA-256 differs from the published one, or from the one recorded when it
    was fetched; a file put there by hand without a record is checked against every published checksum."""
    from ..api.checkpoints import file_sha256

    fix = f"delete it and fetch it again (`sidbench weights fetch {name}`)"
    if ow.member and not recorded_sha256(path):  # put there by hand: the published checksum may be the zip's
        fix += f", or save the zip itself as {local_zip(path)} for sidbench to unpack and check"
    want = ow.sha256 or recorded_sha256(path)
    if want:
        if (got := file_sha256(path)) != want.lower():
            raise WeightsError(f"{name}@official: {path} has SHA-256 {got}, not the "
                               f"{'published' if ow.sha256 else 'recorded'} {want}; {fix}")
        if ow.sha256 or not (ow.md5 or ow.git_blob):
            return
        if recorded_sha256(path):  # the published MD5 / blob id were checked when this recorded hash was made
            return
    if ow.md5 and (got := _file_digest(path, "md5")) != ow.md5.lower():
        raise WeightsError(f"{name}@official: {path} has MD5 {got}, not the published {ow.md5}; {fix}")
    if ow.git_blob and (got := git_blob_id(path)) != ow.git_blob.lower():
        raise WeightsError(f"{name}@official: {path} has git blob id {got}, not the published {ow.git_blob}; {fix}")


def recorded_sha256(path: Path) -> str | None:
    """The SHA-256 recorded when the file was fetched (None when it was put there by hand)."""
    try:
        value = json.loads(record_path(path).read_text()).get("sha256")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def record_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def host(url: str) -> str:
    """The host a URL downloads from (``github.com``, ``drive.google.com``, ...)."""
    return urlparse(url).netloc or url


def record(path: Path, ow: "OfficialWeights", digests: dict[str, str]) -> None:
    """``FILENAME.json`` beside the file: where it came from, when, and its SHA-256 (reused to check it later)."""
    info = {"url": ow.url, "revision": ow.revision, "member": ow.member, "sha256": digests["sha256"],
            "md5": digests.get("md5"), "bytes": path.stat().st_size, "published_sha256": ow.sha256,
            "published_md5": ow.md5, "git_blob": ow.git_blob, "repository": ow.repository,
            "checked_by": checksums(ow) or ["content (loaded with weights_only)"],
            "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if ow.member:
        info.update(archive_sha256=digests.get("archive_sha256"), archive_md5=digests.get("archive_md5"))
    write_atomic(record_path(path), json.dumps(info, indent=2) + "\n")
