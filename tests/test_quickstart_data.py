"""The offline quickstart benchmark: deterministic, complete, and carrying real (but not trivial) traces."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sidbench.api import FAKE, REAL
from sidbench.api.specs import resolve_factory
import sidbench.data.quickstart as qs
import sidbench.datasets.quickstart as qs_plugin

SMALL = {"train": 4, "val": 2, "test": 16}


def tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def grey(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float64).mean(axis=2)


def power(img: np.ndarray) -> np.ndarray:
    return np.abs(np.fft.fft2(img - img.mean())) ** 2 / img.size


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return qs.ensure_quickstart(tmp_path_factory.mktemp("qs") / "quickstart", counts=SMALL, workers=2)


@pytest.fixture(scope="module")
def layout() -> qs.QuickstartLayout:
    return resolve_factory(qs_plugin.sidbench_datasets()[0].factory)()


def images(layout, root: Path, split: str, generator: str, label: int) -> list[np.ndarray]:
    return [grey(r.path) for r in layout.records(root, split) if r.split == generator and r.label == label]


def test_generation_is_deterministic(root: Path, tmp_path: Path) -> None:
    again = qs.generate_quickstart(tmp_path / "again", counts=SMALL, workers=1)
    assert tree_hashes(again) == tree_hashes(root)
    assert qs.read_manifest(again)["sha256"] == qs.content_hash(root)


def test_manifest_and_plugin_spec(root: Path, layout, tmp_path: Path) -> None:
    manifest = json.loads((root / qs.MANIFEST).read_text())
    assert manifest["version"] == qs.VERSION and manifest["seed"] == qs.SEED and manifest["counts"] == SMALL
    spec = qs_plugin.sidbench_datasets()[0]
    assert spec.name == layout.name == "quickstart" and spec.priority == 10
    assert layout.matches(root) and not layout.matches(tmp_path)
    assert qs.TRAINING_GENERATORS == ("gan_a", "diff_a")


@pytest.mark.parametrize("split", qs.SPLITS)
def test_records(root: Path, layout, split: str) -> None:
    records = layout.records(root, split=split)
    assert records == layout.records(root, split=split)
    assert [r.path for r in records] == sorted(r.path for r in records)
    gens = qs.SPLIT_GENERATORS["test" if split == "test_jpeg" else split]
    n = SMALL["test" if split == "test_jpeg" else split]
    suffix = f"_q{qs.JPEG_QUALITY}" if split == "test_jpeg" else ""
    for gen in gens:
        for label in (REAL, FAKE):
            mine = [r for r in records if r.split == gen + suffix and r.label == label]
            assert len(mine) == n
            assert all(r.group == ("gan" if gen.startswith("gan") else "diffusion") for r in mine)
            assert all(r.generator == (gen if label == FAKE else "") for r in mine)
    assert len(records) == 2 * n * len(gens)
    assert len({r.key for r in records}) == len(records)


@pytest.mark.parametrize("split", qs.SPLITS)
def test_size_and_format_match_across_classes(root: Path, layout, split: str) -> None:
    expected = "JPEG" if split == "test_jpeg" else "PNG"
    for r in layout.records(root, split)[:: 3]:
        with Image.open(r.path) as im:
            assert (im.format, im.size, im.mode) == (expected, (qs.SIZE, qs.SIZE), "RGB")


def test_reals_differ_between_splits(root: Path, layout) -> None:
    hashes = [hashlib.sha256(Path(r.path).read_bytes()).hexdigest()
              for split in ("train", "val", "test") for r in layout.records(root, split)]
    assert len(set(hashes)) == len(hashes)


def test_gan_a_has_a_checkerboard(root: Path, layout) -> None:
    k = qs.SIZE // 2
    real = [np.log(power(g)[k, k]) for g in images(layout, root, "test", "gan_a", REAL)]
    fake = [np.log(power(g)[k, k]) for g in images(layout, root, "test", "gan_a", FAKE)]
    assert np.mean(fake) > np.mean(real) + 1.0


def test_diff_a_lacks_high_frequencies(root: Path, layout) -> None:
    f = np.fft.fftfreq(qs.SIZE)
    on_grid = np.isclose((f * 8) % 1, 0) | np.isclose((f * 8) % 1, 1)  # the period-8 residue's harmonics
    high = (np.hypot(f[:, None], f[None, :]) > 0.3) & ~on_grid[:, None] & ~on_grid[None, :]

    def hf(g: np.ndarray) -> float:
        return float(np.log(power(g)[high].mean()))

    real = [hf(g) for g in images(layout, root, "test", "diff_a", REAL)]
    fake = [hf(g) for g in images(layout, root, "test", "diff_a", FAKE)]
    assert np.mean(fake) < np.mean(real) - 0.5


def test_brightness_is_not_a_shortcut(root: Path, layout) -> None:
    for split in ("train", "test"):
        records = layout.records(root, split)
        means = {lab: np.array([grey(r.path).mean() for r in records if r.label == lab]) for lab in (REAL, FAKE)}
        diff = abs(means[REAL].mean() - means[FAKE].mean())
        se = np.sqrt(means[REAL].var() / len(means[REAL]) + means[FAKE].var() / len(means[FAKE]))
        assert diff < max(4.0, 3 * se), (split, diff, se)


def test_ensure_reuses_a_complete_folder_and_repairs_a_broken_one(tmp_path: Path, monkeypatch) -> None:
    counts = {"train": 1, "val": 1, "test": 1}
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    root = qs.ensure_quickstart(counts=counts, workers=1)
    assert root == tmp_path / "cache" / f"quickstart-v{qs.VERSION}" and qs.is_complete(root, counts)

    calls: list[tuple] = []
    original = qs.generate_quickstart
    monkeypatch.setattr(qs, "generate_quickstart", lambda *a, **k: calls.append(a) or original(*a, **k))
    before = tree_hashes(root)
    assert qs.ensure_quickstart(counts=counts) == root and calls == []

    (root / qs.MANIFEST).unlink()
    assert not qs.is_complete(root, counts)
    assert qs.ensure_quickstart(counts=counts, workers=1) == root and len(calls) == 1
    assert tree_hashes(root) == before
    assert not list(tmp_path.glob("cache/*.tmp-*")) and not list(tmp_path.glob("cache/*.old-*"))


def test_module_does_not_import_torch() -> None:
    code = "import sys, sidbench.data.quickstart; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
