"""Preprocessing protocols: how a PIL image becomes a network's input tensor.

A protocol is a name plus the size and normalisation of the network that reads it (a backbone's
:class:`~sidbench.api.BackboneInfo`, or a pixel detector's :class:`~sidbench.api.PixelInput`).

``center_crop``: native resolution, centre crop (zero padding when smaller) - RINE / UnivFD test protocol.
``resize_center_crop``: shorter side resized to the crop size (bicubic), then centre crop - CLIP+SVM.
``ten_crop``: native resolution, 4 corners + centre and their flips [10, 3, S, S] - RINE on Synthbuster;
the engine averages the 10 crop logits.
``resize_center_crop_fast``: as ``resize_center_crop``, but large JPEGs are decoded at a reduced scale
(Pillow's ``draft``: 1/2, 1/4 or 1/8 in the DCT domain, never below the crop size) before the resize.
The pixels differ slightly from a full decode, so it is a protocol of its own (recorded, cache-keyed).
``native``: the whole image at its own resolution, no resize and no crop (fully convolutional pixel
detectors: Corvi 2023); images of equal size are batched together.
``native_even``: as ``native``, with the last row (column) dropped when the height (width) is odd - NPR's
fix for odd sizes (its README, AIGCDetectBenchmark), whose down/up-sampling residual needs even sizes.
``resize_square``: both sides resized to the image size (bilinear, antialiased, aspect ratio not kept),
no crop - NPR's ``test.py`` (``transforms.Resize((256, 256))``).

A pixel detector may bring protocols of its own (:class:`sidbench.api.ProtocolSpec` in its
``PixelInput.protocols``): they are found by name through the ``info`` every function here takes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

from PIL import Image

if TYPE_CHECKING:
    import torch

    from ..api.specs import ProtocolSpec

PROTOCOLS = {
    "center_crop": "native resolution, centre crop (zero-padded when smaller)",
    "resize_center_crop": "resize shorter side (bicubic), centre crop",
    "ten_crop": "native resolution, ten crops (corners, centre, flipped); mean of the 10 logits",
    "resize_center_crop_fast": "resize_center_crop, large JPEGs first decoded at 1/2, 1/4 or 1/8 scale "
                               "(Pillow draft, DCT domain; slightly different pixels, much faster)",
    "native": "the whole image at native resolution (no resize, no crop); equal sizes batched together",
    "native_even": "native, the last row/column dropped when the height/width is odd (NPR's odd-size fix)",
    "resize_square": "both sides resized to the size (bilinear, antialiased; aspect ratio not kept), no crop",
}
VARIABLE_SIZE = ("native", "native_even")  # protocols whose tensors differ in size from image to image
# protocols that also run on a decoded uint8 tensor (on the device, after torchvision's JPEG decode): crops and
# slices give the same pixels as on a PIL image; the resizes are torchvision's antialiased tensor resizes
TENSOR_PROTOCOLS = ("center_crop", "ten_crop", "native", "native_even", "resize_center_crop", "resize_square")


class InputInfo(Protocol):
    """What a protocol needs to know of the network it feeds (BackboneInfo and PixelInput both qualify)."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def own_protocol(name: str, info: "InputInfo | None") -> "ProtocolSpec | None":
    """The detector's own protocol of that name (``info.protocols``), or None (a built-in one, or unknown)."""
    for spec in getattr(info, "protocols", ()) or ():
        if spec.name == name:
            return spec
    return None


def protocol_names(info: "InputInfo | None" = None) -> dict[str, str]:
    """Every protocol usable with ``info``: the built-in ones and the detector's own (name -> description)."""
    return {**PROTOCOLS, **{p.name: p.description for p in getattr(info, "protocols", ()) or ()}}


def check_protocol(name: str, info: "InputInfo | None" = None) -> str:
    if name not in PROTOCOLS and own_protocol(name, info) is None:
        from ..api.errors import UnknownNameError

        raise UnknownNameError("protocol", name, protocol_names(info))
    return name


def n_views(protocol: str, info: "InputInfo | None" = None) -> int:
    """How many crops a protocol feeds the network per image."""
    own = own_protocol(protocol, info)
    if own is not None:
        return int(own.views)
    return 10 if protocol == "ten_crop" else 1


def variable_size(protocol: str, info: "InputInfo | None" = None) -> bool:
    """Whether the protocol's tensors differ in size from image to image (equal sizes are batched together)."""
    own = own_protocol(protocol, info)
    return bool(own.variable_size) if own is not None else protocol in VARIABLE_SIZE


def protocol_key(protocol: str, info: InputInfo) -> str:
    """Everything that fixes a protocol's tensors, for cache keys: ``center_crop|224|mean|std`` (a detector's
    own protocol adds its version: ``effort_cv2@v1|224|...``)."""
    own = own_protocol(protocol, info)
    name = protocol if own is None else f"{protocol}@v{own.version}"
    return f"{name}|{info.image_size}|{tuple(info.mean)}|{tuple(info.std)}"


