"""Decode + preprocess speed of large JPEGs: full decode vs Pillow draft (``resize_center_crop_fast``).

    python benchmarks/decode_speed.py --images 40 --size 2048x1536

Single process, one core: the per-worker rate the DataLoader multiplies by its workers.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    import numpy as np
    from PIL import Image

    from sidbench.backbones.clip import describe_tiny
    from sidbench.engine.loader import ImageDataset
    from sidbench.data.preprocess import make_preprocess
    from sidbench.api import Record

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--size", default="2048x1536", help="WIDTHxHEIGHT of the generated JPEGs")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        recs = []
        for i in range(args.images):
            base = rng.integers(0, 256, (h // 10, w // 10, 3), dtype=np.uint8)
            path = Path(tmp) / f"{i}.jpg"
            Image.fromarray(base).resize((w, h), Image.BICUBIC).save(path, quality=90)
            recs.append(Record(str(path), 0, "s"))
        rates = {}
        for proto in ("resize_center_crop", "resize_center_crop_fast"):
            ds = ImageDataset(recs, make_preprocess(proto, describe_tiny()))
            ds[0]  # warm-up
            t = time.perf_counter()
            for i in range(len(ds)):
                ds[i]
            rates[proto] = len(ds) / (time.perf_counter() - t)
            print(f"{proto:26s} {rates[proto]:7.1f} images/s")
        print(f"ratio: {rates['resize_center_crop_fast'] / rates['resize_center_crop']:.1f}x ({args.images} JPEGs of {w}x{h})")


if __name__ == "__main__":
    main()
