"""Perturbations that do what their names say, deterministic per image.

Syntax of ``--perturb``: items separated by ``;``, each a chain of steps joined by ``+``,
each step ``name:v1,v2,...``; every value gives its own rows. ``jpeg:40,65,90`` gives
``jpeg40``, ``jpeg65``, ``jpeg90``; ``blur:1+jpeg:75`` gives ``blur1+jpeg75``. The clean
images are the perturbation ``none``.
"""
from __future__ import annotations

import hashlib
import io
import itertools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..api.hookspecs import hookimpl
from ..api.specs import PerturbationSpec

Step = Callable[[Image.Image, np.random.Generator], Image.Image]


class _Encode:
    """Re-encode with Pillow at a quality factor and decode again (lossy round trip)."""

    format = ""

    def __init__(self, quality: float):
        q = int(quality)
        if q != quality or not 1 <= q <= 100:
            raise ValueError(f"{self.format} quality must be an integer in 1..100, got {quality}")
        self.quality = q

    def encode(self, img: Image.Image) -> bytes:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format=self.format, quality=self.quality)
        return buf.getvalue()

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        with Image.open(io.BytesIO(self.encode(img))) as out:
            return out.convert("RGB")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.quality})"


class JPEG(_Encode):
    """JPEG at quality Q with libjpeg's standard tables scaled by Q (Pillow, 4:2:0 chroma subsampling)."""

    format = "JPEG"


class WebP(_Encode):
    """Lossy WebP at quality Q (Pillow / libwebp)."""

    format = "WEBP"


class Blur:
    """Gaussian blur with standard deviation ``sigma`` pixels per channel, exactly as CNNDetection's
    ``gaussian_blur`` (copied by RINE and UnivFD): ``scipy.ndimage.gaussian_filter`` on each channel of the
    uint8 array with ``output`` = that channel, so each of the two 1-D passes (rows, then columns) is stored
    as uint8, truncated toward zero (reflect borders, kernel truncated at 4 sigma)."""

    def __init__(self, sigma: float):
        if sigma < 0:
            raise ValueError(f"blur sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        if self.sigma == 0:
            return img
        from scipy.ndimage import gaussian_filter

        arr = np.array(img.convert("RGB"))  # uint8 [H, W, 3], writable
        for c in range(3):
            gaussian_filter(arr[:, :, c], output=arr[:, :, c], sigma=self.sigma)
        return Image.fromarray(arr, "RGB")

    def __repr__(self) -> str:
        return f"Blur({self.sigma:g})"


class Resize:
    """Bicubic resize of both sides by ``scale`` (0.5 halves each side)."""

    def __init__(self, scale: float):
        if scale <= 0:
            raise ValueError(f"resize scale must be > 0, got {scale}")
        self.scale = float(scale)

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        from .images import check_size

        w, h = img.size
        size = (max(1, round(w * self.scale)), max(1, round(h * self.scale)))
        check_size(*size, what=f"image {w}x{h} resized to")  # before allocating: resize:100 of a large image
        return img.resize(size, Image.BICUBIC)

    def __repr__(self) -> str:
        return f"Resize({self.scale:g})"


class Crop:
    """Centre crop keeping ``fraction`` of each side."""

    def __init__(self, fraction: float):
        if not 0 < fraction <= 1:
            raise ValueError(f"crop fraction must be in (0, 1], got {fraction}")
        self.fraction = float(fraction)

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = img.size
        cw, ch = max(1, round(w * self.fraction)), max(1, round(h * self.fraction))
        left, top = (w - cw) // 2, (h - ch) // 2
        return img.crop((left, top, left + cw, top + ch))

    def __repr__(self) -> str:
        return f"Crop({self.fraction:g})"


class Noise:
    """Additive i.i.d. Gaussian noise with standard deviation ``std`` grey levels (0-255), seeded per image."""

    def __init__(self, std: float):
        if std < 0:
            raise ValueError(f"noise std must be >= 0, got {std}")
        self.std = float(std)

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        arr = np.asarray(img.convert("RGB"), dtype=np.float32)
        arr = arr + rng.normal(0.0, self.std, arr.shape).astype(np.float32)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")

    def __repr__(self) -> str:
        return f"Noise({self.std:g})"


@hookimpl
def sidbench_perturbations() -> list[PerturbationSpec]:
    P = PerturbationSpec
    return [
        P("jpeg", JPEG, "JPEG re-encoding (Pillow) at quality Q; defaults as the AID-challenge report", (40, 65, 90)),
        P("webp", WebP, "WebP re-encoding (Pillow) at quality Q", (50, 75, 90)),
        P("blur", Blur, "Gaussian blur with standard deviation SIGMA pixels (scipy, as CNNDetection)", (1, 2, 4)),
        P("resize", Resize, "bicubic resize by SCALE (0.5 halves each side)", (0.5, 0.75, 1.5)),
        P("crop", Crop, "centre crop keeping FRACTION of each side", (0.5, 0.75)),
        P("noise", Noise, "additive Gaussian noise, STD in grey levels (0-255)", (5, 10)),
    ]


@dataclass(frozen=True)
class Perturbation:
    """A named chain of perturbation steps; ``apply`` seeds its randomness from the image key."""

    name: str
    steps: tuple[tuple[str, Any, Step], ...] = ()

    def apply(self, img: Image.Image, key: str) -> Image.Image:
        if not self.steps:
            return img
        seed = int.from_bytes(hashlib.sha256(f"{self.name}|{key}".encode()).digest()[:8], "little")
        rng = np.random.default_rng(seed)
        for _, _, fn in self.steps:
            img = fn(img, rng)
        return img


NONE = Perturbation("none")


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _number(text: str) -> float | int:
    v = float(text)
    return int(v) if v.is_integer() else v


def parse_perturbations(text: str | None, plugins: Any, include_clean: bool = True) -> list[Perturbation]:
    """Parse a ``--perturb`` string into perturbations (``none`` first unless ``include_clean`` is False)."""
    from ..api.errors import SidbenchError

    out = [NONE] if include_clean else []
    for item in filter(None, (s.strip() for s in (text or "").split(";"))):
        if item == "none":
            continue
        choices = []
        for step in item.split("+"):
            kind, sep, values = step.strip().partition(":")
            spec = plugins.perturbation(kind.strip())
            try:
                vals = [_number(v) for v in values.split(",") if v.strip()] if sep else list(spec.values)
            except ValueError:
                raise SidbenchError(f"--perturb {step!r}: values must be numbers, e.g. {kind}:40,65,90") from None
            if not vals:
                raise SidbenchError(f"--perturb {step!r}: give a value, e.g. {kind}:{_fmt(spec.values[0]) if spec.values else 'V'}")
            from ..api.specs import resolve_factory

            factory = resolve_factory(spec.factory)
            try:
                choices.append([(f"{kind}{_fmt(v)}", kind, v, factory(v)) for v in vals])
            except ValueError as exc:
                raise SidbenchError(f"--perturb {step!r}: {exc}") from None
        for combo in itertools.product(*choices):
            name = "+".join(c[0] for c in combo)
            if name not in {p.name for p in out}:
                out.append(Perturbation(name, tuple((c[1], c[2], c[3]) for c in combo)))
    return out
