"""A benchmark run, top level: the stages in order. Build the detectors and sources (:mod:`.build`), fit what
needs fitting (:mod:`.fit`), drop the rows of changed images (:mod:`.resume`), score the test records
(:mod:`.scoring`) and the validation records (:mod:`.validate`), then write metrics, the leaderboard and
run.json (:mod:`.finish`, :mod:`.record`). Each source runs once per image, protocol and perturbation for
every detector on it; scores stream to disk, so an interrupted run resumes."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..api.log import note
from .build import (Log, RunContext, SourcePool, build_detectors, check_out_outside_data, feature_backbone,
                    feature_cache, open_results, scratch_cache)
from .config import RunConfig, RunData, pick_device
from .finish import SKIPPED, finish
from .fit import check_fittable, check_fitted_for_torchrun, checkpoint_path, fit_all, note_training
from .record import detector_info, plugin_versions
from .resume import changed_detectors, prune_stale_rows, record_detectors
from .scoring import assign, score_all, score_test
from .validate import VAL_SCORES, check_val_for_operating_points, score_validation

if TYPE_CHECKING:
    import pandas as pd

    from ..api.detector import Detector
    from ..registry.plugins import Plugins
    from .distributed import Dist
    from .resume import RowCheck

__all__ = ["run", "RunContext", "SourcePool", "build_detectors", "feature_backbone", "feature_cache", "scratch_cache",
           "assign", "score_all", "checkpoint_path", "note_training", "check_fitted_for_torchrun", "detector_info",
           "plugin_versions", "SKIPPED", "VAL_SCORES"]


def run(cfg: RunConfig, data: RunData, out: Path, plugins: "Plugins", log: Log = note,
        overwrite: bool = False) -> "pd.DataFrame | None":
    """Run ``cfg`` on ``data`` into ``out`` and return the metrics table (None on torchrun ranks > 0).

    Names, perturbations and fitting needs are checked before ``out`` is touched; ``out`` is then locked
    (one run at a time), cleared of an earlier run's files with ``overwrite``, and claimed. A run that fails
    before it scored or fitted anything removes what it wrote there."""
    import torch

    from ..engine.workers import WorkerPool
    from . import distributed

    t0 = time.time()
    torch.manual_seed(cfg.seed)
    dist = distributed.init(cfg.device)
    device = dist.device(pick_device(cfg.device))
    log = log if dist.is_main else (lambda message: None)  # one voice under torchrun
    detectors, perturbations, check = prepare(cfg, data, out, plugins, dist, str(device), log)
    folder = dist.on_main(lambda: open_results(out, overwrite, cfg, check))
    cache = scratch = None
    workers = WorkerPool()  # one set of loader processes for every pass and epoch of the run
    try:
        cache = None if cfg.no_cache else feature_cache(dist)
        if cache is None and data.val and data.train:
            # --no-cache leaves the user's cache alone; the validation images the fit extracted are still
            # scored from that pass (a run-private cache, deleted at the end), not sent through the backbone again
            scratch = scratch_cache()
        ctx = context(cfg, data, out, plugins, dist, device, cache, scratch[1] if scratch else None, log, workers)
        with dist.main_first():  # fits (one process) or reloads an earlier run's checkpoints (rank 0 first)
            fit_all(ctx, detectors)
        with dist.main_first():  # rank 0 drops the rows of changed or deleted images before anyone resumes
            if dist.is_main:
                resume_rows(ctx, detectors, check)
        skipped = score_test(ctx, detectors, perturbations)
        if not dist.is_main:
            return None
        distributed.merge_scores(out)
        score_validation(ctx, detectors)  # on rank 0 only: validation sets are small
        ctx.timings["total"] = round(time.time() - t0, 3)
        return finish(ctx, detectors, perturbations, skipped)
    except BaseException:
        if folder is not None:
            folder.abandon()
        raise
    finally:
        workers.close()
        for closing in (cache, scratch[1] if scratch else None):
            if closing is not None:
                closing.close()
        if scratch is not None:
            scratch[0].cleanup()
        if folder is not None:
            folder.release()
        dist.close()


def prepare(cfg: RunConfig, data: RunData, out: Path, plugins: "Plugins", dist: "Dist", device: str,
            log: Log) -> tuple[list["Detector"], list[Any], "RowCheck"]:
    """The detectors, the perturbations and the resume's row check, after every check that can refuse the run
    before ``out`` is touched (names, perturbations, fitting needs, validation needs, ``--out`` placement)."""
    from ..data.perturb import parse_perturbations
    from .resume import RowCheck

    if cfg.precision not in (None, "fp32") and not device.startswith("cuda"):
        log(f"--precision {cfg.precision} applies to CUDA devices; {device} runs fp32")
    perturbations = parse_perturbations(cfg.perturb, plugins)
    detectors = build_detectors(cfg, plugins)
    check_fittable(detectors, data, out)
    dist.on_main(lambda: check_fitted_for_torchrun(detectors, out, dist))
    check_val_for_operating_points(cfg, data)
    check_out_outside_data(out, cfg)
    return detectors, perturbations, RowCheck(detectors, perturbations, data, cfg)


def context(cfg: RunConfig, data: RunData, out: Path, plugins: "Plugins", dist: "Dist", device: Any, cache: Any,
            val_cache: Any, log: Log, workers: Any = None) -> RunContext:
    """What the stages share; on CPU (in-process loading) each file is read and decoded once for all protocols,
    perturbations and fits."""
    from ..engine.decode import resolve_decode
    from ..engine.inputs import ExtractOptions
    from ..engine.loader import DecodedImages

    opts = ExtractOptions(cfg.batch_size, cfg.workers, cfg.progress, cache=cache, decoded=DecodedImages(),
                          pool=workers, decode=resolve_decode(cfg.decode, device))
    return RunContext(cfg, data, out, plugins, dist, SourcePool(cfg, device, plugins, cache), opts, log,
                      val_cache=val_cache)


def resume_rows(ctx: RunContext, detectors: Sequence["Detector"], check: "RowCheck") -> None:
    """Between fitting and scoring (rank 0): drop the test and validation rows of changed or deleted images and
    of changed detectors, then record the detectors that score here."""
    from ..data.perturb import NONE
    from .resume import RowCheck

    check.changed = changed_detectors(ctx.out, detectors)
    prune_stale_rows(ctx.out, check, ctx.log)
    if ctx.data.val:  # validation rows follow their files too: --threshold val fits on them
        val_check = RowCheck(detectors, [NONE], ctx.data, ctx.cfg, records=ctx.data.val)
        val_check.changed = check.changed
        prune_stale_rows(ctx.out, val_check, ctx.log, files=[ctx.out / VAL_SCORES], what="validation score")
    record_detectors(ctx.out, detectors)
