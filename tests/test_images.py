"""Awkward files: bad ones are skipped with a reason, odd-but-valid ones are converted and scored."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from sidbench.data.images import UnreadableImage, read_image


def _png_header_only(path, w, h):
    """A valid PNG signature + IHDR claiming w x h pixels, without image data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)


def test_bad_files_raise_with_reason(tmp_path, rgb):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello, not an image")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG")
    (tmp_path / "trunc.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    _png_header_only(tmp_path / "bomb.png", 30000, 30000)
    (tmp_path / "prompts.txt").write_text("a photo of a cat")
    reasons = {}
    for name in ("empty.png", "text.png", "trunc.jpg", "bomb.png", "prompts.txt"):
        with pytest.raises(UnreadableImage) as info:
            read_image(tmp_path / name)
        reasons[name] = info.value.reason
    assert reasons["empty.png"].startswith("empty file")
    assert reasons["text.png"].startswith("not an image")
    assert reasons["trunc.jpg"].startswith("truncated or corrupt")
    assert reasons["bomb.png"].startswith("decompression bomb")
    assert reasons["prompts.txt"].startswith("not an image")
    # our own limit applies below Pillow's
    Image.fromarray(rgb).save(tmp_path / "ok.png")
    with pytest.raises(UnreadableImage, match="decompression bomb"):
        read_image(tmp_path / "ok.png", max_pixels=100)


def test_odd_but_valid_images_become_rgb(tmp_path, rgb):
    img = Image.fromarray(rgb)
    cases = {
        "cmyk.jpg": img.convert("CMYK"),
        "palette.png": img.convert("P"),
        "alpha.png": img.convert("RGBA"),
        "grey.png": img.convert("L"),
        "la.png": img.convert("LA"),
        "tiny.png": img.resize((3, 2)),
        "pic.webp": img,
        "bw.png": img.convert("1"),
    }
    for name, im in cases.items():
        im.save(tmp_path / name)
    grey16 = (rgb[..., 0].astype(np.uint16) * 257)
    Image.fromarray(grey16).save(tmp_path / "sixteen.png")
    for name in [*cases, "sixteen.png"]:
        out = read_image(tmp_path / name)
        assert out.mode == "RGB", name
    # 16-bit is scaled, not clipped: 255*257 -> 255
    out16 = np.asarray(read_image(tmp_path / "sixteen.png"))[..., 0]
    assert np.abs(out16.astype(int) - rgb[..., 0]).max() <= 1


def test_exif_rotation_is_applied(tmp_path, rgb):
    img = Image.fromarray(rgb)  # 50 wide, 40 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert read_image(tmp_path / "rot.jpg").size == (40, 50)
