"""Published checkpoints by name: ``NAME@official``.

The spec records where the paper's code published its checkpoint (:class:`sidbench.api.OfficialWeights`).
The file is downloaded once into ``$SIDBENCH_CACHE/weights/NAME/FILENAME``, checked against its SHA-256 and
its git blob id where they are known (else its SHA-256 is printed and recorded beside it), and then loaded as
any local checkpoint. Offline (``SIDBENCH_OFFLINE`` or ``HF_HUB_OFFLINE`` set) or without network, one line
says which URL to fetch and where to put the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..api.errors import WeightsError
from ..api.paths import cache_dir, file_mode, write_atomic

if TYPE_CHECKING:
    from ..api.specs import DetectorSpec, OfficialWeights

OFFICIAL = "official"  # the checkpoint name that means "the published file"
OFFLINE_ENV = ("SIDBENCH_OFFLINE", "HF_HUB_OFFLINE")
TIMEOUT_S = 30  # per network read: a dead connection fails instead of hanging
CHUNK = 1 << 20

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"sidbench: {message}", file=sys.stderr)


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


def fetch_official(spec: "DetectorSpec", log: Log = _stderr) -> Path:
    """The published checkpoint of ``spec`` on disk: the cached copy (checked again), or downloaded once."""
    ow = published(spec)
    path = official_path(spec)
    if path.is_file():
        check(path, ow, spec.name)
        return path
    var = offline()
    if var:
        raise WeightsError(f"{spec.name}@official is not downloaded yet and {var} is set (offline): fetch {ow.url} "
                           f"where the network is reachable and save it as {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    sha = download(direct_url(ow.url), path, lambda tmp, sha256: check(tmp, ow, spec.name, sha256))
    record(path, ow, sha)
    if ow.sha256 is None:
        log(f"{spec.name}@official: no published SHA-256 to check against{' (git blob id checked)' if ow.git_blob else ''}; "
            f"the file's SHA-256 is {sha} (recorded in {record_path(path)})")
    else:
        log(f"{spec.name}@official: downloaded {ow.url} to {path} (SHA-256 checked)")
    return path


def direct_url(url: str) -> str:
    """The download link of a share link: Dropbox's ``dl=0`` becomes ``dl=1``; a Google Drive file page
    becomes its ``uc?export=download`` link (Drive serves small files there directly, and a confirmation
    page instead of large ones, which :func:`download` reports)."""
    if "dropbox.com" in url:
        return re.sub(r"([?&])dl=0", r"\1dl=1", url) if "dl=0" in url else url + ("&" if "?" in url else "?") + "dl=1"
    m = re.match(r"https://drive\.google\.com/file/d/([^/]+)", url)
    return f"https://drive.google.com/uc?export=download&id={m.group(1)}" if m else url


def download(url: str, dest: Path, verify: Callable[[Path, str], None]) -> str:
    """Stream ``url`` to a temporary file beside ``dest``, ``verify(file, sha256)`` it, then rename it; returns
    its SHA-256.
    Nothing is left behind when any step fails."""
    import urllib.error
    import urllib.request

    from .. import __version__

    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    fix = f"download it by hand and save it as {dest}"
    try:
        request = urllib.request.Request(url, headers={"User-Agent": f"sidbench/{__version__}"})
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            if response.headers.get("Content-Type", "").startswith("text/html"):
                raise WeightsError(f"{url} sent a web page instead of the checkpoint (Google Drive does for large "
                                   f"files, as do expired or private links); open it in a browser, {fix}")
            sha = _stream(response, tmp, int(response.headers.get("Content-Length") or 0), url)
        verify(tmp, sha)
        os.chmod(tmp, file_mode())
        os.replace(tmp, dest)
        return sha
    except urllib.error.HTTPError as exc:
        raise WeightsError(f"{url}: HTTP {exc.code} {exc.reason}; {fix}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise WeightsError(f"could not download {url} ({reason}); {fix}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _stream(response, tmp: Path, total: int, url: str) -> str:
    from tqdm.auto import tqdm

    h = hashlib.sha256()
    with open(tmp, "wb") as f, tqdm(total=total or None, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                                    disable=not sys.stderr.isatty(), leave=False) as bar:
        while chunk := response.read(CHUNK):
            f.write(chunk)
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def git_blob_id(path: Path) -> str:
    """The id git gives the file's content (SHA-1 of ``blob <size>\\0<bytes>``): what a repository's tree lists."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def check(path: Path, ow: "OfficialWeights", name: str, downloaded_sha256: str | None = None) -> None:
    """Refuse a file whose SHA-256 or git blob id differs from the published one (a cached file without a
    published SHA-256 is compared with the one recorded when it was fetched)."""
    from ..api.checkpoints import file_sha256

    downloaded = downloaded_sha256 is not None
    want_sha = ow.sha256 or (None if downloaded else recorded_sha256(path))
    expected = {"SHA-256": (want_sha, lambda: downloaded_sha256 or file_sha256(path)),
                "git blob id": (ow.git_blob, lambda: git_blob_id(path))}
    for what, (want, have) in expected.items():
        if want and (got := have()) != want.lower():
            where = f"the download of {ow.url}" if downloaded else str(path)
            fix = "it was not kept" if downloaded else f"delete it and fetch it again (`sidbench weights fetch {name}`)"
            raise WeightsError(f"{name}@official: {where} has {what} {got}, not the published {want}; {fix}")


def recorded_sha256(path: Path) -> str | None:
    """The SHA-256 recorded when the file was fetched (None when it was put there by hand)."""
    try:
        return json.loads(record_path(path).read_text()).get("sha256")
    except (OSError, ValueError):
        return None


def record_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def record(path: Path, ow: "OfficialWeights", sha256: str) -> None:
    """``FILENAME.json`` beside the file: where it came from, when, and its SHA-256 (reused to check it later)."""
    info = {"url": ow.url, "sha256": sha256, "bytes": path.stat().st_size, "published_sha256": ow.sha256,
            "git_blob": ow.git_blob, "repository": ow.repository,
            "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_atomic(record_path(path), json.dumps(info, indent=2) + "\n")
