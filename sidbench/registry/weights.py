"""Published checkpoints by name: ``NAME@official``.

The spec records where the paper's code published its checkpoint (:class:`sidbench.api.OfficialWeights`).
The file is downloaded once into ``$SIDBENCH_CACHE/weights/NAME/FILENAME`` and checked before it is kept:
against its published SHA-256, MD5 and git blob id where they are known, and, where none is published, by
loading it the way the detector will (``torch.load(weights_only=True)`` or safetensors), after which its
SHA-256 is printed and recorded beside it. A URL that serves a zip (``member``) is unpacked: only that member
is kept. A download has an overall deadline and a minimum rate, must deliver the Content-Length the server
announced, and leaves nothing behind when any of this fails (:mod:`sidbench.registry.download`). Offline (``SIDBENCH_OFFLINE`` or
``HF_HUB_OFFLINE`` set) or without network, one line says which URL to fetch and where to put the file.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlparse

from ..api.errors import WeightsError
from ..api.log import note
from ..api.paths import cache_dir, file_mode, write_atomic
from .download import direct_url, download, file_digests, git_blob_id, partial, unpack_member

if TYPE_CHECKING:
    from ..api.specs import DetectorSpec, OfficialWeights

OFFICIAL = "official"  # the checkpoint name that means "the published file"
OFFLINE_ENV = ("SIDBENCH_OFFLINE", "HF_HUB_OFFLINE")

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
    digests = {f"archive_{h}": value for h, value in file_digests(archive).items()}  # one read of a zip of GBs
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
    if ow.md5 and (got := file_digests(path, ("md5",))["md5"]) != ow.md5.lower():
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
