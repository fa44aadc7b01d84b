"""End-to-end throughput from JPEG files: the reference way vs the sidbench harness vs a warm cache.

    python benchmarks/gpu_throughput.py --backbone ViT-L-14:random --device cuda --images 4096
    python benchmarks/gpu_throughput.py --backbone clip-tiny --device cpu --images 256

(a) reference: fp32, batch 64, no cache, each detector its own backbone pass (as the reference
    scripts run one detector at a time); (b) ``sidbench run`` with every detector (one bf16 pass on
    GPU, cold cache); (c) the same command from a warm feature cache. Detectors that need fitting
    are fitted on a small generated train split first, outside the timed region.
``ViT-L-14:random`` is the real architecture with RANDOM weights: speed only, scores are meaningless.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def make_jpegs(root: Path, n: int, size: int, seed: int = 0) -> Path:
    """``root/bench/{0_real,1_fake}/*.jpg``: n random-texture JPEGs at size x size (quality 90)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = root / "bench" / ("1_fake" if i % 2 else "0_real")
        sub.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 255, (size // 16 + 1, size // 16 + 1, 3)).astype(np.uint8)
        img = Image.fromarray(base).resize((size, size), Image.BICUBIC)
        img.save(sub / f"{i:06d}.jpg", quality=90)
    return root


def default_detectors(plugins) -> list[str]:
    from sidbench.run.inputs import default_detectors as builtin

    return builtin(plugins)


def reference_way(backbone_name: str, device: str, detectors, records, checkpoints: Path, plugins) -> float:
    """Seconds for fp32, batch 64, one backbone pass per detector, no cache (the reference scripts' setting)."""
    import torch

    from sidbench.registry import build_backbone
    from sidbench.registry import load_detector
    from sidbench.engine import ExtractOptions, iter_outputs

    backbone = build_backbone(backbone_name, device=device, plugins=plugins).to(device, autocast=False)
    sync(device)
    t = time.perf_counter()
    for name in detectors:
        det = load_detector(name, backbone=backbone_name, plugins=plugins)
        ckpt = checkpoints / f"{det.name}.safetensors"
        if ckpt.exists():
            det.load(str(ckpt))
        det.to(device).eval()
        det.bind(backbone)
        opts = ExtractOptions(batch_size=64, progress=False)
        with torch.inference_mode():
            for index, feats, _ in iter_outputs(backbone, records, det.required_features, protocol=det.preprocess,
                                                 options=opts):
                if index:
                    det.score({k: v.to(device) for k, v in feats.items()}).cpu()
    sync(device)
    return time.perf_counter() - t


def harness_run(args, data: Path, train: Path, out: Path, extra: list[str]) -> float:
    from sidbench.cli import main

    argv = ["run", "--data", str(data / "bench"), "--train", str(train), "--detectors", ",".join(args.detectors),
            "--backbone", args.backbone, "--device", args.device, "--batch-size", str(args.batch_size),
            "--out", str(out), "--no-progress", *extra]
    if args.workers is not None:
        argv += ["--workers", str(args.workers)]
    sync(args.device)
    t = time.perf_counter()
    rc = main(argv)
    sync(args.device)
    if rc:
        sys.exit(f"sidbench run failed with exit code {rc}")
    return time.perf_counter() - t


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="ViT-L-14:random")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--size", type=int, default=256, help="JPEG side in pixels")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--detectors", default=None, help="comma-separated (default: every built-in family)")
    p.add_argument("--compile", action="store_true", help="also pass --compile to the harness")
    p.add_argument("--skip-reference", action="store_true")
    args = p.parse_args()

    import torch

    from sidbench.registry import load_plugins
    from sidbench.data.layout import resolve_records

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    plugins = load_plugins()
    args.detectors = args.detectors.split(",") if args.detectors else default_detectors(plugins)
    work = Path(tempfile.mkdtemp(prefix="sidbench-bench-"))
    os.environ["SIDBENCH_CACHE"] = str(work / "cache")
    data = make_jpegs(work / "test", args.images, args.size)
    train = make_jpegs(work / "train", 64, args.size, seed=1) / "bench"
    records = resolve_records(str(data / "bench"), plugins)
    extra = ["--compile"] if args.compile else []

    # Fit what needs fitting (untimed): a first harness run on 2 images writes out/checkpoints.
    warm = work / "fit"
    make_jpegs(warm / "d", 2, args.size, seed=2)
    harness_run(argparse.Namespace(**{**vars(args), "batch_size": 2}), warm / "d", train, warm / "out", ["--no-cache"])
    ckpts = warm / "out" / "checkpoints"
    for out in ("cold", "warm"):  # both timed runs start with the fitted heads
        if ckpts.exists():
            (work / out / "checkpoints").mkdir(parents=True, exist_ok=True)
            for f in ckpts.iterdir():
                (work / out / "checkpoints" / f.name).write_bytes(f.read_bytes())

    n = len(records)
    print(f"{n} JPEGs {args.size}x{args.size}, backbone {args.backbone}, device {args.device}, "
          f"detectors {','.join(args.detectors)}, torch {torch.__version__}, {os.cpu_count()} CPUs")
    results = {}
    if not args.skip_reference:
        results["reference (fp32, batch 64, one pass per detector)"] = reference_way(
            args.backbone, args.device, args.detectors, records, ckpts, plugins)
    results["sidbench run (cold cache)"] = harness_run(args, data, train, work / "cold", extra)
    results["sidbench run (warm cache)"] = harness_run(args, data, train, work / "warm", extra)
    base = results.get("reference (fp32, batch 64, one pass per detector)")
    print("\n| mode | seconds | images/s | vs reference |\n|---|---|---|---|")
    for mode, secs in results.items():
        ratio = f"{base / secs:.1f}x" if base else "-"
        print(f"| {mode} | {secs:.2f} | {n / secs:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
