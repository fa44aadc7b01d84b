"""Shared fixtures: a fresh plugin manager per test, the offline tiny backbone, generated image folders."""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO.parent / "shared" / "reference"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run the tests marked slow (ViT-L/14 on the CPU)")


def pytest_collection_modifyitems(config, items):
    """The default suite stays fast: ``slow`` tests run with --run-slow or when -m names them."""
    if config.getoption("--run-slow") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (or -m slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory):
    """Keep the feature cache and generated data out of the user's cache folder, whatever $SIDBENCH_CACHE says
    (a test run never reads or fills the user's cache); restored afterwards. A test that counts backbone passes
    sets a cache of its own (the generated images of other tests are identical, so their features are cached)."""
    before = os.environ.get("SIDBENCH_CACHE")
    os.environ["SIDBENCH_CACHE"] = str(tmp_path_factory.mktemp("sidbench-cache"))
    yield
    if before is None:
        os.environ.pop("SIDBENCH_CACHE", None)
    else:
        os.environ["SIDBENCH_CACHE"] = before


@pytest.fixture
def plugins():
    """A fresh plugin manager (never a shared global)."""
    from sidbench.registry import load_plugins

    return load_plugins()


@pytest.fixture(scope="session")
def tiny_backbone():
    from sidbench.backbones.clip import build_tiny

    return build_tiny()


@pytest.fixture
def reference_dir() -> Path:
    """The real checkpoints and demo images in ../shared/reference; skipped in a user's clone."""
    if not REFERENCE.is_dir():
        pytest.skip("../shared/reference is not present (only in the development workspace)")
    return REFERENCE


def write_image(path: Path, rng: np.random.Generator, size=(64, 64), fake: bool = False, fmt: str | None = None) -> Path:
    """A random-texture image; fakes carry a period-2 checkerboard so a probe can tell them apart."""
    h, w = size
    base = rng.normal(128, 40, (h // 8 + 1, w // 8 + 1, 3))
    img = np.kron(base, np.ones((8, 8, 1)))[:h, :w] + rng.normal(0, 8, (h, w, 3))
    if fake:
        yy, xx = np.mgrid[:h, :w]
        img += 24.0 * (((yy + xx) % 2) * 2 - 1)[..., None]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, format=fmt)
    return path


def make_folder(root: Path, splits=("a", "b"), n: int = 6, size=(64, 64), seed: int = 0) -> Path:
    """``root/<split>/{0_real,1_fake}/<i>.png`` with ``n`` images per class."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for label, sub in ((0, "0_real"), (1, "1_fake")):
            for i in range(n):
                write_image(root / split / sub / f"{i:03d}.png", rng, size, fake=bool(label))
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_folder(tmp_path / "data")


@pytest.fixture
def messages():
    """sidbench's messages on stderr as the CLI shows them (progress, warnings): a library call alone logs them to
    the ``sidbench`` logger, which shows nothing but warnings until a program asks (``show_messages``)."""
    from sidbench.api.log import messages_shown

    with messages_shown():
        yield


@pytest.fixture
def online(monkeypatch, tmp_path):
    """Downloads allowed (the offline switches unset) into a cache folder of the test's own."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SIDBENCH_OFFLINE", raising=False)
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))


@contextlib.contextmanager
def serving(httpd):
    """``httpd`` (bound to 127.0.0.1) served on a daemon thread; yields its base URL; shut down, closed and
    its thread joined on exit."""
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
