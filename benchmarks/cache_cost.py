"""What the feature cache costs (issue 15, item 2).

    python benchmarks/cache_cost.py write --batches 40            # entries/s for ViT-L/14-sized features
    python benchmarks/cache_cost.py run --backbone clip-tiny --images 256
    python benchmarks/cache_cost.py run --backbone ViT-B-16:random --images 48 --batch-size 16
    python benchmarks/cache_cost.py warm --backbone ViT-B-32:random --images 300

``write``: one ViT-L/14 image is three entries (``cls_ln2`` [24, 1024], ``cls_final`` [1024], ``image_embed``
[768]); batches of 64 images are written (a) synchronously, one transaction per batch, fp32 (what the
scoring thread did before the background writer; also what older versions can run), and (b) through the
background writer with fp16-exact values (features computed in fp16 on a GPU, stored in fp16), reporting
the committed entries/s and the time the caller's thread spends per entry: when the caller outpaces the
writer it waits (back-pressure of the bounded queue); paced below the writer's rate (``--pace``) it pays
the hand-off alone, which is what the scoring thread pays while the GPU computes.

``run``: a cold ``sidbench run`` (CPU, every built-in CLIP detector fitted beforehand, untimed; one protocol)
with a fresh feature cache vs the same run with ``--no-cache``, alternated ``--repeat`` times; wall and
process CPU seconds, best of the repetitions (the machine may be shared).

``warm``: a cold run, then the same command into new folders (every feature and prompt embedding cached):
the warm run's time and whether it built the backbone (run.json ``backbones[].loaded``).
"""
from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

VIT_L = {"cls_ln2": (24, 1024), "cls_final": (1024,), "image_embed": (768,)}


def features(batch: int, seed: int, half_exact: bool):
    import torch

    g = torch.Generator().manual_seed(seed)
    out = {n: torch.randn(batch, *s, generator=g) for n, s in VIT_L.items()}
    return {n: v.half().float() for n, v in out.items()} if half_exact else out


def write_sync(root: Path, batches: int, batch: int) -> tuple[float, float]:
    from sidbench.engine.cache import FeatureCache

    cache = FeatureCache(root)
    data = [features(batch, b, False) for b in range(batches)]
    t = time.perf_counter()
    for b, feats in enumerate(data):
        cache.put_many([(f"{b}-{j}-{n}", n, "bench", v[j]) for n, v in feats.items() for j in range(batch)])
    seconds = time.perf_counter() - t
    return seconds, seconds


def write_async(root: Path, batches: int, batch: int, pace: float = 0.0) -> tuple[float, float]:
    """(seconds until everything is committed, seconds the caller spent in store()). With ``pace`` (images/s)
    the caller produces batches no faster than that, as a GPU would: then store() measures the hand-off alone."""
    import torch

    from sidbench.engine.cache import FeatureCache

    cache = FeatureCache(root)
    data = [features(batch, b, True) for b in range(batches)]
    caller = 0.0
    t = time.perf_counter()
    for b, feats in enumerate(data):
        due = t + b * batch / pace if pace else 0.0
        time.sleep(max(0.0, due - time.perf_counter()))
        for n, v in feats.items():
            c = time.perf_counter()
            cache.store([f"{b}-{j}-{n}" for j in range(batch)], n, "bench", v, torch.float16)
            caller += time.perf_counter() - c
    cache.flush()
    return time.perf_counter() - t, caller


