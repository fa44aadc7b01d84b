"""A benchmark run: fit what needs fitting, run each source (backbone, or pixel detector) once per image,
protocol and perturbation for every detector on it, stream scores to disk (resumable), then write
metrics, the leaderboard and run.json."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..api.errors import FitRequiredError, SidbenchError
from ..api.records import Record
from .config import RunConfig, RunData, pick_device

if TYPE_CHECKING:
    import pandas as pd

    from ..api.detector import Detector
    from ..engine.cache import FeatureCache
    from ..engine.inputs import ExtractOptions
    from ..engine.sources import BackboneSource, Source
    from ..registry.plugins import Plugins
    from .distributed import Dist

Log = Callable[[str], None]


def build_detectors(cfg: RunConfig, plugins: "Plugins") -> list["Detector"]:
    from ..registry.lookup import load_detector

    if not cfg.detectors:
        raise SidbenchError("no detectors given: --detectors NAME[,NAME...] (see `sidbench list detectors`)")
    dets, seen = [], set()
    for name in cfg.detectors:
        options = {**cfg.detector_options.get(name, {}), **({"preprocess": cfg.protocol} if cfg.protocol else {})}
        det = load_detector(name, backbone=cfg.backbone, plugins=plugins, **options)
        if det.name in seen:
            raise SidbenchError(f"detector {det.name!r} is listed twice in --detectors")
        seen.add(det.name)
        dets.append(det)
    return dets


class SourcePool:
    """The sources of one run: each backbone once (lazy: built only on a cache miss), one per pixel detector."""

    def __init__(self, cfg: RunConfig, device: str, plugins: "Plugins", cache: "FeatureCache | None"):
        self.cfg, self.device, self.plugins, self.cache = cfg, device, plugins, cache
        self.backbones: dict[str, "BackboneSource"] = {}
        self.pixels: dict[str, "Source"] = {}

    @staticmethod
    def key(det: "Detector", cfg: RunConfig) -> str:
        """Detectors with the same key share one source pass."""
        return f"pixels:{det.name}" if det.input == "pixels" else (cfg.backbone or det.spec.backbone)

    def backbone(self, name: str) -> "BackboneSource":
        from ..engine.sources import BackboneSource

        if name not in self.backbones:
            self.backbones[name] = BackboneSource(name, self.plugins, weights=self.cfg.weights, device=self.device,
                                                  precision=self.cfg.precision, compile=self.cfg.compile,
                                                  cache=self.cache)
        return self.backbones[name]

    def source(self, det: "Detector") -> "Source":
        if det.input == "features":
            return self.backbone(self.key(det, self.cfg))
        from ..engine.sources import PixelSource

        if det.name not in self.pixels:
            self.pixels[det.name] = PixelSource(det, self.device)
        return self.pixels[det.name]

    def describe(self) -> dict[str, Any]:
        """run.json's ``backbones``: identity, shapes, precision, and whether the weights were loaded."""
        return {n: b.describe() for n, b in self.backbones.items()}


@dataclass
class RunContext:
    """What the steps of one run share."""

    cfg: RunConfig
    data: RunData
    out: Path
    plugins: "Plugins"
    dist: "Dist"
    pool: SourcePool
    options: "ExtractOptions"
    log: Log
    timings: dict[str, float] = field(default_factory=dict)


