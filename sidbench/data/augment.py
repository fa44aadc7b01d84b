"""Seeded training augmentations of the CNNDetection family (shared by the detectors that use them).

CNNDetection's training transform (Wang et al. 2020) is resize -> blur with probability p -> JPEG with
probability p -> crop -> horizontal flip; UnivFD (Ojha et al. 2023) reuses it with p = 0.5, NPR (Tan et al.
2024) keeps only the resize, crop and flip. :class:`BlurJpegCrop` is that transform with every choice a
field, drawing all randomness from the generator it is given (an :class:`~sidbench.api.Augment`).
:class:`RineAugment` is RINE's variant (no resize; JPEG quality from a list; zero-padded random crop);
:class:`TipAugment` is Tip-Adapter's random resized crop and flip.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .images import check_short_side_resize
from .perturb import JPEG, Blur


@dataclass(frozen=True)
class BlurJpegCrop:
    """resize -> Gaussian blur (prob ``blur_prob``, sigma ~ U[blur_sigma]) -> JPEG (prob ``jpeg_prob``,
    quality ~ U{jpeg_quality[0]..jpeg_quality[1]}) -> ``crop`` x ``crop`` (random, or centred) -> flip (p 0.5).

    ``resize``: the shorter side to this many pixels (bilinear), both sides with ``square``, or no resize
    (None). Random draws always happen in the same order, so a view depends only on the generator. Images
    smaller than the crop are zero-padded at the bottom and right.
    """

    name: str
    crop: int
    resize: int | None = None
    square: bool = False
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.0, 3.0)
    jpeg_prob: float = 0.0
    jpeg_quality: tuple[int, int] = (30, 100)
    random_crop: bool = True
    flip: bool = True

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        img = self._resize(img.convert("RGB"))
        if rng.random() < self.blur_prob:
            lo, hi = self.blur_sigma
            img = Blur(float(rng.uniform(lo, hi)) if hi > lo else float(lo))(img, rng)
        if rng.random() < self.jpeg_prob:
            lo, hi = self.jpeg_quality
            img = JPEG(int(rng.integers(lo, hi + 1)) if hi > lo else int(lo))(img, rng)
        img = self._crop(img, rng)
        if self.flip and rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return img

    def _resize(self, img: Image.Image) -> Image.Image:
        if self.resize is None:
            return img
        import torchvision.transforms.functional as TF

        if not self.square:
            check_short_side_resize(*img.size, self.resize)  # a thin strip would become gigapixels wide
        size = [self.resize, self.resize] if self.square else self.resize
        return TF.resize(img, size, interpolation=TF.InterpolationMode.BILINEAR)

    def _crop(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = img.size
        c = self.crop
        if self.random_crop:
            top, left = int(rng.integers(0, max(h - c, 0) + 1)), int(rng.integers(0, max(w - c, 0) + 1))
        else:  # torchvision CenterCrop's offsets
            top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
        return img.crop((left, top, left + c, top + c))


@dataclass(frozen=True)
class RineAugment:
    """Blur (p, sigma ~ U[lo, hi]), JPEG (p, quality from a list or ``uniform`` 30..100),
    RandomCrop ``crop`` with zero padding when smaller (no resize), horizontal flip (p = 0.5)."""

    crop: int = 224
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.0, 3.0)
    jpeg_prob: float = 0.5
    jpeg_qualities: tuple[int, ...] | str = (30, 100)
    flip: bool = True

    @property
    def name(self) -> str:
        q = self.jpeg_qualities if isinstance(self.jpeg_qualities, str) else "/".join(map(str, self.jpeg_qualities))
        lo, hi = self.blur_sigma
        return (f"rine-blur{self.blur_prob:g}:{lo:g}-{hi:g}-jpeg{self.jpeg_prob:g}:{q}"
                f"-crop{self.crop}{'-flip' if self.flip else ''}")

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        img = img.convert("RGB")
        if rng.random() < self.blur_prob:
            img = Blur(float(rng.uniform(*self.blur_sigma)))(img, rng)
        if rng.random() < self.jpeg_prob:
            if self.jpeg_qualities == "uniform":
                quality = int(rng.integers(30, 101))
            else:
                quality = int(self.jpeg_qualities[int(rng.integers(len(self.jpeg_qualities)))])
            img = JPEG(quality)(img, rng)
        img = padded_random_crop(img, self.crop, rng)
        if self.flip and rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return img


def padded_random_crop(img: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    """A size x size crop at a random offset; a smaller side is first zero-padded (centred) to ``size``."""
    w, h = img.size
    if w < size or h < size:
        canvas = Image.new("RGB", (max(w, size), max(h, size)))
        canvas.paste(img, ((canvas.width - w) // 2, (canvas.height - h) // 2))
        img, (w, h) = canvas, canvas.size
    left, top = int(rng.integers(w - size + 1)), int(rng.integers(h - size + 1))
    return img.crop((left, top, left + size, top + size))


class TipAugment:
    """The reference's cache/training augmentation: RandomResizedCrop(size, scale=(0.5, 1), bicubic) + flip."""

    name = "tip-rrc"

    def __init__(self, size: int = 224, scale: tuple[float, float] = (0.5, 1.0)):
        self.size, self.scale = size, scale

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        img = img.convert("RGB").crop(self._box(*img.size, rng))
        img = img.resize((self.size, self.size), Image.Resampling.BICUBIC)
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else img

    def _box(self, width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """torchvision's RandomResizedCrop sampling (aspect ratio 3/4..4/3, 10 tries, then a centre crop)."""
        area = width * height
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < w <= width and 0 < h <= height:
                top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
                return left, top, left + w, top + h
        # torchvision's fallback: a central crop clamped to the aspect-ratio range (the scale range is ignored)
        w, h = width, height
        if width / height < 3 / 4:
            h = round(w / (3 / 4))
        elif width / height > 4 / 3:
            w = round(h * (4 / 3))
        left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h
