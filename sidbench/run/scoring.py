"""Stage 3 of a run, test scoring: every detector on its test records under every perturbation, through the
engine's one scoring path, streamed into ``scores.csv`` (this rank's chunks, resumed); the same grouping serves
the validation scores and ``sidbench score``."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

from ..api.records import Record
from .build import RunContext, SourcePool
from .config import RunConfig, RunData

if TYPE_CHECKING:
    from ..api.detector import Detector
    from ..engine.scoring import ScoreContext


def score_test(ctx: RunContext, detectors: Sequence["Detector"], perturbations: Sequence[Any]) -> dict[str, tuple[str, str]]:
    """Score every detector on its test records under every perturbation (this rank's chunks, resumed);
    returns the skipped images of all ranks."""
    from ..engine.scoring import ScoreContext
    from ..results.resume import INDEX_NAME, FileIndex
    from . import distributed

    cfg, data, dist = ctx.cfg, ctx.data, ctx.dist
    score = ScoreContext(distributed.open_scores(ctx.out, dist), ctx.options, shard=(dist.rank, dist.world),
                         index=FileIndex(ctx.out / INDEX_NAME))
    try:
        score_all(score, ctx.pool, detectors, assign(detectors, data, cfg), perturbations, ctx.timings, data.plan)
    finally:
        score.scores.close()
    cache = ctx.options.cache
    if cache is not None:
        ctx.log(f"feature cache: {cache.hits} image(s) served, {cache.stored} entries stored ({cache.root})")
    skipped = score.skipped
    for other in dist.gather(skipped)[1:]:  # every rank has finished scoring after this
        skipped.update(other)
    return skipped


def assign(detectors: Sequence["Detector"], data: RunData, cfg: RunConfig,
           records: Sequence[Record] | None = None) -> dict[tuple[str, str], dict[str, list[Record]]]:
    """(source, protocol) -> detector name -> its records (default: the test records): detectors sharing a
    source and preprocessing share one pass per image; a plan may give some test records another protocol."""
    from .resume import protocol_for

    groups: dict[tuple[str, str], dict[str, list[Record]]] = {}
    for det in detectors:
        key = SourcePool.key(det, cfg)
        for r in (data.test if records is None else records):
            protocol = protocol_for(det, r, data, cfg) if records is None else det.preprocess
            groups.setdefault((key, protocol), {}).setdefault(det.name, []).append(r)
    return groups


def score_all(score: "ScoreContext", pool: SourcePool, detectors: Sequence["Detector"],
              groups: dict[tuple[str, str], dict[str, list[Record]]], perturbations: Sequence[Any],
              timings: dict[str, float], plan: Any = None, label: str = "score") -> None:
    """Score ``groups`` (from :func:`assign`) under every perturbation (those ``plan`` wants) through the
    engine's scoring path: one source pass per image for each group of detectors sharing a source and
    protocol (``sidbench run``, its validation scores, and ``sidbench score``)."""
    from ..engine.scoring import score_group

    for (key, protocol), by_det in groups.items():
        group = [d for d in detectors if d.name in by_det]
        source = pool.source(group[0])
        for det in group:
            det.to(pool.device).eval()
            det.bind(source)
        for pert in perturbations:
            t = time.time()
            wanted = {n: [r for r in rs if plan is None or plan.wants(pert.name, r)] for n, rs in by_det.items()}
            score_group(score, group, source, protocol, pert, wanted)
            timings[f"{label} {key} {protocol} {pert.name}"] = round(time.time() - t, 3)