def run(cfg: RunConfig, data: RunData, out: Path, plugins: "Plugins", log: Log = print) -> "pd.DataFrame | None":
    """Run ``cfg`` on ``data`` into ``out`` and return the metrics table (None on torchrun ranks > 0)."""
    import torch

    from ..data.perturb import parse_perturbations
    from ..engine.inputs import ExtractOptions
    from ..engine.scoring import ScoreContext, score_group
    from ..results.folder import claim_results_folder
    from . import distributed

    t0 = time.time()
    torch.manual_seed(cfg.seed)
    dist = distributed.init(cfg.device)
    device = dist.device(pick_device(cfg.device))
    log = log if dist.is_main else (lambda message: None)  # one voice under torchrun
    out.mkdir(parents=True, exist_ok=True)
    claim_results_folder(out, cfg.identity())  # every rank writes the same content atomically
    perturbations = parse_perturbations(cfg.perturb, plugins)
    detectors = build_detectors(cfg, plugins)
    cache = None if cfg.no_cache else _feature_cache()
    opts = ExtractOptions(cfg.batch_size, cfg.workers, cfg.progress, cache=cache)
    ctx = RunContext(cfg, data, out, plugins, dist, SourcePool(cfg, device, plugins, cache), opts, log)
    with dist.main_first():  # rank 0 fits and saves; the other ranks load its checkpoints
        fit_all(ctx, detectors)
    score = ScoreContext(distributed.open_scores(out, dist), opts, shard=(dist.rank, dist.world))
    try:
        for (key, protocol), by_det in assign(detectors, data, cfg).items():
            group = [d for d in detectors if d.name in by_det]
            source = ctx.pool.source(group[0])
            for det in group:
                det.to(device).eval()
                det.bind(source)
            for pert in perturbations:
                t = time.time()
                wanted = {n: [r for r in rs if data.plan is None or data.plan.wants(pert.name, r)] for n, rs in by_det.items()}
                score_group(score, group, source, protocol, pert, wanted)
                ctx.timings[f"score {key} {protocol} {pert.name}"] = round(time.time() - t, 3)
    finally:
        score.scores.close()
    if cache is not None:
        log(f"feature cache: {cache.hits} image(s) served, {cache.stored} entries stored ({cache.root})")
    skipped = score.skipped
    for other in dist.gather(skipped)[1:]:  # every rank has finished scoring after this
        skipped.update(other)
    if not dist.is_main:
        dist.close()
        return None
    distributed.merge_scores(out)
    ctx.timings["total"] = round(time.time() - t0, 3)
    try:
        return finish(ctx, detectors, perturbations, skipped)
    finally:
        dist.close()


def _feature_cache() -> "FeatureCache":
    from ..engine.cache import FeatureCache

    return FeatureCache()


def assign(detectors: Sequence["Detector"], data: RunData, cfg: RunConfig) -> dict[tuple[str, str], dict[str, list[Record]]]:
    """(source, protocol) -> detector name -> its records: detectors sharing a source and preprocessing
    share one pass per image; a plan may give some records another protocol."""
    groups: dict[tuple[str, str], dict[str, list[Record]]] = {}
    for det in detectors:
        key = SourcePool.key(det, cfg)
        for r in data.test:
            protocol = (data.plan.protocol(det, r) if data.plan is not None and not cfg.protocol else None) or det.preprocess
            groups.setdefault((key, protocol), {}).setdefault(det.name, []).append(r)
    return groups


def fit_all(ctx: RunContext, detectors: Sequence["Detector"]) -> None:
    """Fit (or reload from this folder's checkpoints) every detector that needs it; detectors on one
    backbone share one FitData, so each split and view passes the backbone once for all of them."""
    from ..engine.fitting import EngineFitData

    todo = []
    for det in detectors:
        if det.fitted:
            continue
        ckpt = ctx.out / "checkpoints" / f"{det.name}.safetensors"
        if ckpt.exists():  # fitted by an earlier, interrupted run of the same command
            det.load(str(ckpt))
            det.trained_on = generators(ctx.data.train)
            ctx.log(f"{det.name}: loaded the checkpoint fitted by the earlier run ({ckpt})")
            continue
        if not ctx.data.train:
            raise FitRequiredError(
                f"detector {det.name!r} must be fitted: give --train PATH (and --val PATH), "
                f"or a checkpoint with --detectors {det.name}@CHECKPOINT"
            )
        todo.append(det)
    shared: dict[str, EngineFitData] = {}
    for det in todo:
        key = SourcePool.key(det, ctx.cfg)
        if key not in shared:
            same = [d for d in todo if SourcePool.key(d, ctx.cfg) == key]
            shared[key] = fit_data_for(ctx, det, same)
        t = time.time()
        fit_and_save(ctx, det, shared[key].with_protocol(det.preprocess))
        ctx.timings[f"fit {det.name}"] = round(time.time() - t, 3)


