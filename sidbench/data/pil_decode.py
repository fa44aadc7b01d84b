"""The image as an official script's ``Image.open(path).convert('RGB')`` gives it, for a detector's own protocol.

sidbench's reader applies the EXIF orientation and maps 16-bit and float images to 8 bits by their range
(:func:`sidbench.data.images.read_image`); a reference script that decodes with plain PIL does neither. A
protocol with ``reads_file=True`` gets the file's bytes and calls :func:`pil_convert_rgb`, which decodes them
again the plain-PIL way only where the two differ (an EXIF orientation other than 1, or a mode whose conversion
differs), so ordinary files cost no second decode.
"""
from __future__ import annotations

import io
from typing import Any

from PIL import Image

# modes whose ``convert('RGB')`` gives the pixels of sidbench's reader (alpha dropped, palette and grey expanded)
SAME_MODES = ("RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "CMYK", "YCbCr", "1")
ORIENTATION = 0x0112


def pil_convert_rgb(item: Any) -> Image.Image:
    """``Image.open(file).convert('RGB')`` for an unperturbed image (``item.data`` set), ``item.image`` otherwise
    (a perturbation ran on sidbench's decode, upright)."""
    if item.data is None:
        return item.image
    with Image.open(io.BytesIO(item.data)) as img:  # lazy: the header only
        orientation = img.getexif().get(ORIENTATION, 1)
        if orientation in (None, 1) and img.mode in SAME_MODES:
            return item.image
        img.load()
        return img.convert("RGB")
