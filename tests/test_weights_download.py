"""Hostile downloads for NAME@official (issue 20, cases 9 and 15), from a local HTTP server on 127.0.0.1:
a trickle, a cut body, a web page, an endless body, random bytes, a Git LFS pointer; and zips (``member``),
MD5 and revisions. Each is refused in one line, within seconds, and nothing is kept."""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch

from sidbench.api import OfficialWeights, WeightsError
from sidbench.api.paths import cache_dir
from sidbench.registry import load_detector
from sidbench.registry import download as download_mod
from sidbench.registry import weights as weights_mod

from conftest import serving

STOP = threading.Event()


def head_bytes() -> tuple[bytes, torch.Tensor, torch.Tensor]:
    """A UnivFD head for clip-tiny (``weight`` [1, 32], ``bias`` [1]) in torch's zip format, as bytes."""
    g = torch.Generator().manual_seed(5)
    w, b = torch.randn(1, 32, generator=g), torch.randn(1, generator=g)
    buf = io.BytesIO()
    torch.save({"weight": w, "bias": b}, buf)
    return buf.getvalue(), w, b


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


HEAD, W, B = head_bytes()


def safetensors_bytes() -> bytes:
    from safetensors.torch import save

    return save({"weight": W.contiguous(), "bias": B.contiguous()})


