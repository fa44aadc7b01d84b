"""CPU benchmarks of the streaming harness: run with `python -m pytest benchmarks --benchmark-only`.

- one detector vs all detectors on the same images: one backbone pass serves them all (ratio near 1);
- peak memory of the harness at 1k vs 10k images: streaming keeps it flat.
"""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sidbench.run import RunConfig, RunData, run


def tiny_records(root: Path, n: int, plugins):
    """n distinct 8x8 PNGs (the protocol pads them to 224): decoding is not what is measured."""
    from sidbench.data.layout import resolve_records

    rng = np.random.default_rng(0)
    for i in range(n):
        sub = root / "s" / ("1_fake" if i % 2 else "0_real")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(sub / f"{i:05d}.png")
    return resolve_records(str(root), plugins)


def fitted_detectors(plugins, recs, root: Path) -> list[str]:
    """Every built-in family's default; those that need fitting are fitted once (quickstart options),
    outside the timed region, and attached as NAME@CHECKPOINT."""
    from sidbench.run.inputs import default_detectors

    names = default_detectors(plugins)
    options = {n: dict(plugins.detectors[n].quickstart_options) for n in names}
    cfg = RunConfig(detectors=names, backbone="clip-tiny", device="cpu", batch_size=32, progress=False,
                    no_cache=True, protocol="center_crop", detector_options=options)
    run(cfg, RunData(recs, train=recs, val=recs), root, plugins, log=lambda m: None)
    ckpt = root / "checkpoints"
    return [f"{n}@{ckpt / f'{n}.safetensors'}" if plugins.detectors[n].needs_fit else n for n in names]


@pytest.mark.parametrize("which", ["one", "all"])
def test_one_vs_all_detectors(benchmark, tmp_path, plugins, which):
    recs = tiny_records(tmp_path / "d", 512, plugins)  # enough images that per-image work dominates set-up
    dets = fitted_detectors(plugins, recs, tmp_path / "fit")
    dets = dets[:1] if which == "one" else dets
    counter = iter(range(10**6))

    def once():
        cfg = RunConfig(detectors=dets, backbone="clip-tiny", device="cpu", batch_size=32, progress=False,
                        no_cache=True, protocol="center_crop")
        run(cfg, RunData(recs), tmp_path / f"out{next(counter)}", plugins, log=lambda m: None)

    benchmark.extra_info["detectors"] = [d.split("@")[0] for d in dets]
    benchmark.pedantic(once, rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("n", [1000, 10000])
def test_peak_memory_is_flat(benchmark, tmp_path, plugins, n, tiny_backbone):
    """Peak Python heap (tracemalloc) while streaming features of n images: per-batch, not per-run.

    tracemalloc sees Python objects (records, batches, lists of results), not torch's own tensor
    allocator: this checks that nothing accumulates per image on the Python side.
    """
    from sidbench.engine import ExtractOptions, iter_outputs

    recs = tiny_records(tmp_path / "d", n, plugins)
    peaks = []

    def once():
        tracemalloc.start()
        for _ in iter_outputs(tiny_backbone, recs, ["image_embed"], options=ExtractOptions(32, 0, False)):
            pass
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()

    benchmark.pedantic(once, rounds=1, iterations=1)
    benchmark.extra_info["peak_bytes"] = peaks[0]
    print(f"\n{n} images: peak traced memory {peaks[0] / 2**20:.1f} MiB")
    assert peaks[0] < 64 * 2**20  # a few batches of 224 px tensors, whatever n is
