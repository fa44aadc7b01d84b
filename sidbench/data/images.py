"""Reading images so that one bad file never kills a run and odd-but-valid files are scored."""
from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .layout import SIDECAR_SUFFIXES

# Above this many pixels a file is treated as a decompression bomb and skipped: the one limit, as the README
# states it (178,956,970 pixels, ~179 MP). It is Pillow's own error threshold (2 x its warning limit, which
# is not used as a limit: 89 MP cameras exist).
MAX_PIXELS = 178_956_970
# A side longer than this is refused too: a 100000 x 1 strip passes the pixel count, but a protocol that
# resizes its short side to 224 would make it 22 million pixels wide (JPEG and WebP stop at 65535 anyway).
MAX_SIDE = 65_535
MAX_FILE_BYTES = 1 << 30  # an image file larger than 1 GiB is not read into memory


class UnreadableImage(Exception):
    """A file that cannot be scored; ``reason`` goes to ``skipped.csv``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class FileState:
    """What identifies a file's content cheaply: if all four are unchanged, the bytes are taken as unchanged
    (ctime cannot be set back by any tool, so an in-place rewrite that restores the mtime still shows)."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> "FileState":
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def content_sha256(data: bytes) -> str:
    """The content hash of a file's bytes (hex): what results and the feature cache key an image by."""
    import hashlib

    return hashlib.sha256(data).hexdigest()


def file_kind(mode: int) -> str:
    """A non-regular file's kind in words (FIFO, socket, device, directory)."""
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def read_file(path: str | Path) -> tuple[bytes, FileState]:
    """The bytes of a regular file and its state, read through one descriptor (so they belong together).

    Opened without blocking and checked before reading: a FIFO, socket or device named ``x.png`` is refused
    (reading one would wait forever), as is a file over :data:`MAX_FILE_BYTES`."""
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):  # said before opening: sockets cannot even be opened
            raise UnreadableImage(f"not a regular file ({file_kind(mode)})")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnreadableImage(f"cannot read file ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableImage(f"not a regular file ({file_kind(st.st_mode)})")
        if st.st_size > MAX_FILE_BYTES:
            raise UnreadableImage(f"file too large ({st.st_size} bytes > {MAX_FILE_BYTES})")
        with os.fdopen(fd, "rb", closefd=False) as f:
            # sized by the file, one byte over to see it grow: a buffer of MAX_FILE_BYTES would reserve 1 GiB
            # of address space per read (a MemoryError under `ulimit -v`) and cost 5x the time
            data = f.read(st.st_size + 1)
        if len(data) > st.st_size:
            raise UnreadableImage("file grew while it was read (still being written?)")
        return data, FileState.of(st)
    except OSError as exc:
        raise UnreadableImage(f"cannot read file ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def check_size(width: int, height: int, max_pixels: int = MAX_PIXELS, what: str = "image") -> None:
    """Refuse (as unreadable) an image, or the result of a resize, with too many pixels or too long a side."""
    if width * height > max_pixels:
        raise UnreadableImage(f"decompression bomb ({what} {width}x{height} = {width * height} pixels > {max_pixels})")
    if max(width, height) > MAX_SIDE:
        raise UnreadableImage(f"{what} too long ({width}x{height}: a side over {MAX_SIDE} pixels)")


def check_short_side_resize(width: int, height: int, short: int) -> tuple[int, int]:
    """The size torchvision's ``resize(img, short)`` gives a ``width`` x ``height`` image, refused (as
    unreadable) before any pixel is allocated when it would be too large (a thin strip becomes huge)."""
    if width <= height:
        size = (short, int(short * height / width))
    else:
        size = (int(short * width / height), short)
    check_size(*size, what=f"image {width}x{height} resized to")
    return size


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS, draft: int | None = None,
               data: bytes | None = None) -> Image.Image:
    """Open ``path`` as an RGB image: EXIF rotation applied; CMYK, 16-bit, float, palette,
    alpha and greyscale converted. Raises :class:`UnreadableImage` with a reason otherwise.

    ``draft``: let a JPEG decode at 1/2, 1/4 or 1/8 scale as long as both sides stay >= ``draft``.
    ``data``: the file's bytes when the caller already read them (e.g. to hash them), so they are not read twice."""
    path = Path(path)
    if path.suffix.lower() in SIDECAR_SUFFIXES:
        raise UnreadableImage(f"not an image (a {path.suffix} file)")
    if data is None:
        data, _ = read_file(path)
    if len(data) == 0:
        raise UnreadableImage("empty file (0 bytes)")
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            # the limit is MAX_PIXELS, checked below before any pixel is decoded; Pillow's warning fires at half
            # of it (89 MP: a 12000 x 9000 camera JPEG) and its error at MAX_PIXELS itself
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                check_size(*img.size, max_pixels=max_pixels)
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
