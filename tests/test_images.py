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


def test_draft_decodes_large_jpegs_at_reduced_scale_only(tmp_path):
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (75, 100, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(small).resize((1800, 1200), Image.BICUBIC))
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=95)
    Image.fromarray(big).save(tmp_path / "big.png")
    assert read_image(tmp_path / "big.jpg").size == (1800, 1200)
    assert read_image(tmp_path / "big.jpg", draft=224).size == (450, 300)  # 1/4: 1/8 would give 150 < 224
    assert read_image(tmp_path / "big.png", draft=224).size == (1800, 1200)  # only JPEG has a DCT draft


def test_fast_protocol_is_close_to_the_full_decode_but_its_own_protocol(tmp_path):
    import torch

    from sidbench.backbones.clip import describe_tiny
    from sidbench.engine.loader import ImageDataset
    from sidbench.data.preprocess import make_preprocess
    from sidbench.api import Record

    rng = np.random.default_rng(2)
    base = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    Image.fromarray(base).resize((1600, 1200), Image.BICUBIC).save(tmp_path / "p.jpg", quality=95)
    rec = [Record(str(tmp_path / "p.jpg"), 0, "s")]
    full = ImageDataset(rec, make_preprocess("resize_center_crop", describe_tiny()))[0][1]
    fast = ImageDataset(rec, make_preprocess("resize_center_crop_fast", describe_tiny()))[0][1]
    assert full.shape == fast.shape == (3, 224, 224)
    diff = (full - fast).abs()
    assert 0 < diff.mean().item() < 0.05  # normalised units: a small change, not none
    assert not torch.equal(full, fast)
