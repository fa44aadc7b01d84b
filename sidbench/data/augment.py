"""Seeded training augmentations of the CNNDetection family (shared by the detectors that use them).

CNNDetection's training transform (Wang et al. 2020) is resize -> blur with probability p -> JPEG with
probability p -> crop -> horizontal flip; UnivFD (Ojha et al. 2023) reuses it with p = 0.5, NPR (Tan et al.
2024) keeps only the resize, crop and flip. :class:`BlurJpegCrop` is that transform with every choice a
field, drawing all randomness from the generator it is given (an :class:`~sidbench.api.Augment`).
:class:`RineAugment` is RINE's variant (no resize; JPEG quality from a list; zero-padded random crop).
"""
from __future__ import annotations

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
