"""JPEG decoding, Pillow vs torchvision.io.decode_jpeg (issue 25, item 7): are the pixels the same, and what does
one loader core decode per second at 256, 512 and 1024 px?

    python benchmarks/jpeg_decode.py                    # both tables, on the CPU
    python benchmarks/jpeg_decode.py --device cuda      # the same with nvJPEG (decode_jpeg(device="cuda"))

(1) Bit-compatibility: photo-like JPEGs (the quickstart's natural-image model, 256/512/1024 px, and two real
photos that ship with scikit-learn) at several qualities, chroma subsamplings, progressive and greyscale, decoded
by sidbench's Pillow path (``read_image``) and by ``decode_jpeg(device=--device)``: largest absolute difference
and share of differing values, on the whole image, after ``center_crop`` (224) and after ``resize_center_crop``
(224; Pillow's resize on one side, torchvision's antialiased tensor resize on the other). Then the effect on a
detector's logit: a seeded random ResNet-50 with one output (CNNDetection's architecture, ImageNet
normalisation; random weights, so only the size of the change relative to the spread of logits means anything).

(2) Loader throughput per core (one process, one torch thread, CPU time): what a worker spends per image with the protocol's
crop/resize: Pillow decode + protocol (sidbench's loader path), torchvision CPU decode + the protocol on the
tensor, and, with ``--decode device``, the worker's share alone (read the file, check the header, ship the bytes).
"""
from __future__ import annotations

import argparse
import io
import tempfile
import time
import warnings
from pathlib import Path

SIZES = (256, 512, 1024)
ENCODINGS = [  # (label, Pillow save options)
    ("q75 4:2:0", dict(quality=75, subsampling=2)),
    ("q90 4:2:0", dict(quality=90, subsampling=2)),
    ("q95 4:2:0", dict(quality=95, subsampling=2)),
    ("q90 4:2:2", dict(quality=90, subsampling=1)),
    ("q90 4:4:4", dict(quality=90, subsampling=0)),
    ("q90 4:2:0 progressive", dict(quality=90, subsampling=2, progressive=True)),
    ("q90 greyscale", dict(quality=90, grey=True)),
]


def natural_image(rng, size: int):
    """The quickstart's photo-like image model (its module moved in a later refactor: either place)."""
    try:
        from sidbench.data.quickstart_images import natural_image as make
    except ImportError:
        from sidbench.data.quickstart import natural_image as make
    return make(rng, size)


