"""The GPU check: one command, one table (issue 15, item 4). Under 8 minutes on one H100/H200:

    python benchmarks/gpu_check.py --out results/gpu_check
    python benchmarks/gpu_check.py --device cpu --backbone clip-tiny --images 32 --batch-size 8   # CPU smoke run

Builds ``--backbone`` (default ``ViT-L-14:random``: the real architecture with RANDOM weights, for speed only),
generates ``--images`` 256 px JPEGs, fits the CLIP detectors on a small generated train split (quickstart
options, untimed) and prints one Markdown table:

  (a) the reference way: fp32, batch 64, one backbone pass per detector, no cache (on at most 2,048 images);
  (b) ``sidbench run`` with the CLIP detectors, default precision (fp16 on CUDA), cold feature cache;
  (c) the same with ``--compile`` (CUDA only);
  (d) the same command again from the warm cache;
  (e) each registered pixel detector (``sidbench run`` with it alone, cold cache; none registered: skipped);
  (f) the encoder alone on device-resident batches, in the same precision (eager, and compiled with (c));
  (g) (b) with the other JPEG decode: ``--decode cpu`` (Pillow in the workers) on CUDA, where (b) decodes on the
      device (``--decode auto``); ``--decode device`` (torchvision's CPU decoder) on the CPU;
  (h) torchvision's ``decode_jpeg`` on the device vs Pillow on the test JPEGs: the decoder's batched rate and
      how far its pixels are from Pillow's (largest difference, share of differing values, on the whole image
      and after the centre crop), which is why ``--decode device`` is a protocol variant.

Rates are steady-state: every ``sidbench run`` mode runs twice, on one batch and on all images, and the rate
is the difference in images over the difference in seconds, so backbone construction, compilation and
metrics (fixed costs, listed in the ``start-up s`` column) do not dilute it. ``passes`` is how many encoder
passes each image needs (one per preprocessing protocol of the detectors); ``encoder img/s`` = img/s x passes
is what compares with (f). The table, with hardware and date, goes to ``OUT/gpu_check.md`` (and the raw
numbers to ``OUT/gpu_check.json``), ready to paste into benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REFERENCE_IMAGES = 2048  # (a) is slow by design; its rate is per image, so a subset suffices
MODES = "abcdefgh"


@dataclass
class Row:
    mode: str
    images: int = 0
    seconds: float = 0.0
    passes: int = 1
    startup: float | None = None
    peak_mib: float | None = None
    note: str = ""

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Check:
    """The settings and shared state of one check."""

    args: argparse.Namespace
    work: Path
    plugins: Any
    clip: list[str] = field(default_factory=list)  # CLIP detector names, with @checkpoint where fitted
    pixel: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    @property
    def cuda(self) -> bool:
        return self.args.device.startswith("cuda")


# -- data ----------------------------------------------------------------------------------------

def make_jpegs(root: Path, n: int, size: int, seed: int = 0) -> Path:
    """``root/{0_real,1_fake}/*.jpg``: n photo-like JPEGs of size x size (quality 90); returns root.

    Photo-like (the quickstart's natural-image model: dead leaves, 1/f texture, sensor noise) rather than
    smooth noise, since JPEG decoding cost grows with the detail an image holds (smooth noise decodes in
    about half the time of a photo). A few distinct images are generated and varied per file (crop offset,
    flip, brightness), which keeps generation fast while every file's bytes differ."""
    import numpy as np
    from PIL import Image

    from sidbench.data.quickstart_images import natural_image

    rng = np.random.default_rng(seed)
    bases = [natural_image(rng, size + 32) for _ in range(min(n, 8))]
    for i in range(n):
        sub = root / ("1_fake" if i % 2 else "0_real")
        sub.mkdir(parents=True, exist_ok=True)
        y, x = rng.integers(0, 33, 2)
        img = bases[i % len(bases)][y:y + size, x:x + size]
        img = np.clip(img.astype(np.float32) * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
        Image.fromarray(img[:, ::-1] if i % 3 else img).save(sub / f"{seed:02d}{i:06d}.jpg", quality=90)
    return root


# -- detectors -----------------------------------------------------------------------------------

def speed_only_options(spec) -> dict:
    """Quickstart options, one epoch, no downloaded initialisation (CNNDetection's ImageNet weights): the
    fitted weights only have to exist, since this check measures speed."""
    options = dict(spec.quickstart_options)
    options.update({k: 1 for k in ("epochs", "max_epochs") if k in spec.options})
    if "pretrained" in spec.options:
        options["pretrained"] = False
    return options


def fit_untimed(check: Check, names: list[str], train: Path) -> list[str]:
    """Fit the detectors that need it (quickstart options: small and quick) and return NAME@CHECKPOINT names."""
    from sidbench.data.layout import resolve_records
    from sidbench.run import RunConfig, RunData, run

    needs = [n for n in names if check.plugins.detectors[n].needs_fit]
    if not needs:
        return names
    recs = resolve_records(str(train), check.plugins)
    options = {n: speed_only_options(check.plugins.detectors[n]) for n in needs}
    cfg = RunConfig(detectors=needs, detector_options=options, backbone=check.args.backbone, device=check.args.device,
                    batch_size=check.args.batch_size, progress=False, no_cache=True)
    out = check.work / "fit" / "-".join(needs)[:80]
    run(cfg, RunData(recs[:2], train=recs, val=recs), out, check.plugins, log=lambda m: None)
    return [f"{n}@{out / 'checkpoints' / f'{n}.safetensors'}" if n in needs else n for n in names]


def random_checkpoints(check: Check, names: list[str]) -> list[str]:
    """NAME@CHECKPOINT of each pixel detector's randomly initialised network (speed does not depend on the
    weights, and Corvi 2023 cannot be fitted here: it publishes no training code)."""
    from sidbench.registry import load_detector

    folder = check.work / "pixel-weights"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        det = load_detector(name, plugins=check.plugins)
        out.append(f"{name}@{det.save(str(folder / f'{name}.safetensors'))}")
    return out


# -- measuring -----------------------------------------------------------------------------------

def sync(check: Check) -> None:
    if check.cuda:
        import torch

        torch.cuda.synchronize()


def fresh_peak(check: Check) -> None:
    gc.collect()
    if check.cuda:
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak(check: Check) -> float | None:
    if not check.cuda:
        return None
    import torch

    return torch.cuda.max_memory_allocated() / 2**20


def timed(check: Check, fn: Callable[[], Any]) -> float:
    sync(check)
    t = time.perf_counter()
    fn()
    sync(check)
    return time.perf_counter() - t


def sidbench_run(check: Check, data: Path, detectors: list[str], out: Path, cache: Path, extra: list[str]) -> None:
    from sidbench.cli import main

    os.environ["SIDBENCH_CACHE"] = str(cache)
    argv = ["run", "--data", str(data), "--detectors", ",".join(detectors), "--backbone", check.args.backbone,
            "--device", check.args.device, "--batch-size", str(check.args.batch_size), "--out", str(out),
            "--no-progress", *extra]
    for folder in check.args.plugins_dir:
        argv += ["--plugins-dir", folder]
    if check.args.workers is not None:
        argv += ["--workers", str(check.args.workers)]
    with open(check.work / "runs.log", "a") as log, contextlib.redirect_stdout(log):
        code = main(argv)
    if code:
        raise RuntimeError(f"sidbench run failed with exit code {code}: {' '.join(argv)}")


def steady(check: Check, mode: str, detectors: list[str], cache: str, extra: list[str] = (), passes: int = 1,
           warmup: bool = False) -> Row:
    """A ``sidbench run`` mode on one batch, then on all images (same cache folder): steady-state rate.
    ``warmup`` first runs the small set once into a scratch cache (untimed), so that both timed runs find
    torch.compile's on-disk caches equally warm."""
    small, full = check.work / "small", check.work / "test"
    if warmup:
        sidbench_run(check, small, detectors, check.work / "out" / f"{mode}-warmup", check.work / f"{cache}-warmup",
                     list(extra))
    fresh_peak(check)
    t_small = timed(check, lambda: sidbench_run(check, small, detectors, check.work / "out" / f"{mode}-small",
                                                check.work / cache, list(extra)))
    t_full = timed(check, lambda: sidbench_run(check, full, detectors, check.work / "out" / f"{mode}-full",
                                               check.work / cache, list(extra)))
    n_small, n_full = check.args.batch_size, check.args.images
    seconds = max(t_full - t_small, 1e-9)
    startup = max(t_small - n_small * seconds / (n_full - n_small), 0.0)
    return Row(mode, n_full - n_small, seconds, passes, startup, peak(check))


class ReferenceImages:
    """The reference scripts' dataset: PIL open, the detector's crop or resize, ``to_tensor``, ``normalize``
    (fp32 from the worker), one label; written here, not sidbench's loader."""

    def __init__(self, paths: list[str], protocol: str, size: int, mean, std):
        self.paths, self.protocol, self.size, self.mean, self.std = paths, protocol, size, mean, std

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torchvision.transforms.functional as TF
        from PIL import Image

        img = Image.open(self.paths[i]).convert("RGB")
        if self.protocol.startswith("resize"):
            img = TF.resize(img, self.size, interpolation=TF.InterpolationMode.BICUBIC)
        return TF.normalize(TF.to_tensor(TF.center_crop(img, self.size)), self.mean, self.std), 0


def reference(check: Check) -> Row:
    """(a): the reference scripts' way, not sidbench's engine: for each detector, a plain DataLoader over the
    images (fp32 tensors from the workers), the backbone in fp32, the head, one pass per detector, no cache."""
    import torch
    from torch.utils.data import DataLoader

    from sidbench.data.layout import resolve_records
    from sidbench.registry import build_backbone, load_detector

    recs = resolve_records(str(check.work / "test"), check.plugins)[:REFERENCE_IMAGES]
    fresh_peak(check)
    backbone = build_backbone(check.args.backbone, device=check.args.device, plugins=check.plugins, precision="fp32")
    dets = [load_detector(name, backbone=check.args.backbone, plugins=check.plugins) for name in check.clip]
    for det in dets:
        det.to(check.args.device).eval()
        det.bind(backbone)
    info = backbone.info
    workers = check.args.workers if check.args.workers is not None else (8 if check.cuda else 0)

    def go() -> None:
        for det in dets:
            data = ReferenceImages([r.path for r in recs], det.preprocess, info.image_size, info.mean, info.std)
            loader = DataLoader(data, batch_size=64, num_workers=workers, pin_memory=check.cuda)
            with torch.inference_mode():
                for x, _ in loader:
                    feats = backbone.features(x.to(check.args.device), det.required_features)
                    det.score(feats).float().cpu()

    seconds = timed(check, go)
    return Row("(a) reference: fp32, batch 64, one pass per detector, no cache", len(recs), seconds, len(dets),
               None, peak(check), f"{len(dets)} detectors, {len(recs)} images")


def encoder(check: Check, compiled: bool) -> Row:
    """(f): the backbone alone on random batches already on the device, default precision."""
    import torch

    from sidbench.engine import source_outputs
    from sidbench.registry import build_backbone, load_detector

    names = sorted({f for n in check.clip for f in source_outputs(load_detector(n.split("@")[0], backbone=check.args.backbone,
                                                                                 plugins=check.plugins))})
    fresh_peak(check)
    bb = build_backbone(check.args.backbone, device=check.args.device, plugins=check.plugins)
    if compiled:
        bb = bb.compile()
    size = bb.info.image_size
    x = torch.randn(check.args.batch_size, 3, size, size, generator=torch.Generator().manual_seed(0)).to(check.args.device)
    for _ in range(3):  # warm-up (and compilation)
        bb.features(x, names)
    iters = max(3, -(-check.args.images // check.args.batch_size))
    seconds = timed(check, lambda: [bb.features(x, names) for _ in range(iters)])
    label = "(f) encoder alone, compiled" if compiled else "(f) encoder alone"
    return Row(f"{label} ({bb.precision}, batch {check.args.batch_size})", iters * check.args.batch_size, seconds, 1,
               None, peak(check), f"features {','.join(names)}")


# -- the check -----------------------------------------------------------------------------------

def modes(check: Check) -> list[tuple[str, Callable[[], Row]]]:
    """(key, measure) in the order they run: the cheap and most important first, compilation last."""
    protocols = len({check.plugins.detectors[n.split("@")[0]].preprocess for n in check.clip})
    dets = ",".join(n.split("@")[0] for n in check.clip)
    out: list[tuple[str, Callable[[], Row]]] = [
        ("f", lambda: encoder(check, compiled=False)),
        ("a", lambda: reference(check)),
        ("b", lambda: labelled(steady(check, "b", check.clip, "cache-b", passes=protocols),
                               "(b) sidbench run, default precision, cold cache", dets)),
        ("h", lambda: decode_compat(check)),
        ("d", lambda: labelled(steady(check, "d", check.clip, "cache-b", passes=0),
                               "(d) sidbench run, warm cache", dets)),
        ("g", lambda: labelled(steady(check, "g", check.clip, "cache-g", ["--decode", other_decode(check)],
                                      passes=protocols),
                               f"(g) sidbench run --decode {other_decode(check)}, cold cache", dets)),
    ]
    if check.cuda:
        out += [("c", lambda: labelled(steady(check, "c", check.clip, "cache-c", ["--compile"], protocols, warmup=True),
                                       "(c) sidbench run --compile, cold cache", dets)),
                ("f", lambda: encoder(check, compiled=True))]
    for name in check.pixel:
        out.append(("e", lambda n=name: labelled(steady(check, f"e-{n.split('@')[0]}", [n], f"cache-e-{n.split('@')[0]}"),
                                                 f"(e) pixel detector {n.split('@')[0]}, cold cache", "")))
    return out


def other_decode(check: Check) -> str:
    """The decode (b) does not use: (b) runs --decode auto (the device on CUDA, Pillow on the CPU)."""
    return "cpu" if check.cuda else "device"


def decode_compat(check: Check, most: int = 512) -> Row:
    """(h): torchvision's decode_jpeg on the device, batched, over the test JPEGs vs sidbench's Pillow decode."""
    import warnings

    import torch
    import torchvision.transforms.functional as TF
    from torchvision.io import ImageReadMode, decode_jpeg

    from sidbench.data.images import read_image

    paths = sorted((check.work / "test").rglob("*.jpg"))[:most]
    datas = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        decode_jpeg(datas[: check.args.batch_size], mode=ImageReadMode.RGB, device=check.args.device)  # warm-up
        sync(check)
        t = time.perf_counter()
        for k in range(0, len(datas), check.args.batch_size):
            out = decode_jpeg(datas[k:k + check.args.batch_size], mode=ImageReadMode.RGB, device=check.args.device)
        sync(check)
        seconds = time.perf_counter() - t
        decoded = [x.cpu() for k in range(0, len(datas), 64)
                   for x in decode_jpeg(datas[k:k + 64], mode=ImageReadMode.RGB, device=check.args.device)]
    worst, differing, values = 0, 0, 0
    for path, x in zip(paths, decoded):
        d = (TF.pil_to_tensor(read_image(path)).int() - x.int()).abs()
        worst, differing, values = max(worst, int(d.max())), differing + int((d > 0).sum()), values + d.numel()
    note = (f"decode_jpeg on {check.args.device} vs Pillow, {len(paths)} JPEGs: max abs diff {worst}, "
            f"{100 * differing / values:.3f}% of values differ")
    return Row("(h) JPEG decode on the device (batched)", len(paths), seconds, 0, note=note)


def labelled(row: Row, mode: str, note: str) -> Row:
    row.mode, row.note = mode, note
    return row


def run_check(check: Check) -> list[Row]:
    wanted = set(check.args.modes)
    todo = [(k, fn) for k, fn in modes(check) if k in wanted]
    if "c" in wanted and not check.cuda:
        check.rows.append(Row("(c) sidbench run --compile", note="skipped: torch.compile is measured on CUDA only"))
    if "e" in wanted and not check.pixel:
        check.rows.append(Row("(e) pixel detectors", note="skipped: no pixel detector is registered"))
    for key, measure in todo:
        if time.time() - check.started > check.args.budget:
            check.rows.append(Row(f"({key})", note=f"skipped: the {check.args.budget:.0f} s budget was spent"))
            continue
        try:
            check.rows.append(measure())
        except Exception as exc:  # noqa: BLE001 - one failing mode must not lose the others' numbers
            check.rows.append(Row(f"({key})", note=f"failed: {type(exc).__name__}: {exc}"[:300]))
        print(table_row(check.rows[-1], reference_rate(check.rows)), flush=True)
    return check.rows


def reference_rate(rows: list[Row]) -> float | None:
    return next((r.rate for r in rows if r.mode.startswith("(a)") and r.seconds), None)


HEADER = ("| mode | images | seconds | img/s | passes | encoder img/s | vs reference | start-up s | peak GPU MiB | notes |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def table_row(r: Row, ref: float | None) -> str:
    if not r.seconds:
        return f"| {r.mode} | | | | | | | | | {r.note} |"
    enc = f"{r.rate * r.passes:.0f}" if r.passes else "-"
    vs = f"{r.rate / ref:.1f}x" if ref else "-"
    start = f"{r.startup:.1f}" if r.startup is not None else "-"
    mem = f"{r.peak_mib:.0f}" if r.peak_mib is not None else "-"
    return f"| {r.mode} | {r.images} | {r.seconds:.2f} | {r.rate:.1f} | {r.passes} | {enc} | {vs} | {start} | {mem} | {r.note} |"


def hardware(check: Check) -> str:
    import torch

    from sidbench.engine.loader import default_workers

    workers = check.args.workers if check.args.workers is not None else default_workers(check.args.device)
    gpu = torch.cuda.get_device_name(check.args.device) if check.cuda else "no GPU"
    return (f"{datetime.date.today().isoformat()}: {gpu}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
            f"torch {torch.__version__} (CUDA {torch.version.cuda}), backbone {check.args.backbone}, "
            f"{check.args.images} JPEGs of {check.args.size}x{check.args.size}, batch {check.args.batch_size}, "
            f"{workers} decode workers, device {check.args.device}")


def report(check: Check) -> str:
    ref = reference_rate(check.rows)
    lines = [f"GPU check, {hardware(check)}", "", HEADER, *(table_row(r, ref) for r in check.rows), "",
             f"CLIP detectors: {', '.join(n.split('@')[0] for n in check.clip)}; total {time.time() - check.started:.0f} s.",
             "img/s: steady state (two runs: one batch, all images); (d) runs no encoder; "
             "encoder img/s = img/s x passes compares with (f)."]
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="ViT-L-14:random", help="backbone of the CLIP detectors (default ViT-L-14:random)")
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--images", type=int, default=8192, help="test JPEGs (default 8192)")
    p.add_argument("--size", type=int, default=256, help="JPEG side in pixels (default 256)")
    p.add_argument("--batch-size", type=int, default=64, help="images per backbone batch (default 64, sidbench run's)")
    p.add_argument("--workers", type=int, default=None, help="decode workers (default: sidbench's, up to 16 on GPU)")
    p.add_argument("--train-images", type=int, default=64, help="train split for the untimed fits (default 64)")
    p.add_argument("--modes", default=MODES, help="which of a,b,c,d,e,f,g,h to measure (default all)")
    p.add_argument("--plugins-dir", action="append", default=[], metavar="DIR", help="extra plugins (e.g. pixel detectors)")
    p.add_argument("--pixels", metavar="NAMES", default=None,
                   help="pixel detectors for (e), comma-separated (default: every registered family's default variant)")
    p.add_argument("--budget", type=float, default=440.0, help="seconds after which remaining modes are skipped (default 440)")
    p.add_argument("--out", default=None, help="folder for gpu_check.md/.json and the work files (default: a temp folder)")
    args = p.parse_args(argv)
    args.modes = args.modes.replace(",", "")
    if args.images <= args.batch_size:
        p.error("--images must be larger than --batch-size (the steady-state rate needs two run sizes)")
    return args


MARKER = ".sidbench-gpu-check"


def fresh_work_folder(work: Path) -> Path:
    """An empty work folder: a cold-cache mode must never find the caches of an earlier check. Only a folder
    this script made (it holds MARKER) is cleared; anything else is refused."""
    if work.exists():
        if not (work / MARKER).exists():
            raise SystemExit(f"gpu_check: {work} exists and was not made by this script; choose another --out")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / MARKER).write_text("made by benchmarks/gpu_check.py; cleared at its next start\n")
    return work


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    from sidbench.registry import load_plugins
    from sidbench.run.inputs import default_detectors

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="sidbench-gpu-check-"))
    work = fresh_work_folder(out / "work")
    check = Check(args, work, load_plugins(args.plugins_dir))
    make_jpegs(work / "test", args.images, args.size, seed=0)
    make_jpegs(work / "small", args.batch_size, args.size, seed=1)
    train = make_jpegs(work / "train", args.train_images, args.size, seed=2)
    check.clip = default_detectors(check.plugins, kind="features", quickstart_only=False)
    if set(args.modes) & set("abcd"):  # (f) needs only their feature names
        check.clip = fit_untimed(check, check.clip, train)
    pixels = args.pixels.split(",") if args.pixels else default_detectors(check.plugins, kind="pixels",
                                                                          builtin_only=False, quickstart_only=False)
    check.pixel = random_checkpoints(check, pixels) if "e" in args.modes else []
    print(f"GPU check, {hardware(check)}\n\n{HEADER}", flush=True)
    run_check(check)
    text = report(check)
    (out / "gpu_check.md").write_text(text)
    (out / "gpu_check.json").write_text(json.dumps([r.__dict__ | {"rate": r.rate} for r in check.rows], indent=1))
    print(f"\n{text}\ntable written to {out / 'gpu_check.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