def make_preprocess(protocol: str, info: InputInfo, uint8: bool = False) -> Callable[[Image.Image], "torch.Tensor"]:
    """A picklable callable PIL -> [3, S, S] (or [10, 3, S, S] for ten_crop, [3, H, W] for native) normalised
    tensor; for a detector's own protocol, an :class:`OwnPreprocess` (called with an ImageInput).

    With ``uint8`` the built-in protocols stop before normalising: the pixels as uint8 (a quarter of the
    bytes through worker queues, shared memory and the host-to-device copy), normalised where the network
    runs by :func:`sidbench.api.backbone.network_input`, with the same arithmetic (bit-identical values).
    A detector's own protocol returns what it returns (floats pass ``network_input`` unchanged)."""
    own = own_protocol(check_protocol(protocol, info), info)
    if own is not None:
        from ..api.specs import resolve_factory

        return OwnPreprocess(protocol, resolve_factory(own.factory)(info), bool(own.reads_file))
    return Preprocess(protocol, info.image_size, tuple(info.mean), tuple(info.std), uint8)


class OwnPreprocess:
    """A detector's own protocol: ``fn(ImageInput) -> Tensor``. ``wants_input`` tells the loader to pass the
    image with the file's bytes and path; ``reads_file``, to read the bytes even when a decoded copy is kept."""

    wants_input = True
    draft = None

    def __init__(self, name: str, fn: Callable, reads_file: bool):
        self.name, self.fn, self.reads_file = name, fn, reads_file

    def __call__(self, item) -> "torch.Tensor":
        return self.fn(item)

    def __repr__(self) -> str:
        return f"OwnPreprocess({self.name})"


class Preprocess:
    def __init__(self, protocol: str, size: int, mean: tuple, std: tuple, uint8: bool = False):
        self.protocol, self.size, self.mean, self.std, self.uint8 = protocol, size, mean, std, uint8
        # JPEG decoding may shrink the image by a power of two, never below the crop size
        self.draft = size if protocol == "resize_center_crop_fast" else None

    def __call__(self, img: Image.Image) -> "torch.Tensor":
        import torch
        import torchvision.transforms.functional as TF

        s = self.size
        if self.protocol == "native":
            return self._tensor(img)
        if self.protocol == "native_even":
            w, h = img.size
            return self._tensor(img.crop((0, 0, w - w % 2, h - h % 2)) if (w % 2 or h % 2) else img)
        if self.protocol == "resize_square":
            return self._tensor(TF.resize(img, [s, s], interpolation=TF.InterpolationMode.BILINEAR))
        if self.protocol in ("resize_center_crop", "resize_center_crop_fast"):
            from .images import check_short_side_resize  # here: the CLI imports this module to list protocols

            check_short_side_resize(*img.size, s)
            img = TF.resize(img, s, interpolation=TF.InterpolationMode.BICUBIC)
        if self.protocol == "ten_crop":
            w, h = img.size
            if w < s or h < s:
                img = TF.center_crop(img, [max(h, s), max(w, s)])
            return torch.stack([self._tensor(c) for c in TF.ten_crop(img, s)])
        return self._tensor(TF.center_crop(img, s))

    def on_tensor(self, x: "torch.Tensor") -> "torch.Tensor":
        """The protocol on a decoded uint8 RGB tensor [3, H, W] (any device), uint8 out (``uint8`` protocols
        only). Crops and slices match :meth:`__call__` exactly; a resize is torchvision's antialiased tensor
        resize, whose pixels may differ from Pillow's by a grey level."""
        import torch
        import torchvision.transforms.functional as TF

        if self.protocol not in TENSOR_PROTOCOLS or not self.uint8:
            raise ValueError(f"protocol {self.protocol!r} does not run on decoded tensors")
        s, (h, w) = self.size, x.shape[-2:]
        if self.protocol == "native":
            return x
        if self.protocol == "native_even":
            return x[:, : h - h % 2, : w - w % 2]
        if self.protocol == "resize_square":
            return TF.resize(x, [s, s], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        if self.protocol == "resize_center_crop":
            from .images import check_short_side_resize

            check_short_side_resize(w, h, s)
            x = TF.resize(x, s, interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
        if self.protocol == "ten_crop":
            if w < s or h < s:
                x = TF.center_crop(x, [max(h, s), max(w, s)])
            return torch.stack(list(TF.ten_crop(x, s)))
        return TF.center_crop(x, s)

    def _tensor(self, img: Image.Image) -> "torch.Tensor":
        """[3, H, W]: uint8 as decoded, or float normalised (``to_tensor`` then ``normalize``)."""
        import torchvision.transforms.functional as TF

        if self.uint8:
            return TF.pil_to_tensor(img)
        return TF.normalize(TF.to_tensor(img), self.mean, self.std)

    def __repr__(self) -> str:
        return f"Preprocess({self.protocol}, {self.size})"
