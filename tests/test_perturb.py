"""Perturbations do what their names say, deterministically, and survive pickling (spawned workers)."""
from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from PIL import Image

# libjpeg's standard tables (ITU-T T.81 Annex K), natural order.
LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
        14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
        49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
CHROMA = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
          47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32


def scaled(table, quality):
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return sorted(min(255, max(1, (t * scale + 50) // 100)) for t in table)


def estimate_quality(jpeg_bytes: bytes) -> int:
    """The libjpeg quality whose scaled standard tables equal the file's tables."""
    with Image.open(io.BytesIO(jpeg_bytes)) as im:
        tables = im.quantization
    found = [q for q in range(1, 101)
             if sorted(tables[0]) == scaled(LUMA, q) and sorted(tables[1]) == scaled(CHROMA, q)]
    assert len(found) >= 1, "tables are not libjpeg's scaled standard tables"
    return found[0]


@pytest.fixture
def img():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 255, (9, 11, 3))
    arr = np.kron(base, np.ones((8, 8, 1)))[:70, :83] + rng.normal(0, 10, (70, 83, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def perturbation(text, plugins):
    from sidbench.data.perturb import parse_perturbations

    return parse_perturbations(text, plugins, include_clean=False)


def test_jpeg_defaults_and_quality_read_back(plugins, img):
    perts = perturbation("jpeg", plugins)
    assert [p.name for p in perts] == ["jpeg40", "jpeg65", "jpeg90"]
    for p, q in zip(perts, (40, 65, 90)):
        step = p.steps[0][2]
        data = step.encode(img)
        assert estimate_quality(data) == q
        out = p.apply(img, "k")
        assert np.array_equal(np.asarray(out), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
        assert not np.array_equal(np.asarray(out), np.asarray(img))


def _pass_uint8(a: np.ndarray, k: np.ndarray, axis: int) -> np.ndarray:
    """One 1-D Gaussian pass along ``axis`` with reflect (half-sample symmetric) borders, accumulated in
    float64 as w0 x0 + sum_j w_j (x_-j + x_j), then stored into uint8 (C truncation toward zero)."""
    r = len(k) // 2
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r, r)
    x = np.pad(a.astype(np.float64), pad, mode="symmetric")
    n = a.shape[axis]
    take = lambda off: np.take(x, np.arange(r + off, r + off + n), axis=axis)  # noqa: E731
    acc = k[r] * take(0)
    for j in range(1, r + 1):
        acc = acc + (take(-j) + take(j)) * k[r + j]
    return acc.astype(np.uint8)


def test_blur_writes_each_pass_into_uint8_as_cnndetection(plugins, img):
    """CNNDetection/RINE blur into the uint8 image: rows then columns, each pass truncated to uint8."""
    for sigma in (1.5, 0.7, 3.0):
        out = np.asarray(perturbation(f"blur:{sigma}", plugins)[0].apply(img, "k"))
        r = int(4 * sigma + 0.5)
        x = np.arange(-r, r + 1)
        k = np.exp(-0.5 / sigma**2 * x**2)
        k /= k.sum()
        want = np.stack([_pass_uint8(_pass_uint8(np.asarray(img)[:, :, c], k, 0), k, 1) for c in range(3)], -1)
        assert np.array_equal(out, want), sigma
        rounded = np.clip(np.rint(_float_blur(np.asarray(img), k)), 0, 255)
        assert (out.astype(float) - rounded).mean() < -0.5  # the truncation darkens: ~1 grey level on average


def _float_blur(a: np.ndarray, k: np.ndarray) -> np.ndarray:
    r = len(k) // 2
    x = np.pad(a.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="symmetric")
    x = sum(k[i] * x[i:i + a.shape[0]] for i in range(2 * r + 1))
    return sum(k[i] * x[:, i:i + a.shape[1]] for i in range(2 * r + 1))


def test_resize_and_crop_sizes(plugins, img):
    assert perturbation("resize:0.5", plugins)[0].apply(img, "k").size == (42, 35)  # round(83/2), 70/2
    assert perturbation("resize:1.5", plugins)[0].apply(img, "k").size == (124, 105)
    c = perturbation("crop:0.5", plugins)[0].apply(img, "k")
    assert c.size == (42, 35)
    left, top = (83 - 42) // 2, (70 - 35) // 2
    assert np.array_equal(np.asarray(c), np.asarray(img)[top:top + 35, left:left + 42])


def test_noise_std_and_determinism(plugins):
    flat = Image.new("RGB", (128, 128), (128, 128, 128))
    p = perturbation("noise:10", plugins)[0]
    a, b, c = (np.asarray(p.apply(flat, k), dtype=np.float64) for k in ("x", "x", "y"))
    assert abs((a - 128).std() - 10) < 0.3 and abs((a - 128).mean()) < 0.3
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_chains_values_and_webp(plugins, img):
    perts = perturbation("blur:1+jpeg:75,95;webp:50", plugins)
    assert [p.name for p in perts] == ["blur1+jpeg75", "blur1+jpeg95", "webp50"]
    out = perts[0].apply(img, "k")
    blurred = perturbation("blur:1", plugins)[0].apply(img, "k")
    expected = Image.open(io.BytesIO(perts[0].steps[1][2].encode(blurred))).convert("RGB")
    assert np.array_equal(np.asarray(out), np.asarray(expected))
    w = np.asarray(perts[2].apply(img, "k"), dtype=float)
    assert 0 < np.abs(w - np.asarray(img, dtype=float)).mean() < 20


def test_every_perturbation_pickles_and_rejects_bad_values(plugins, img):
    from sidbench.api import SidbenchError

    perts = perturbation("jpeg:50;webp:50;blur:2;resize:0.5;crop:0.5;noise:5", plugins)
    for p in perts:
        q = pickle.loads(pickle.dumps(p))
        assert np.array_equal(np.asarray(q.apply(img, "k")), np.asarray(p.apply(img, "k")))
    for bad in ("jpeg:0", "jpeg:40.5", "blur:-1", "crop:1.5", "resize:0"):
        with pytest.raises(SidbenchError):
            perturbation(bad, plugins)
