"""Preprocessing protocols: how a PIL image becomes the backbone's input tensor.

``center_crop``: native resolution, centre crop (zero padding when smaller) - RINE / UnivFD test protocol.
``resize_center_crop``: shorter side resized to the crop size (bicubic), then centre crop - CLIP+SVM.
``ten_crop``: native resolution, 4 corners + centre and their flips [10, 3, S, S] - RINE on Synthbuster;
the harness averages the 10 crop logits.
``resize_center_crop_fast``: as ``resize_center_crop``, but large JPEGs are decoded at a reduced scale
(Pillow's ``draft``: 1/2, 1/4 or 1/8 in the DCT domain, never below the crop size) before the resize.
The pixels differ slightly from a full decode, so it is a protocol of its own (recorded, cache-keyed).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from PIL import Image

if TYPE_CHECKING:
    import torch

    from ..backbones.base import BackboneInfo

PROTOCOLS = {
    "center_crop": "native resolution, centre crop (zero-padded when smaller)",
    "resize_center_crop": "resize shorter side (bicubic), centre crop",
    "ten_crop": "native resolution, ten crops (corners, centre, flipped); mean of the 10 logits",
    "resize_center_crop_fast": "resize_center_crop, large JPEGs first decoded at 1/2, 1/4 or 1/8 scale "
                               "(Pillow draft, DCT domain; slightly different pixels, much faster)",
}


def check_protocol(name: str) -> str:
    if name not in PROTOCOLS:
        from ..errors import UnknownNameError

        raise UnknownNameError("protocol", name, PROTOCOLS)
    return name


def n_views(protocol: str) -> int:
    """How many crops a protocol feeds the backbone per image."""
    return 10 if protocol == "ten_crop" else 1


def make_preprocess(protocol: str, info: "BackboneInfo") -> Callable[[Image.Image], "torch.Tensor"]:
    """A picklable callable PIL -> [3, S, S] (or [10, 3, S, S] for ten_crop) normalised tensor."""
    return Preprocess(check_protocol(protocol), info.image_size, tuple(info.mean), tuple(info.std))


class Preprocess:
    def __init__(self, protocol: str, size: int, mean: tuple, std: tuple):
        self.protocol, self.size, self.mean, self.std = protocol, size, mean, std
        # JPEG decoding may shrink the image by a power of two, never below the crop size
        self.draft = size if protocol == "resize_center_crop_fast" else None

    def __call__(self, img: Image.Image) -> "torch.Tensor":
        import torch
        import torchvision.transforms.functional as TF

        s = self.size
        if self.protocol in ("resize_center_crop", "resize_center_crop_fast"):
            img = TF.resize(img, s, interpolation=TF.InterpolationMode.BICUBIC)
        if self.protocol == "ten_crop":
            w, h = img.size
            if w < s or h < s:
                img = TF.center_crop(img, [max(h, s), max(w, s)])
            crops = TF.ten_crop(img, s)
            return torch.stack([self._normalise(TF.to_tensor(c)) for c in crops])
        return self._normalise(TF.to_tensor(TF.center_crop(img, s)))

    def _normalise(self, x: "torch.Tensor") -> "torch.Tensor":
        import torchvision.transforms.functional as TF

        return TF.normalize(x, self.mean, self.std)

    def __repr__(self) -> str:
        return f"Preprocess({self.protocol}, {self.size})"