def photos(seed: int = 0) -> dict[str, "object"]:
    """name -> uint8 RGB array: photo-like images of each size, and scikit-learn's two real photos."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = {f"photo-like {s}": natural_image(rng, s).astype(np.uint8) for s in SIZES}
    try:
        from sklearn.datasets import load_sample_image

        out.update({f"{n} 640x427": load_sample_image(n) for n in ("china.jpg", "flower.jpg")})
    except Exception:  # noqa: BLE001 - optional
        pass
    return out


def encode(arr, options: dict) -> bytes:
    from PIL import Image

    options = dict(options)
    img = Image.fromarray(arr)
    if options.pop("grey", False):
        img = img.convert("L")
    buf = io.BytesIO()
    img.save(buf, "JPEG", **options)
    return buf.getvalue()


def tv_decode(data: bytes, device: str):
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        x = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB, device=device)
    return x.cpu()


def pil_decode(data: bytes):
    import torchvision.transforms.functional as TF

    from sidbench.data.images import read_image

    return TF.pil_to_tensor(read_image("x.jpg", data=data))


def differ(a, b) -> tuple[int, float]:
    d = (a.int() - b.int()).abs()
    return int(d.max()), 100.0 * float((d > 0).float().mean())


def detector():
    import torch
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet50(num_classes=1).eval()
    return net


def logits(net, crops, device: str):
    import torch

    from sidbench.api.backbone import network_input

    x = network_input(torch.stack(crops), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "cpu")
    with torch.inference_mode():
        return net(x).flatten().double()


def compat(device: str) -> str:
    from sidbench.data.preprocess import Preprocess

    crop = Preprocess("center_crop", 224, (0.5,) * 3, (0.5,) * 3, uint8=True)
    resize = Preprocess("resize_center_crop", 224, (0.5,) * 3, (0.5,) * 3, uint8=True)
    rows = ["| image | encoding | whole image: max abs diff | % values differing | center_crop 224: max / % | "
            "resize_center_crop 224: max / % |", "|---|---|---|---|---|---|"]
    crops = {"pil": [], "tv": [], "pil_r": [], "tv_r": []}
    for name, arr in photos().items():
        for label, options in ENCODINGS:
            data = encode(arr, options)
            a, b = pil_decode(data), tv_decode(data, device)
            ca, cb = crop.on_tensor(a), crop.on_tensor(b)
            from PIL import Image

            ra = resize(Image.fromarray(a.permute(1, 2, 0).numpy()))  # Pillow's resize, as the loader does
            rb = resize.on_tensor(b)
            crops["pil"].append(ca), crops["tv"].append(cb), crops["pil_r"].append(ra), crops["tv_r"].append(rb)
            m, p = differ(a, b)
            mc, pc = differ(ca, cb)
            mr, pr = differ(ra, rb)
            rows.append(f"| {name} | {label} | {m} | {p:.3f} | {mc} / {pc:.3f} | {mr} / {pr:.3f} |")
    net = detector()
    lines = ["", f"Effect on a detector's logit ({len(crops['pil'])} images; seeded random ResNet-50, one output):", "",
             "| protocol | max abs logit change | logit spread (std) over the images | max change / spread |",
             "|---|---|---|---|"]
    for proto, (x, y) in (("center_crop 224", ("pil", "tv")), ("resize_center_crop 224", ("pil_r", "tv_r"))):
        la, lb = logits(net, crops[x], device), logits(net, crops[y], device)
        change, spread = float((la - lb).abs().max()), float(la.std())
        lines.append(f"| {proto} | {change:.3g} | {spread:.3g} | {change / spread:.2g} |")
    return "\n".join(rows + lines)


def per_image(fn, items: list, repeat: int = 2) -> float:
    """CPU milliseconds per item of ``fn`` over ``items`` (best of ``repeat`` rounds, after one warm-up call).
    Process CPU time, not wall time: on a shared machine a busy neighbour inflates wall time, not CPU time."""
    fn(items[0])
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        for it in items:
            fn(it)
        best = min(best, (time.process_time() - t) / len(items))
    return 1000 * best


def throughput(n: int) -> str:
    import numpy as np
    import torch

    from sidbench.api.records import Record
    from sidbench.data.images import read_file
    from sidbench.data.preprocess import Preprocess
    from sidbench.engine.decode import ShipJpeg
    from sidbench.engine.loader import ImageDataset

    torch.set_num_threads(1)  # as in a DataLoader worker
    rng = np.random.default_rng(1)
    rows = ["| size | protocol | KB/file | Pillow decode + protocol, CPU ms | torchvision CPU decode + protocol, CPU ms | "
            "--decode device: worker's share, CPU ms | Pillow img/s/core | torchvision CPU img/s/core |",
            "|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES:
            bases = [natural_image(rng, size + 16).astype(np.uint8) for _ in range(4)]
            recs = []
            for i in range(max(8, n * 256 // size)):
                y, x = rng.integers(0, 17, 2)
                path = Path(tmp) / f"{size}-{i}.jpg"
                path.write_bytes(encode(np.ascontiguousarray(bases[i % 4][y:y + size, x:x + size]), ENCODINGS[1][1]))
                recs.append(Record(str(path), 0, "s"))
            kb = np.mean([Path(r.path).stat().st_size for r in recs]) / 1024
            for protocol in ("center_crop", "resize_center_crop"):
                pre = Preprocess(protocol, 224, (0.5,) * 3, (0.5,) * 3, uint8=True)
                pil = ImageDataset(recs, pre)
                ship = ImageDataset(recs, pre, ship=ShipJpeg(pre))
                t_pil = per_image(lambda i: pil[i], list(range(len(recs))))
                t_tv = per_image(lambda r: pre.on_tensor(tv_decode(read_file(r.path)[0], "cpu")), recs)
                t_ship = per_image(lambda i: ship[i], list(range(len(recs))))
                rows.append(f"| {size} | {protocol} | {kb:.0f} | {t_pil:.2f} | {t_tv:.2f} | {t_ship:.3f} | "
                            f"{1000 / t_pil:.0f} | {1000 / t_tv:.0f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="where decode_jpeg runs in the compatibility table (cpu, cuda)")
    ap.add_argument("--images", type=int, default=48, help="256 px images timed per size (fewer for larger sizes)")
    ap.add_argument("--what", choices=("compat", "throughput", "all"), default="all")
    args = ap.parse_args(argv)
    import platform

    import PIL
    import torch
    import torchvision

    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, Pillow {PIL.__version__}, "
          f"{platform.processor() or platform.machine()}, decode_jpeg on {args.device}\n")
    if args.what in ("compat", "all"):
        print(compat(args.device), "\n", flush=True)
    if args.what in ("throughput", "all"):
        print(throughput(args.images))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