def bench_write(args: argparse.Namespace) -> None:
    n = args.batches * args.batch * len(VIT_L)
    ways = [("synchronous, fp32, one transaction per batch", write_sync),
            ("background writer, fp16, caller as fast as it can", write_async),
            (f"background writer, fp16, caller at {args.pace:.0f} img/s", lambda root, n, b: write_async(root, n, b, args.pace))]
    print(f"{n} entries ({args.batches} batches of {args.batch} ViT-L/14 images x {len(VIT_L)} features)\n")
    print("| writer | entries/s committed | MiB/s | caller's thread per entry |\n|---|---|---|---|")
    for label, fn in ways:
        runs = []
        for _ in range(args.repeat):
            root = Path(tempfile.mkdtemp(prefix="sidbench-cache-bench-", dir=args.dir))
            seconds, caller = fn(root, args.batches, args.batch)
            size = sum(f.stat().st_size for f in root.iterdir())
            runs.append((seconds, caller, size))
            shutil.rmtree(root)
        seconds, caller, size = min(runs)
        print(f"| {label} | {n / seconds:,.0f} | {size / 2**20 / seconds:,.0f} | {caller / n * 1e6:.0f} us |")


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def bench_run(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import gpu_check

    work = Path(tempfile.mkdtemp(prefix="sidbench-cache-cost-", dir=args.dir))
    check_args = gpu_check.parse(["--device", "cpu", "--backbone", args.backbone, "--images", str(args.images),
                                  "--batch-size", str(args.batch_size), "--workers", "0", "--modes", "b"])
    from sidbench.registry import load_plugins

    check = gpu_check.Check(check_args, work, load_plugins())
    gpu_check.make_jpegs(work / "test", args.images, 256)
    train = gpu_check.make_jpegs(work / "train", 32, 256, seed=2)
    dets = gpu_check.fit_untimed(check, gpu_check.registered(check.plugins, "features", builtin_only=True), train)
    results: dict[str, list[tuple[float, float]]] = {"cache": [], "no-cache": []}
    for i in range(args.repeat):
        for mode in ("cache", "no-cache") if i % 2 == 0 else ("no-cache", "cache"):
            extra = ["--protocol", "center_crop"] + (["--no-cache"] if mode == "no-cache" else [])
            c, t = cpu_seconds(), time.perf_counter()
            gpu_check.sidbench_run(check, work / "test", dets, work / "out" / f"{mode}{i}", work / f"cache{i}", extra)
            results[mode].append((time.perf_counter() - t, cpu_seconds() - c))
    print(f"cold sidbench run, {args.images} JPEGs 256x256, backbone {args.backbone}, batch {args.batch_size}, "
          f"{len(dets)} detectors, one protocol, {args.repeat} alternated repetitions\n")
    print("| run | wall s (best) | wall s (median) | CPU s (best) |\n|---|---|---|---|")
    for mode, rs in results.items():
        print(f"| {mode} | {min(w for w, _ in rs):.2f} | {statistics.median(w for w, _ in rs):.2f} | {min(c for _, c in rs):.2f} |")
    best = {m: min(w for w, _ in rs) for m, rs in results.items()}
    cpu = {m: min(c for _, c in rs) for m, rs in results.items()}
    print(f"\ncache / no-cache: wall {best['cache'] / best['no-cache']:.3f}x, CPU {cpu['cache'] / cpu['no-cache']:.3f}x")
    shutil.rmtree(work)


def bench_warm(args: argparse.Namespace) -> None:
    """A warm run (every feature and text embedding cached): does it still build the backbone?"""
    import json

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import gpu_check

    work = Path(tempfile.mkdtemp(prefix="sidbench-warm-", dir=args.dir))
    check_args = gpu_check.parse(["--device", "cpu", "--backbone", args.backbone, "--images", str(args.images),
                                  "--batch-size", str(args.batch_size), "--workers", "0"])
    check = gpu_check.Check(check_args, work, None)
    gpu_check.make_jpegs(work / "test", args.images, 256)
    times = {}
    for mode in ["cold"] + [f"warm{i}" for i in range(args.repeat)]:
        t = time.perf_counter()
        gpu_check.sidbench_run(check, work / "test", args.detectors.split(","), work / "out" / mode, work / "cache", [])
        times[mode] = time.perf_counter() - t
    info = json.loads((work / "out" / "warm0" / "run.json").read_text())
    loaded = {k: v.get("loaded") for k, v in info.get("backbones", {}).items()} or "not recorded"
    print(f"{args.images} JPEGs 256x256, backbone {args.backbone}, detectors {args.detectors}, CPU")
    print(f"cold run {times['cold']:.1f} s; warm run {min(v for k, v in times.items() if k != 'cold'):.1f} s "
          f"(best of {args.repeat}); backbone built in the warm run: {loaded}")
    shutil.rmtree(work)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    w = sub.add_parser("write", help="cache write throughput, ViT-L/14-sized entries")
    w.add_argument("--batches", type=int, default=40)
    w.add_argument("--batch", type=int, default=64)
    w.add_argument("--pace", type=float, default=500.0, help="images/s of the paced caller (default 500)")
    r = sub.add_parser("run", help="a cold run with the cache vs --no-cache")
    r.add_argument("--backbone", default="clip-tiny")
    r.add_argument("--images", type=int, default=256)
    r.add_argument("--batch-size", type=int, default=32)
    m = sub.add_parser("warm", help="a fully cached run: time, and whether the backbone was built")
    m.add_argument("--backbone", default="ViT-B-32:random")
    m.add_argument("--images", type=int, default=300)
    m.add_argument("--batch-size", type=int, default=32)
    m.add_argument("--detectors", default="clip_zeroshot")
    for q in (w, r, m):
        q.add_argument("--repeat", type=int, default=3)
        q.add_argument("--dir", default=None, help="where the temporary caches go (default: the temp folder)")
    args = p.parse_args(argv)
    {"write": bench_write, "run": bench_run, "warm": bench_warm}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
