"""The images of the offline quickstart benchmark (:mod:`sidbench.data.quickstart` lays them out in folders).

Real images follow natural-image statistics (dead leaves with power-law sizes, 1/f texture,
optical blur, sensor noise). Fakes are fresh content of the same kind carrying a generator
trace with a random per-image strength:

- ``gan_a``: made at 128 px, up-sampled x2 by a transposed convolution whose kernel has
  unequal polyphase gains, leaving a period-2 checkerboard (seen in training);
- ``gan_b``: made at 128 px, bilinear x2 plus a faint fixed period-4 grid (unseen);
- ``diff_a``: over-smoothed high frequencies plus a faint period-8 decoder residue (seen);
- ``diff_b``: milder, anisotropic smoothing plus a smooth period-16 residue (unseen).

Only numpy and Pillow are used, so generating the data never imports torch.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

SEED = 20240607  # the generators' fixed patterns, and with an image's coordinates its content
SIZE = 256
GENERATORS = ("gan_a", "gan_b", "diff_a", "diff_b")  # the order is part of every image's seed

Array = np.ndarray


# -- natural content ------------------------------------------------------------------------------
def pink_noise(rng: np.random.Generator, h: int, w: int, exponent: float = 1.0) -> Array:
    """A (h, w) field with a 1/f^exponent amplitude spectrum, zero mean, unit std."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spec = (rng.standard_normal((h, w // 2 + 1)) + 1j * rng.standard_normal((h, w // 2 + 1))) / f**exponent
    spec[0, 0] = 0.0
    field = np.fft.irfft2(spec, s=(h, w))
    return (field / (field.std() + 1e-12)).astype(np.float32)


def gaussian_blur(img: Array, sigma_y: float, sigma_x: float | None = None) -> Array:
    """Gaussian blur of an (h, w, c) float image in the Fourier domain, with reflect padding."""
    sigma_x = sigma_y if sigma_x is None else sigma_x
    if max(sigma_y, sigma_x) <= 0:
        return img
    pad = int(np.ceil(3 * max(sigma_y, sigma_x))) + 1
    size = _fast_len(img.shape[0] + 2 * pad)  # square images: one padded size, with small factors
    extra = size - img.shape[0] - 2 * pad
    p = np.pad(img, ((pad, pad + extra), (pad, pad + extra), (0, 0)), mode="reflect")
    h, w = p.shape[:2]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    tf = np.exp(-2 * np.pi**2 * ((fy * sigma_y) ** 2 + (fx * sigma_x) ** 2))
    out = np.fft.irfft2(np.fft.rfft2(p, axes=(0, 1)) * tf[..., None], s=(h, w), axes=(0, 1))
    return out[pad:pad + img.shape[0], pad:pad + img.shape[1]].astype(np.float32)


def _fast_len(n: int) -> int:
    """The smallest m >= n whose only prime factors are 2, 3 and 5 (a fast FFT length)."""
    while True:
        m = n
        for f in (2, 3, 5):
            while m % f == 0:
                m //= f
        if m == 1:
            return n
        n += 1


def dead_leaves(rng: np.random.Generator, size: int, base: Array) -> Array:
    """Occluding discs and boxes with a power-law (r^-2.5) size density and colours around ``base``."""
    img = Image.new("RGB", (size, size), tuple(int(c) for c in base))
    draw = ImageDraw.Draw(img)
    n = int(rng.integers(250, 500))
    rmin, rmax = size / 96, size / 3
    radii = np.minimum(rmin * (1 - rng.random(n)) ** (-1 / 1.5), rmax)  # density ~ r^-2.5
    centres = rng.uniform(-0.1 * size, 1.1 * size, (n, 2))
    spread = rng.uniform(25, 70)
    colours = np.clip(base + rng.normal(0, spread, (n, 3)) * rng.uniform(0.3, 1.0, (n, 1)), 0, 255)
    boxes = rng.random(n) < 0.3
    aspect = rng.uniform(0.5, 2.0, n)
    for (cx, cy), r, col, box, a in zip(centres, radii, colours.astype(int), boxes, aspect):
        xy = (cx - r * a, cy - r / a, cx + r * a, cy + r / a)
        (draw.rectangle if box else draw.ellipse)(xy, fill=tuple(col))
    return np.asarray(img, dtype=np.float32)


def add_sky(rng: np.random.Generator, img: Array) -> Array:
    """Replace the top of the image by a smooth gradient above an irregular horizon."""
    h, w = img.shape[:2]
    horizon = h * rng.uniform(0.2, 0.55) + h * 0.05 * np.cumsum(rng.standard_normal(w)) / np.sqrt(w)
    top = np.array([rng.uniform(90, 200), rng.uniform(120, 220), rng.uniform(170, 250)])
    bottom = np.clip(top + rng.normal(30, 20, 3), 0, 255)
    t = (np.arange(h, dtype=np.float32) / h)[:, None, None]
    sky = top * (1 - t) + bottom * t
    mask = (np.arange(h)[:, None] < horizon[None, :])[..., None]
    return np.where(mask, sky, img).astype(np.float32)


def sensor_noise(rng: np.random.Generator, img: Array, strength: float) -> Array:
    """Signal-dependent (shot + read) Gaussian noise with std around ``strength`` grey levels."""
    std = strength * np.sqrt(0.3 + 0.7 * np.clip(img, 0, 255) / 128.0)
    return img + std * rng.standard_normal(img.shape, dtype=np.float32)


