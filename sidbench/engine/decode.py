"""Decoding JPEGs where it is cheapest: with ``--decode device`` the loader workers ship a JPEG's bytes and the
main process decodes them in batches with ``torchvision.io.decode_jpeg`` on the run's device (nvJPEG on CUDA,
libjpeg-turbo on the CPU), then applies the protocol to the decoded tensor there.

The pixels may differ from Pillow's decode (another IDCT and chroma upsampling on CUDA; torchvision's tensor
resize instead of Pillow's), so device decoding is a variant of the protocol: :func:`decode_variant` names it,
and it is part of the feature-cache key and of the run's numerics (a resume never mixes it with CPU-decoded
rows). Only plain scoring passes use it: a perturbation or augmentation works on PIL images, and a detector's
own protocol decodes its own way. Files that are not baseline-readable JPEGs (another format, CMYK, an EXIF
rotation, too large) and files the device decoder refuses take Pillow's path, as before.
"""
from __future__ import annotations

import functools
import io
import logging
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Sequence


from ..api.records import Record
from ..data.layout import SIDECAR_SUFFIXES
from ..data.images import UnreadableImage, check_short_side_resize, check_size, read_image
from ..data.preprocess import TENSOR_PROTOCOLS, Preprocess
from .loader import stack_pixels

if TYPE_CHECKING:
    import torch

    from .loader import Batch

log = logging.getLogger(__name__)

DECODES = ("auto", "cpu", "device")
DAMAGE = re.compile(r"corrupt|premature|truncat|invalid|damaged|extraneous", re.IGNORECASE)  # a decoder's warning
JPEG_MAGIC = b"\xff\xd8\xff"
EXIF_ORIENTATION = 0x0112


def resolve_decode(decode: str | None, device: str) -> str:
    """``cpu`` or ``device``: ``auto`` decodes JPEGs on the device when it is CUDA (and torchvision can)."""
    decode = decode or "auto"
    if decode == "auto":
        return "device" if str(device).startswith("cuda") and device_decode_works(str(device)) else "cpu"
    return decode


def decode_variant(decode: str, device: str) -> str:
    """What a device decode adds to a protocol's identity, e.g. ``jpeg@cuda`` ("" for Pillow's decode)."""
    return f"jpeg@{str(device).split(':')[0]}" if decode == "device" else ""


@functools.lru_cache(maxsize=None)
def device_decode_works(device: str) -> bool:
    """Whether torchvision decodes a JPEG on ``device`` here (a build without nvJPEG cannot)."""
    import numpy as np
    from PIL import Image

    try:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        buf = io.BytesIO()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "JPEG")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            decode_jpeg(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8), mode=ImageReadMode.RGB,
                        device=device)
        return True
    except Exception as exc:  # noqa: BLE001 - any failure means: decode with Pillow
        log.warning("JPEG decoding on %s is not available (%s: %s); decoding with Pillow", device, type(exc).__name__, exc)
        return False


def device_protocol(preprocess: object) -> bool:
    """Whether a pass's preprocessing can run on device-decoded tensors (a built-in protocol that crops,
    slices or resizes; not a detector's own protocol, nor the draft-decoding ``resize_center_crop_fast``)."""
    return isinstance(preprocess, Preprocess) and preprocess.protocol in TENSOR_PROTOCOLS and preprocess.uint8


class ShipJpeg:
    """In a worker: whether an image's bytes go to the main process undecoded (picklable). Only JPEGs that
    decode to the same image as :func:`~sidbench.data.images.read_image` would give qualify: baseline 8-bit
    RGB or greyscale, no EXIF rotation, within the size bounds (checked from the header, nothing decoded)."""

    def __init__(self, preprocess: Preprocess):
        self.protocol, self.size = preprocess.protocol, preprocess.size

    def __call__(self, data: bytes | None, path: str) -> bool:
        if data is None or not data.startswith(JPEG_MAGIC) or Path(path).suffix.lower() in SIDECAR_SUFFIXES:
            return False
        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as img:
                    if img.format != "JPEG" or img.mode not in ("RGB", "L"):
                        return False
                    check_size(*img.size)
                    if self.protocol == "resize_center_crop":
                        check_short_side_resize(*img.size, self.size)
                    return img.getexif().get(EXIF_ORIENTATION, 1) == 1
        except Exception:  # noqa: BLE001 - anything odd takes Pillow's path, which says what is wrong
            return False


