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
from PIL import Image, ImageFilter

from ..hookspecs import hookimpl
from ..specs import PerturbationSpec

Step = Callable[[Image.Image, np.random.Generator], Image.Image]


def jpeg(quality: float) -> Step:
    q = int(quality)
    if not 1 <= q <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")

    def apply(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=q)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    return apply


def webp(quality: float) -> Step:
    q = int(quality)
    if not 1 <= q <= 100:
        raise ValueError(f"WebP quality must be in 1..100, got {quality}")

    def apply(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, format="WEBP", quality=q)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    return apply


def blur(sigma: float) -> Step:
    if sigma < 0:
        raise ValueError(f"blur sigma must be >= 0, got {sigma}")
    return lambda img, rng: img.filter(ImageFilter.GaussianBlur(radius=float(sigma))) if sigma > 0 else img


def resize(scale: float) -> Step:
    if scale <= 0:
        raise ValueError(f"resize scale must be > 0, got {scale}")

    def apply(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = img.size
        return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)

    return apply


def crop(fraction: float) -> Step:
    if not 0 < fraction <= 1:
        raise ValueError(f"crop fraction must be in (0, 1], got {fraction}")

    def apply(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = img.size
        cw, ch = max(1, round(w * fraction)), max(1, round(h * fraction))
        left, top = (w - cw) // 2, (h - ch) // 2
        return img.crop((left, top, left + cw, top + ch))

    return apply


def noise(std: float) -> Step:
    if std < 0:
        raise ValueError(f"noise std must be >= 0, got {std}")

    def apply(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        arr = np.asarray(img, dtype=np.float32)
        arr = arr + rng.normal(0.0, std, arr.shape).astype(np.float32)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")

    return apply


@hookimpl
def sidbench_perturbations() -> list[PerturbationSpec]:
    P = PerturbationSpec
    return [
        P("jpeg", jpeg, "JPEG re-encoding (Pillow) at quality Q", (40, 65, 90)),
        P("webp", webp, "WebP re-encoding (Pillow) at quality Q", (50, 75, 90)),
        P("blur", blur, "Gaussian blur with standard deviation SIGMA pixels", (1, 2, 4)),
        P("resize", resize, "bicubic resize by SCALE (0.5 halves each side)", (0.5, 0.75, 1.5)),
        P("crop", crop, "centre crop keeping FRACTION of each side", (0.5, 0.75)),
        P("noise", noise, "additive Gaussian noise, STD in grey levels (0-255)", (5, 10)),
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
    from ..errors import SidbenchError

    out = [NONE] if include_clean else []
    for item in filter(None, (s.strip() for s in (text or "").split(";"))):
        if item == "none":
            continue
        choices = []
        for step in item.split("+"):
            kind, _, values = step.strip().partition(":")
            spec = plugins.perturbation(kind.strip())
            vals = [_number(v) for v in values.split(",") if v.strip()] if values else list(spec.values)
            if not vals:
                raise SidbenchError(f"--perturb {step!r}: give a value, e.g. {kind}:{_fmt(spec.values[0]) if spec.values else 'V'}")
            from ..specs import resolve_factory

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