def fit_data_for(ctx: RunContext, det: "Detector", group: Sequence["Detector"]):
    """The FitData of ``group`` (detectors on one source): the union of their features is extracted at once."""
    from ..engine.fitting import EngineFitData
    from ..engine.scoring import source_outputs

    common = dict(protocol=det.preprocess, seed=ctx.cfg.seed, options=ctx.options, device=ctx.pool.device)
    if det.input == "pixels":
        return EngineFitData(ctx.data.train, ctx.data.val, pixels=det.pixel_input, **common)
    names = tuple(sorted({f for d in group for f in source_outputs(d)}))
    return EngineFitData(ctx.data.train, ctx.data.val, backbone=ctx.pool.source(det), names=names, **common)


def fit_and_save(ctx: RunContext, det: "Detector", data) -> None:
    from ..engine.fitting import fit_detector

    summary, seconds = fit_detector(det, data, ctx.cfg.seed, log=lambda m, d=det: ctx.log(f"{d.name}: {m}"))
    det.trained_on = generators(ctx.data.train)
    det.save(str(ctx.out / "checkpoints" / f"{det.name}.safetensors"))
    ctx.log(f"{det.name}: fitted in {seconds:.1f}s {summary or ''}".rstrip())


def generators(records: Sequence[Record]) -> list[str]:
    """The generators a detector fitted on these records saw (recorded as its training data)."""
    return sorted({r.generator for r in records if r.label == 1 and r.generator})


def finish(ctx: RunContext, detectors: Sequence["Detector"], perturbations: Sequence[Any],
           skipped: dict[str, tuple[str, str]]) -> "pd.DataFrame":
    """metrics.csv, skipped.csv, leaderboard.md and run.json from the finished scores."""
    import dataclasses

    from ..api.paths import write_atomic
    from ..results.folder import environment, write_run_json, write_skipped
    from ..results.leaderboard import leaderboard_markdown
    from ..results.metrics import metrics_table
    from ..results.scores import finalize_scores

    out, cfg, data = ctx.out, ctx.cfg, ctx.data
    scores = finalize_scores(out / "scores.csv")
    n_skipped = write_skipped(out / "skipped.csv", skipped)
    metrics = metrics_table(scores)
    write_atomic(out / "metrics.csv", metrics.to_csv(index=False))
    board = leaderboard_markdown(metrics)
    header = (f"# sidbench leaderboard: {data.name}\n\n{len(data.test)} images, {n_skipped} skipped "
              f"(see skipped.csv); threshold 0.5 on P(fake); means are unweighted over splits.\n\n")
    write_atomic(out / "leaderboard.md", header + board)
    write_run_json(out / "run.json", {
        "name": data.name,
        "config": dataclasses.asdict(cfg),
        "detectors": [detector_info(d, cfg, ctx.pool) for d in detectors],
        "backbones": ctx.pool.describe(),
        "perturbations": [p.name for p in perturbations],
        "counts": {"test": len(data.test), "train": len(data.train), "val": len(data.val), "skipped": n_skipped},
        "seed": cfg.seed,
        "timings_s": ctx.timings,
        "environment": environment(),
    })
    if n_skipped:
        ctx.log(f"skipped {n_skipped} unreadable file(s): see {out / 'skipped.csv'}")
    ctx.log(board)
    ctx.log(f"results in {out}")
    return metrics


def detector_info(det: "Detector", cfg: RunConfig, pool: SourcePool) -> dict[str, Any]:
    from ..api.checkpoints import file_sha256

    s = det.spec
    info = {"name": det.name, "spec": s.name, "origin": s.origin, "input": det.input,
            "backbone": None if det.input == "pixels" else SourcePool.key(det, cfg),
            "features": list(det.required_features), "preprocess": det.preprocess,
            "options": {k: v for k, v in det.options.items() if _plain(v)},
            "training_data": list(det.trained_on if det.trained_on is not None else s.training_data),
            "published_training_data": list(s.training_data), "paper": s.paper, "license": s.license}
    if det.input == "pixels":
        source = pool.pixels.get(det.name)
        info["precision"] = source.precision if source is not None else None
    if det.weights_path:
        info["weights"] = {"path": det.weights_path, "sha256": file_sha256(Path(det.weights_path))}
    return info


def _plain(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, type(None), list, tuple))