class DeviceDecoder:
    """In the main process: decodes a batch's shipped JPEGs on ``device`` in one call and applies the protocol
    there; a file the device refuses is decoded with Pillow instead (or skipped with Pillow's reason)."""

    def __init__(self, preprocess: Preprocess, device: str, records: Sequence[Record]):
        self.preprocess, self.device, self.records = preprocess, str(device), records
        self.decoded = 0  # images decoded on the device
        self.fallbacks = 0  # shipped images the device refused, decoded with Pillow

    def __call__(self, batch: "Batch") -> "Batch":
        """``batch`` with its shipped JPEGs turned into pixels (all of the batch's pixels then on the device)."""
        if not batch.encoded:
            return batch
        import torch

        index = sorted(batch.encoded)
        decoded = self._decode([torch.frombuffer(bytearray(batch.encoded[i]), dtype=torch.uint8) for i in index])
        pixels = batch.pixels
        items = list(zip(batch.index, [] if pixels is None else pixels if isinstance(pixels, list) else list(pixels)))
        for i, x in zip(index, decoded):
            if x is None:
                x = self._with_pillow(i, batch.encoded[i], batch)
            if x is not None:
                items.append((i, x))
        items.sort(key=lambda t: t[0])
        target = torch.device(self.device)
        tensors = [x.to(target, non_blocking=True) for _, x in items]
        batch.index = [i for i, _ in items]
        batch.pixels = stack_pixels(tensors)
        batch.encoded = {}
        return batch

    def _decode(self, datas: list["torch.Tensor"]) -> list["torch.Tensor | None"]:
        """The protocol's tensors of the JPEGs ``datas`` (None where the device decoder failed)."""
        images = self._decode_jpegs(datas)
        out = []
        for x in images:
            try:
                out.append(None if x is None else self.preprocess.on_tensor(x))
            except Exception:  # noqa: BLE001 - e.g. a resize too large: Pillow's path says why
                out.append(None)
        self.decoded += sum(x is not None for x in out)
        return out

    def _decode_jpegs(self, datas: list["torch.Tensor"]) -> list["torch.Tensor | None"]:
        """Decoded [3, H, W] uint8 tensors on the device; one call for all, one per file when that call fails or
        warns of damaged data (then a file that fails or warns alone is None: Pillow's path decides)."""
        try:
            return self._decode_call(datas)
        except Exception:  # noqa: BLE001 - one bad file fails the whole call: find it one by one
            pass
        images: list["torch.Tensor | None"] = []
        for d in datas:
            try:
                images.append(self._decode_call(d))
            except Exception:  # noqa: BLE001
                images.append(None)
        return images

    def _decode_call(self, data: "torch.Tensor | list[torch.Tensor]"):
        from torchvision.io import ImageReadMode, decode_jpeg

        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            out = decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
        for w in seen:
            if DAMAGE.search(str(w.message)):
                raise ValueError(f"decoder warning: {w.message}")
            if not issubclass(w.category, DeprecationWarning):  # torchvision 0.29 points to TorchCodec
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return out

    def _with_pillow(self, i: int, data: bytes, batch: "Batch") -> "torch.Tensor | None":
        self.fallbacks += 1
        try:
            return self.preprocess(read_image(self.records[i].path, data=data))
        except UnreadableImage as exc:
            batch.skipped.append((i, exc.reason))
        except Exception as exc:  # noqa: BLE001 - as the loader: one file never ends the run
            batch.skipped.append((i, f"failed to process ({type(exc).__name__}: {exc})"))
        batch.files.pop(i, None)
        batch.keys.pop(i, None)
        return None