def natural_image(rng: np.random.Generator, size: int = SIZE) -> Array:
    """A natural-looking (size, size, 3) float image in [0, 255]: what a camera would see."""
    base = rng.uniform(60, 190, 3)
    img = dead_leaves(rng, size, base)
    if rng.random() < 0.35:
        img = add_sky(rng, img)
    scale = size / SIZE
    texture = pink_noise(rng, size, size, rng.uniform(0.8, 1.4))
    img = img * (1 + rng.uniform(0.02, 0.12) * texture[..., None])
    img = gaussian_blur(img, rng.uniform(0.4, 1.1) * scale)
    img = sensor_noise(rng, img, rng.uniform(1.0, 3.5))
    return np.clip(img, 0, 255)


# -- generator traces -----------------------------------------------------------------------------
def fixed_pattern(period: int, seed: int, smooth: float = 0.0) -> Array:
    """A generator's fingerprint: a zero-mean, unit-std (period, period, 3) tile, the same for every image."""
    rng = np.random.default_rng(seed)
    tile = rng.standard_normal((period, period, 1)).astype(np.float32)
    if smooth > 0:
        tile = np.real(np.fft.ifft2(np.fft.fft2(tile, axes=(0, 1)) * _circular_gauss(period, smooth), axes=(0, 1)))
    tile = tile - tile.mean()
    tile = tile / (tile.std() + 1e-12)
    return (tile * rng.uniform(0.7, 1.3, 3)).astype(np.float32)


def _circular_gauss(period: int, sigma: float) -> Array:
    f = np.fft.fftfreq(period)
    return np.exp(-2 * np.pi**2 * sigma**2 * (f[:, None] ** 2 + f[None, :] ** 2))[..., None]


def tiled(tile: Array, size: int = SIZE) -> Array:
    """``tile`` repeated to cover a (size, size) image, aligned with the pixel grid."""
    reps = -(-size // tile.shape[0])
    return np.tile(tile, (reps, reps, 1))[:size, :size]


def upsample(img: Array, factor: int, kernel: Array) -> Array:
    """Zero-insertion up-sampling followed by a separable convolution: a transposed convolution."""
    pad = 2
    x = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    for axis in (0, 1):
        shape = list(x.shape)
        shape[axis] *= factor
        up = np.zeros(shape, np.float32)
        index = [slice(None)] * 3
        index[axis] = slice(None, None, factor)
        up[tuple(index)] = x
        x = _conv_axis(up, kernel, axis)
    crop = pad * factor
    return x[crop:-crop, crop:-crop]


def _conv_axis(x: Array, kernel: Array, axis: int) -> Array:
    """Same-size correlation of ``x`` with a short 1-D ``kernel`` along ``axis`` (edge padding)."""
    n = len(kernel)
    widths = [(0, 0)] * 3
    widths[axis] = (n // 2, n - 1 - n // 2)
    p = np.pad(x, widths, mode="edge")
    out = np.zeros_like(x)
    length = x.shape[axis]
    for i, k in enumerate(kernel):
        out += k * np.take(p, np.arange(i, i + length), axis=axis)
    return out


def _loguniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


# Trace strengths, drawn log-uniformly per image: the checkerboard's polyphase gain difference and
# the periodic residues' amplitude in grey levels. Strong enough for heads on a random tiny backbone
# to learn the seen generators within a CPU minute; the unseen ones and JPEG stay hard.
TRACE_CHECKER = (0.01, 0.04)
TRACE_GREY = (2.0, 6.0)
BILINEAR_X2 = np.array([0.25, 0.75, 0.75, 0.25], np.float32)
CHECKER_X2 = np.array([1, -1, 1, -1], np.float32)
GRID4 = fixed_pattern(4, SEED + 4)
GRID8 = fixed_pattern(8, SEED + 8, smooth=0.6)
GRID16 = fixed_pattern(16, SEED + 16, smooth=2.0)


def gan_a(rng: np.random.Generator) -> Array:
    """Low-resolution content, transposed-convolution x2 with unequal polyphase gains: a checkerboard."""
    low = natural_image(rng, SIZE // 2)
    kernel = BILINEAR_X2 + _loguniform(rng, TRACE_CHECKER[0], TRACE_CHECKER[1]) * CHECKER_X2
    return upsample(low, 2, kernel)


def gan_b(rng: np.random.Generator) -> Array:
    """Low-resolution content, bilinear x2, a faint period-4 grid and injected noise."""
    img = upsample(natural_image(rng, SIZE // 2), 2, BILINEAR_X2)
    img = img + _loguniform(rng, *TRACE_GREY) * tiled(GRID4)
    return img + rng.uniform(0.5, 2.0) * rng.standard_normal(img.shape, dtype=np.float32)


def diff_a(rng: np.random.Generator) -> Array:
    """Over-smoothed high frequencies plus a faint period-8 decoder residue that follows brightness."""
    img = gaussian_blur(natural_image(rng), rng.uniform(0.5, 1.3))
    img = img + _loguniform(rng, *TRACE_GREY) * tiled(GRID8) * (0.5 + img / 255.0)
    return img + rng.uniform(0.0, 1.0) * rng.standard_normal(img.shape, dtype=np.float32)


def diff_b(rng: np.random.Generator) -> Array:
    """Milder, anisotropic smoothing plus a smooth period-16 residue."""
    img = gaussian_blur(natural_image(rng), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.9))
    img = img + _loguniform(rng, *TRACE_GREY) * tiled(GRID16)
    return img + rng.uniform(0.0, 1.5) * rng.standard_normal(img.shape, dtype=np.float32)


MAKERS: dict[str, Callable[[np.random.Generator], Array]] = {
    "gan_a": gan_a, "gan_b": gan_b, "diff_a": diff_a, "diff_b": diff_b,
}