SAFE = safetensors_bytes()
ZIP = zipped({"weights/Grag2021_latent/model_epoch_best.pth": HEAD, "weights/Grag2021_progan/model_epoch_best.pth": b"x" * 99})


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _head(self, length: int | None, kind: str = "application/octet-stream") -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def do_GET(self) -> None:  # noqa: C901 - one branch per hostile server
        name = self.path.strip("/")
        try:
            if name == "good.pth":
                self._head(len(HEAD))
                self.wfile.write(HEAD)
            elif name == "good.safetensors":
                self._head(len(SAFE))
                self.wfile.write(SAFE)
            elif name == "drip.pth":  # one byte every 0.2 s, forever (or until the client gives up)
                self._head(len(HEAD))
                for i in range(len(HEAD)):
                    if STOP.wait(0.2):
                        return
                    self.wfile.write(HEAD[i:i + 1])
                    self.wfile.flush()
            elif name == "short.pth":  # half the announced body, then the connection closes
                self._head(len(HEAD))
                self.wfile.write(HEAD[: len(HEAD) // 2])
            elif name == "page.pth":  # a web page, served as a binary
                body = b"<!DOCTYPE html><html><body>Sign in to continue</body></html>"
                self._head(len(body))
                self.wfile.write(body)
            elif name in ("endless.pth", "endless-cl.pth"):
                self._head(len(HEAD) if name == "endless-cl.pth" else None)
                deadline = time.monotonic() + 30
                while not STOP.is_set() and time.monotonic() < deadline:
                    self.wfile.write(HEAD)
            elif name == "random.pth":
                body = bytes(range(256)) * 40
                self._head(len(body))
                self.wfile.write(body)
            elif name == "lfs.pth":
                body = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 5155\n"
                self._head(len(body))
                self.wfile.write(body)
            elif name == "models.zip":
                self._head(len(ZIP), "application/zip")
                self.wfile.write(ZIP)
            else:
                self.send_error(404)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def server():
    STOP.clear()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    with serving(httpd) as base:
        try:
            yield base
        finally:
            STOP.set()  # the dripping and endless handlers end before the server shuts down


@pytest.fixture
def online(online, monkeypatch):
    """conftest's ``online``, with a 5 s socket timeout."""
    monkeypatch.setattr(download_mod, "TIMEOUT_S", 5)


def with_official(plugins, **fields):
    spec = plugins.detector("univfd")
    plugins.specs["detector"][spec.name] = dataclasses.replace(spec, official_weights=OfficialWeights(**fields))
    return plugins


def folder() -> Path:
    return cache_dir() / "weights" / "univfd.progan"


def refused(plugins, match: str, limit_s: float = 10) -> str:
    start = time.monotonic()
    with pytest.raises(WeightsError, match=match) as info:
        load_detector("univfd@official", backbone="clip-tiny", plugins=plugins)
    assert time.monotonic() - start < limit_s
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert not folder().exists() or not any(folder().iterdir()), "nothing of a failed download is kept"
    return message


def test_a_trickle_fails_at_the_minimum_rate(server, online, plugins, monkeypatch):
    monkeypatch.setattr(download_mod, "RATE_WINDOW_S", 1.0)
    monkeypatch.setattr(download_mod, "MIN_RATE", 100)
    with_official(plugins, url=f"{server}/drip.pth", filename="fc_weights.pth", sha256=hashlib.sha256(HEAD).hexdigest())
    refused(plugins, r"sends \d+ bytes/s, under the minimum of 100 bytes/s; nothing was kept")


def test_a_download_has_an_overall_deadline(server, online, plugins, monkeypatch):
    monkeypatch.setattr(download_mod, "DEADLINE_S", 1.0)
    with_official(plugins, url=f"{server}/drip.pth", filename="fc_weights.pth")
    refused(plugins, r"did not finish within 1.0 s")


def test_a_body_shorter_than_its_content_length_is_a_failure(server, online, plugins):
    with_official(plugins, url=f"{server}/short.pth", filename="fc_weights.pth")
    refused(plugins, rf"ended after {len(HEAD) // 2} of the {len(HEAD)} bytes announced")


def test_an_endless_body_behind_a_content_length_is_read_to_that_length_only(server, online, plugins):
    with_official(plugins, url=f"{server}/endless-cl.pth", filename="fc_weights.pth")
    start = time.monotonic()
    load_detector("univfd@official", backbone="clip-tiny", plugins=plugins)
    assert time.monotonic() - start < 10 and (folder() / "fc_weights.pth").read_bytes() == HEAD


def test_an_endless_body_stops_at_the_size_limit(server, online, plugins, monkeypatch):
    monkeypatch.setattr(download_mod, "MAX_BYTES", 1 << 20)
    with_official(plugins, url=f"{server}/endless.pth", filename="fc_weights.pth")
    refused(plugins, r"sent more than 1048576 bytes")


def test_a_web_page_served_as_a_binary_is_refused(server, online, plugins):
    with_official(plugins, url=f"{server}/page.pth", filename="fc_weights.pth")
    refused(plugins, r"sent a web page instead of the checkpoint")


def test_without_a_published_hash_the_content_is_checked(server, online, plugins):
    with_official(plugins, url=f"{server}/random.pth", filename="fc_weights.pth")
    message = refused(plugins, r"is not a loadable checkpoint .*checked by loading it; it was not kept")
    assert "Traceback" not in message


def test_a_git_lfs_pointer_is_not_the_file(server, online, plugins):
    with_official(plugins, url=f"{server}/lfs.pth", filename="fc_weights.pth")
    refused(plugins, r"sent a Git LFS pointer instead of the file")


def test_a_good_file_without_hash_is_kept_with_its_sha256(server, online, plugins):
    with_official(plugins, url=f"{server}/good.pth", filename="fc_weights.pth")
    det = load_detector("univfd@official", backbone="clip-tiny", plugins=plugins)
    y = torch.randn(3, 32)
    torch.testing.assert_close(det.score({"image_embed": y}), (y @ W.T + B)[:, 0])
    assert weights_mod.recorded_sha256(folder() / "fc_weights.pth") == hashlib.sha256(HEAD).hexdigest()


def test_a_safetensors_file_without_hash_is_content_checked_as_safetensors(server, online, plugins):
    with_official(plugins, url=f"{server}/good.safetensors", filename="fc_weights.safetensors")
    det = load_detector("univfd@official", backbone="clip-tiny", plugins=plugins)
    y = torch.randn(3, 32)
    torch.testing.assert_close(det.score({"image_embed": y}), (y @ W.T + B)[:, 0])


def test_md5_is_checked_like_sha256(server, online, plugins):
    with_official(plugins, url=f"{server}/good.pth", filename="fc_weights.pth", md5="0" * 32)
    refused(plugins, rf"has MD5 {hashlib.md5(HEAD).hexdigest()}, not the published 0{{32}}; it was not kept")
    with_official(plugins, url=f"{server}/good.pth", filename="fc_weights.pth", md5=hashlib.md5(HEAD).hexdigest())
    assert load_detector("univfd@official", backbone="clip-tiny", plugins=plugins).fitted
    kept = folder() / "fc_weights.pth"
    kept.write_bytes(kept.read_bytes() + b"!")  # damaged in the cache: refused on the next use
    with pytest.raises(WeightsError, match="delete it and fetch it again"):
        load_detector("univfd@official", backbone="clip-tiny", plugins=plugins)


def test_a_zip_member_is_unpacked_checked_and_the_zip_not_kept(server, online, plugins):
    member = "Grag2021_latent/model_epoch_best.pth"  # the zip wraps it in one more folder: found by suffix
    with_official(plugins, url=f"{server}/models.zip", filename="fc_weights.pth", member=member,
                  sha256=hashlib.sha256(HEAD).hexdigest(), revision="v1")
    det = load_detector("univfd@official", backbone="clip-tiny", plugins=plugins)
    assert (folder() / "fc_weights.pth").read_bytes() == HEAD and det.fitted
    assert sorted(p.name for p in folder().iterdir()) == ["fc_weights.pth", "fc_weights.pth.json"]
    import json

    rec = json.loads((folder() / "fc_weights.pth.json").read_text())
    assert rec["member"] == member and rec["revision"] == "v1"
    assert rec["archive_sha256"] == hashlib.sha256(ZIP).hexdigest()


def test_a_zip_member_without_hash_is_content_checked(server, online, plugins):
    with_official(plugins, url=f"{server}/models.zip", filename="fc_weights.pth",
                  member="weights/Grag2021_progan/model_epoch_best.pth")
    refused(plugins, r"is not a loadable checkpoint")
    with_official(plugins, url=f"{server}/models.zip", filename="fc_weights.pth", member="nope.pth")
    refused(plugins, r"the zip has no member nope.pth \(it holds weights/Grag2021_latent/model_epoch_best.pth")


def test_the_md5_of_the_published_zip_also_vouches_for_its_member(server, online, plugins):
    with_official(plugins, url=f"{server}/models.zip", filename="fc_weights.pth", md5=hashlib.md5(ZIP).hexdigest(),
                  member="weights/Grag2021_latent/model_epoch_best.pth")
    assert load_detector("univfd@official", backbone="clip-tiny", plugins=plugins).fitted


def test_offline_names_the_zip_member(plugins, monkeypatch, tmp_path):
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SIDBENCH_OFFLINE", "1")
    with_official(plugins, url="https://example.org/models.zip", filename="fc_weights.pth", member="a/b.pth")
    with pytest.raises(WeightsError, match=r"fetch https://example.org/models.zip \(a zip\) where the network is "
                                           r"reachable and save it as .*fc_weights.pth.zip \(sidbench unpacks its "
                                           r"member a/b.pth and checks it\), or save that member itself as "
                                           r".*fc_weights.pth$"):
        load_detector("univfd@official", backbone="clip-tiny", plugins=plugins)


def test_a_zip_saved_by_hand_is_unpacked_and_checked_offline(plugins, monkeypatch, tmp_path):
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SIDBENCH_OFFLINE", "1")
    member = "weights/Grag2021_latent/model_epoch_best.pth"
    with_official(plugins, url="https://example.org/models.zip", filename="fc_weights.pth", member=member,
                  md5="1" * 32)
    folder().mkdir(parents=True)
    (folder() / "fc_weights.pth.zip").write_bytes(ZIP)
    with pytest.raises(WeightsError, match="not the published 1{32}; it was not kept"):
        load_detector("univfd@official", backbone="clip-tiny", plugins=plugins)
    assert not (folder() / "fc_weights.pth").exists()
    with_official(plugins, url="https://example.org/models.zip", filename="fc_weights.pth", member=member,
                  md5=hashlib.md5(ZIP).hexdigest())  # the zip's MD5, as an author would publish it
    det = load_detector("univfd@official", backbone="clip-tiny", plugins=plugins)
    assert det.fitted and (folder() / "fc_weights.pth").read_bytes() == HEAD


def test_a_google_drive_folder_says_what_to_do(online, plugins):
    url = "https://drive.google.com/drive/folders/abc?usp=sharing"
    with_official(plugins, url=url, filename="model.pth")
    with pytest.raises(WeightsError, match=r"published in a Google Drive folder.*download the checkpoint it holds and save it as"):
        load_detector("univfd@official", backbone="clip-tiny", plugins=plugins)


def test_weights_list_shows_host_licence_checksum_and_revision(capsys):
    from sidbench.cli import main

    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    table = out.split("\n\n", 1)[1]
    header = table.splitlines()[0].split()
    assert header[:6] == ["name", "fetched", "host", "checksum", "revision", "licence"]
    npr = next(line for line in table.splitlines() if line.startswith("npr.progan4 "))
    assert "raw.githubusercontent.com" in npr and "git blob" in npr and "73cde1ced212" in npr
