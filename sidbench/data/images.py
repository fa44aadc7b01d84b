"""Reading images so that one bad file never kills a run and odd-but-valid files are scored."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .layout import SIDECAR_SUFFIXES

# Above this many pixels a file is treated as a decompression bomb and skipped.
MAX_PIXELS = 178_956_970  # Pillow's own error threshold (2 x its warning limit)


class UnreadableImage(Exception):
    """A file that cannot be scored; ``reason`` goes to ``skipped.csv``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS, draft: int | None = None,
               data: bytes | None = None) -> Image.Image:
    """Open ``path`` as an RGB image: EXIF rotation applied; CMYK, 16-bit, float, palette,
    alpha and greyscale converted. Raises :class:`UnreadableImage` with a reason otherwise.

    ``draft``: let a JPEG decode at 1/2, 1/4 or 1/8 scale as long as both sides stay >= ``draft``.
    ``data``: the file's bytes when the caller already read them (e.g. to hash them), so they are not read twice."""
    path = Path(path)
    if path.suffix.lower() in SIDECAR_SUFFIXES:
        raise UnreadableImage(f"not an image (a {path.suffix} file)")
    try:
        size = len(data) if data is not None else path.stat().st_size
    except OSError as exc:
        raise UnreadableImage(f"cannot read file ({exc.strerror or exc})") from None
    if size == 0:
        raise UnreadableImage("empty file (0 bytes)")
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data) if data is not None else path) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise UnreadableImage(f"decompression bomb ({w}x{h} = {w * h} pixels > {max_pixels})")
                if draft and img.format == "JPEG":
                    img.draft("RGB", (draft, draft))
                img.load()
                img = ImageOps.exif_transpose(img) or img
                return to_rgb(img)
    except UnreadableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnreadableImage(f"decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise UnreadableImage("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UnreadableImage(f"truncated or corrupt image ({exc})") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (alpha dropped, as the reference pipelines' ``convert('RGB')``)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    return img.convert("RGB")
