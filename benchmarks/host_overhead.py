"""The engine's own cost on the main thread per 64-image batch (issue 25, item 8).

    python benchmarks/host_overhead.py                  # five CLIP heads, three pixel detectors
    python benchmarks/host_overhead.py --batches 200 --cache

On a GPU the main thread must hand every batch on within the device's time per batch (~25 ms for a
ViT-L/14 batch of 64 on an H100) or the device idles; the target is <= 1.2 ms (5%). This measures that
thread with everything else at zero cost: the loader is replaced by ready-made batches (in a GPU run the
workers decode in other processes), the backbone (or pixel network) by a source that returns preallocated
outputs of ViT-L/14's shapes, and every head's ``score`` by a stub that returns zeros. What is left is the
engine's own work: bucketing and padding batches, handing outputs to the heads, forming score rows,
writing and syncing ``scores.csv``, and (``--cache``) queueing features for the cache's writer.
Like ``sidbench run``, the scores go to a results folder (with its manifest) and the hash index of the
scored files is kept (``.sidbench-hashes``).

Reported, in milliseconds per batch, min and median of ``--repeat`` runs: the main thread's wall time (what
the device would wait, fsync included) and its CPU time (``time.thread_time``: the main thread alone, robust
on a shared machine); and the CPU time the other threads (the score writer, the cache's writer) spent in the
same pass, up to their last row written: off the critical path, but they share the GIL with the main thread.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

VIT_L = {"cls_ln2": (24, 1024), "cls_blocks": (24, 1024), "cls_final": (1024,), "image_embed": (768,)}
CLIP_HEADS = ("rine.progan4", "univfd", "clip_svm", "tip_adapter", "clip_zeroshot")
PIXEL_DETECTORS = ("cnndetection", "npr", "corvi2023")


class ZeroSource:
    """A source whose network costs nothing: preallocated outputs, sliced to the batch."""

    def __new__(cls, names, batch, logit=False):
        import torch

        from sidbench.api.backbone import BackboneInfo
        from sidbench.engine.sources import LOGIT, Source

        class _Zero(Source):
            name, device, precision = "zero", "cpu", "fp32"
            info = BackboneInfo("zero", 24, 1024, 768)

            @property
            def identity(self):
                return "zero"

            def outputs(self, pixels, names):
                return {n: self.out[n][: pixels.shape[0]] for n in names}

        src = _Zero()
        shapes = {LOGIT: ()} if logit else {n: VIT_L[n] for n in names}
        src.out = {n: torch.zeros(batch, *s) for n, s in shapes.items()}
        return src


def ready_batches(n_images: int, batch: int):
    """What the DataLoader would deliver: index, a (tiny) pixel tensor, the file hash of each image."""
    import torch

    from sidbench.data.images import FileState
    from sidbench.engine.loader import Batch, FileInfo

    out = []
    for k in range(0, n_images, batch):
        index = list(range(k, min(n_images, k + batch)))
        files = {i: FileInfo(f"{i:064x}", FileState(1000 + i, 0, i, 0)) for i in index}
        out.append(Batch(index, torch.zeros(len(index), 3, 1, 1), [], files=files))
    return out


def records(n: int):
    from sidbench.api.records import Record

    return [Record(f"/data/split/{'1_fake' if i % 2 else '0_real'}/{i:07d}.png", i % 2, "split", "gen", "gan")
            for i in range(n)]


def heads(names):
    import torch

    from sidbench.registry import load_plugins
    from sidbench.registry.lookup import load_detector

    plugins = load_plugins()
    out = []
    for name in names:
        det = load_detector(name, backbone="ViT-L-14:openai", plugins=plugins) if plugins.detector(name).input == "features" \
            else load_detector(name, plugins=plugins)
        det.fitted = True
        det.score = lambda feats, _d=det: torch.zeros(next(iter(feats.values())).shape[0])  # zero-cost head
        out.append(det)
    return out


def run_group(dets, source, n_images: int, batch: int, cache_root: Path | None,
              folder: Path) -> tuple[float, float, float]:
    """Main-thread (wall, CPU) seconds of one scoring pass of ``dets`` over ``n_images`` ready-made images, and
    the other threads' CPU seconds until every row is written."""
    from unittest import mock

    from sidbench.data.perturb import NONE
    from sidbench.engine import inputs
    from sidbench.engine.cache import FeatureCache
    from sidbench.engine.inputs import ExtractOptions
    from sidbench.engine.scoring import ScoreContext, score_group
    from sidbench.results.manifest import mark
    from sidbench.results.resume import INDEX_NAME, FileIndex
    from sidbench.results.score_log import ScoreLog

    recs = records(n_images)
    batches = ready_batches(n_images, batch)
    cache = FeatureCache(cache_root) if cache_root is not None else None
    mark(folder)  # a results folder, as a run writes one
    log = ScoreLog(folder / "scores.csv")
    ctx = ScoreContext(log, ExtractOptions(batch_size=batch, workers=0, progress=False, cache=cache),
                       index=FileIndex(folder / INDEX_NAME))
    with mock.patch.object(inputs, "make_loader", lambda *a, **k: iter(batches)), \
            mock.patch.object(inputs.ImageDataset, "__init__", lambda self, *a, **k: None):
        start, cpu, process = time.perf_counter(), time.thread_time(), time.process_time()
        score_group(ctx, dets, source, "center_crop", NONE, {d.name: recs for d in dets})
        wall, cpu = time.perf_counter() - start, time.thread_time() - cpu
    main_after = time.thread_time()
    if cache is not None:
        cache.flush()  # the writer's commit is not on the critical path: the next pass does not wait for it
    log.close()
    others = time.process_time() - process - cpu - (time.thread_time() - main_after)
    return wall, cpu, others


def measure(kind: str, args) -> list[tuple[float, ...]]:
    """(wall, main-thread CPU, other threads' CPU) milliseconds per batch of each of ``args.repeat`` runs."""
    from sidbench.engine.scoring import source_outputs

    runs = []
    for r in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            cache = tmp / "cache" if args.cache else None
            n = args.batches * args.batch
            if kind == "clip":
                dets = heads(CLIP_HEADS)
                names = tuple(sorted({f for d in dets for f in source_outputs(d)}))
                seconds = run_group(dets, ZeroSource(names, args.batch), n, args.batch, cache, tmp)
            else:
                parts = []
                for det in heads(PIXEL_DETECTORS):
                    (tmp / det.name).mkdir()
                    parts.append(run_group([det], ZeroSource((), args.batch, logit=True), n, args.batch, cache,
                                           tmp / det.name))
                seconds = tuple(sum(p[i] for p in parts) / len(parts) for i in range(3))
            runs.append(tuple(s / args.batches * 1000 for s in seconds))
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cache", action="store_true", help="also queue every feature for the cache's writer")
    p.add_argument("--only", choices=("clip", "pixels"), action="append", help="measure only this group")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    print(f"ms per {args.batch}-image batch ({args.batches} batches, {args.repeat} runs, min / median; "
          f"cache {'on' if args.cache else 'off'})")
    kinds = {"clip": f"five CLIP heads ({', '.join(CLIP_HEADS)})",
             "pixels": f"pixel detectors ({', '.join(PIXEL_DETECTORS)}), each"}
    for kind in args.only or kinds:
        runs = measure(kind, args)
        cells = [f"{min(v):.2f} / {statistics.median(v):.2f}" for v in zip(*runs)]
        print(f"  {kinds[kind]}:\n    main thread wall {cells[0]}, main thread CPU {cells[1]}, "
              f"other threads CPU {cells[2]}")


if __name__ == "__main__":
    main()
