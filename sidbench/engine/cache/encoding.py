"""Tensor encoding: how one cached tensor becomes a database row and back.

A row is ``(key, feature, backbone, dtype, shape, crc, data)``: the torch dtype name, the shape as a JSON
list, the tensor's raw bytes, and a CRC-32 over key, dtype, shape and bytes. Decoding checks all of them and
returns None for anything not intact (a torn write, a damaged page, another key's blob), so a bad entry is a
miss and never served. Features computed in fp32 may be stored in fp16/bf16 where that loses no bit
(:func:`encode_batch`); half-precision entries are widened back to fp32 when read. This layout is part of
the on-disk format (``features-v2``).
"""
from __future__ import annotations

import json
import zlib
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch

DTYPES = ("float32", "float16", "bfloat16", "float64")  # what an entry may hold (torch dtype names)


def encode_batch(keys: Sequence[str], feature: str, backbone: str, values: "torch.Tensor",
                 narrow: "torch.dtype | None") -> list[tuple]:
    """Encoded rows of one batch, each in ``narrow`` where that is exact (else as computed)."""
    import torch

    v = values.detach().cpu()
    exact = None
    if narrow is not None and v.dtype == torch.float32 and len(v):
        small = v.to(narrow)
        wide = small.float()
        exact = [True] * len(v) if torch.equal(wide, v) else (wide == v).reshape(len(v), -1).all(1).tolist()
    return [encode_row(k, feature, backbone, small[j] if exact and exact[j] else v[j]) for j, k in enumerate(keys)]


def encode_row(key: str, feature: str, backbone: str, t: "torch.Tensor") -> tuple:
    """(key, feature, backbone, dtype, shape, crc, data) of one entry; the bytes are the tensor's own (no copy)."""
    import torch

    t = t.detach().cpu().contiguous()
    dtype, shape = str(t.dtype).removeprefix("torch."), json.dumps(list(t.shape))
    data = t.reshape(-1).view(torch.uint8).numpy()
    return key, feature, backbone, dtype, shape, checksum(key, dtype, shape, data), memoryview(data)


def checksum(key: str, dtype: str, shape: str, data) -> int:
    """The CRC-32 stored with an entry: over its key, dtype and shape text, then its bytes."""
    return zlib.crc32(data, zlib.crc32(f"{key}|{dtype}|{shape}".encode()))


def decode(key: str, dtype: str, shape: str, crc: int, data: bytes) -> "torch.Tensor | None":
    """The stored tensor, widened to fp32 when stored in half precision; None for anything not intact."""
    import torch

    if dtype not in DTYPES or not isinstance(data, bytes):
        return None
    try:
        dims = [int(d) for d in json.loads(shape)]
    except (ValueError, TypeError):
        return None
    dt = getattr(torch, dtype)
    n = 1
    for d in dims:
        n *= d
    if min(dims, default=1) < 0 or len(data) != n * dt.itemsize or checksum(key, dtype, shape, data) != crc:
        return None  # never serve a torn, damaged or foreign blob
    t = torch.frombuffer(bytearray(data), dtype=dt) if n else torch.empty(0, dtype=dt)
    t = t.reshape(dims)
    return t.float() if dt in (torch.float16, torch.bfloat16) else t
