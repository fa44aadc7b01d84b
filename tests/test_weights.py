"""NAME@official: the published checkpoint is downloaded once (from a local HTTP server on 127.0.0.1 here),
checked, kept in $SIDBENCH_CACHE/weights/NAME/ and loaded as a local file; offline, one line says what to do."""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest
import torch

from sidbench.api import OfficialWeights, WeightsError
from sidbench.api.paths import cache_dir
from sidbench.cli import main
from sidbench.registry import load_detector

from conftest import serving


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        if self.path.endswith(".html"):
            body = b"<html>Google Drive can't scan this file for viruses</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """(base URL, served folder, list of request paths); the server thread stops at teardown, and by itself
    after 120 s at the latest."""
    root = tmp_path / "served"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Handler(*a, directory=str(root)))
    httpd.requests = []  # type: ignore[attr-defined]
    httpd.timeout = 5
    with serving(httpd) as base:
        stop = threading.Timer(120, httpd.shutdown)
        stop.daemon = True
        stop.start()
        try:
            yield base, root, httpd.requests
        finally:
            stop.cancel()


def official_head(root: Path, name: str = "fc_weights.pth") -> tuple[Path, torch.Tensor, torch.Tensor]:
    """A UnivFD head in the official format (``weight`` [1, E], ``bias`` [1]) for clip-tiny (E = 32)."""
    g = torch.Generator().manual_seed(3)
    w, b = torch.randn(1, 32, generator=g), torch.randn(1, generator=g)
    path = root / name
    torch.save({"weight": w, "bias": b}, path)
    return path, w, b


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def with_official(plugins, name: str, **fields):
    spec = plugins.detector(name)
    plugins.specs["detector"][spec.name] = dataclasses.replace(spec, official_weights=OfficialWeights(**fields))
    return plugins


def test_official_is_fetched_once_checked_and_loaded(server, online, plugins):
    base, root, requests = server
    path, w, b = official_head(root)
    with_official(plugins, "univfd", url=f"{base}/fc_weights.pth", filename="fc_weights.pth", sha256=sha256(path))
    det = load_detector("univfd@official", backbone="clip-tiny", plugins=plugins)
    kept = cache_dir() / "weights" / "univfd.progan" / "fc_weights.pth"
    assert det.weights_path == str(kept) and kept.read_bytes() == path.read_bytes()
    y = torch.randn(5, 32)
    torch.testing.assert_close(det.score({"image_embed": y}), (y @ w.T + b)[:, 0])
    again = load_detector("univfd.progan", weights="official", backbone="clip-tiny", plugins=plugins)
    assert requests == ["/fc_weights.pth"] and again.weights_path == str(kept)  # downloaded once
    assert json.loads((kept.parent / "fc_weights.pth.json").read_text())["sha256"] == sha256(path)
    assert sorted(p.name for p in kept.parent.iterdir()) == ["fc_weights.pth", "fc_weights.pth.json"]  # no .part


def test_a_wrong_checksum_keeps_nothing(server, online, plugins):
    base, root, _ = server
    official_head(root)
    with_official(plugins, "univfd", url=f"{base}/fc_weights.pth", filename="fc_weights.pth", sha256="0" * 64)
    with pytest.raises(WeightsError, match="has SHA-256 [0-9a-f]{64}, not the published 0000.*it was not kept"):
        load_detector("univfd@official", backbone="clip-tiny", plugins=plugins)
    folder = cache_dir() / "weights" / "univfd.progan"
    assert not folder.exists() or not any(folder.iterdir())


def test_git_blob_id_is_checked(server, online, plugins):
    base, root, _ = server
    path, _, _ = official_head(root)
    blob = hashlib.sha1(f"blob {path.stat().st_size}\0".encode() + path.read_bytes()).hexdigest()
    with_official(plugins, "univfd", url=f"{base}/fc_weights.pth", filename="fc_weights.pth", git_blob="f" * 40)
    with pytest.raises(WeightsError, match=f"has git blob id {blob}, not the published f+"):
        load_detector("univfd@official", backbone="clip-tiny", plugins=plugins)
    with_official(plugins, "univfd", url=f"{base}/fc_weights.pth", filename="fc_weights.pth", git_blob=blob)
    assert load_detector("univfd@official", backbone="clip-tiny", plugins=plugins).weights_path


def test_unknown_checksum_prints_and_records_the_hash(messages, server, online, plugins, capsys):
    base, root, _ = server
    path, _, _ = official_head(root)
    with_official(plugins, "univfd", url=f"{base}/fc_weights.pth", filename="fc_weights.pth")
    load_detector("univfd@official", backbone="clip-tiny", plugins=plugins)
    err = capsys.readouterr().err
    assert f"no published SHA-256 to check against; the file's SHA-256 is {sha256(path)}" in err
    kept = cache_dir() / "weights" / "univfd.progan" / "fc_weights.pth"
    # the recorded hash guards the cached copy from now on
    kept.write_bytes(kept.read_bytes() + b"x")
    with pytest.raises(WeightsError, match="delete it and fetch it again"):
        load_detector("univfd@official", backbone="clip-tiny", plugins=plugins)


@pytest.mark.parametrize("served, message", [
    ("missing.pth", "HTTP 404"),
    ("page.html", "sent a web page instead of the checkpoint"),
])
def test_download_failures_are_one_line(server, online, plugins, served, message):
    base, _, _ = server
    with_official(plugins, "univfd", url=f"{base}/{served}", filename="fc_weights.pth")
    with pytest.raises(WeightsError, match=message) as info:
        load_detector("univfd@official", backbone="clip-tiny", plugins=plugins)
    assert len(str(info.value).splitlines()) == 1 and "save it as" in str(info.value)


def test_offline_says_which_url_and_where(server, plugins, monkeypatch, tmp_path):
    base, root, requests = server
    path, _, _ = official_head(root)
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SIDBENCH_OFFLINE", "1")
    url = f"{base}/fc_weights.pth"
    with_official(plugins, "univfd", url=url, filename="fc_weights.pth", sha256=sha256(path))
    kept = tmp_path / "cache" / "weights" / "univfd.progan" / "fc_weights.pth"
    with pytest.raises(WeightsError) as info:
        load_detector("univfd@official", backbone="clip-tiny", plugins=plugins)
    assert str(info.value) == (f"univfd.progan@official is not downloaded yet and SIDBENCH_OFFLINE is set (offline): "
                               f"fetch {url} where the network is reachable and save it as {kept}")
    assert requests == []
    kept.parent.mkdir(parents=True)  # put there by hand: it loads offline, after the same check
    kept.write_bytes(path.read_bytes())
    assert load_detector("univfd@official", backbone="clip-tiny", plugins=plugins).weights_path == str(kept)


def test_a_detector_without_published_weights_says_so(plugins):
    with pytest.raises(WeightsError, match="'tip_adapter' has no published checkpoint"):
        load_detector("tip_adapter@official", backbone="clip-tiny", plugins=plugins)


def test_weights_cli_list_and_fetch(server, online, tmp_path, capsys):
    base, root, _ = server
    path, _, _ = official_head(root, "probe.pth")
    plugin = tmp_path / "plugins" / "published.py"
    plugin.parent.mkdir()
    plugin.write_text(f'''
from sidbench.api import DetectorSpec, OfficialWeights, hookimpl


@hookimpl
def sidbench_detectors():
    return [DetectorSpec(name="published_probe", factory="sidbench.detectors.univfd:UnivFD", features=("image_embed",),
                         needs_fit=True, options={{}}, official_weights=OfficialWeights(
                             url="{base}/probe.pth", filename="probe.pth", sha256="{sha256(path)}"))]
''')
    assert main(["weights", "list", "--plugins-dir", str(plugin.parent)]) == 0
    out = capsys.readouterr().out
    assert {"rine.progan2", "univfd.progan", "published_probe"} <= set(out.split())
    assert f"{base}/probe.pth" in out
    assert main(["weights", "fetch", "published_probe", "--plugins-dir", str(plugin.parent)]) == 0
    assert f"published_probe: {cache_dir() / 'weights' / 'published_probe' / 'probe.pth'} (sha256 {sha256(path)})" \
        in capsys.readouterr().out


def test_published_files_are_pinned_and_match_the_reference_copies(plugins, reference_dir):
    from sidbench.registry.weights import git_blob_id

    for name in ("rine.progan1", "rine.progan2", "rine.progan4", "rine.ldm", "univfd.progan"):
        ow = plugins.detector(name).official_weights
        assert ow.url.startswith("https://raw.githubusercontent.com/") and ow.url.endswith("/" + ow.filename)
        assert ow.git_blob and len(ow.git_blob) == 40 and ow.repository.startswith("https://github.com/")
    for name, file in (("rine.progan2", "rine_2class_trainable.pth"), ("univfd.progan", "univfd_fc_weights.pth")):
        ow = plugins.detector(name).official_weights
        assert ow.sha256 == sha256(reference_dir / file) and ow.git_blob == git_blob_id(reference_dir / file)


def test_a_reference_copy_put_in_place_by_hand_loads_offline(plugins, reference_dir, monkeypatch, tmp_path):
    import shutil

    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SIDBENCH_OFFLINE", "1")
    kept = tmp_path / "cache" / "weights" / "rine.progan2" / "model_2class_trainable.pth"
    kept.parent.mkdir(parents=True)
    shutil.copy(reference_dir / "rine_2class_trainable.pth", kept)
    det = load_detector("rine.progan2@official", plugins=plugins)
    assert det.weights_path == str(kept) and det.fitted
