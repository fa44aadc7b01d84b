"""A benchmark run: fit what needs fitting, run each source (backbone, or pixel detector) once per image,
protocol and perturbation for every detector on it, stream scores to disk (resumable), then write
metrics, the leaderboard and run.json."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..api.errors import FitRequiredError, SidbenchError
from ..api.log import note
from ..api.paths import written_by_sidbench
from ..api.records import Record
from .config import RunConfig, RunData, pick_device
from .resume import changed_detectors, prune_stale_rows, record_detectors

if TYPE_CHECKING:
    import tempfile

    import pandas as pd

    from ..api.detector import Detector
    from ..results.folder import ResultsFolder
    from .resume import RowCheck
    from ..engine.cache import FeatureCache
    from ..engine.inputs import ExtractOptions
    from ..engine.scoring import ScoreContext
    from ..engine.sources import BackboneSource, Source
    from ..registry.plugins import Plugins
    from .distributed import Dist

Log = Callable[[str], None]
SKIPPED = "skipped.csv"


def build_detectors(cfg: RunConfig, plugins: "Plugins") -> list["Detector"]:
    """The run's detectors, each built from the seeded random state (as ``sidbench train`` builds one, so a
    network initialised in ``__init__`` is the same in both, whatever the order of ``--detectors``)."""
    from ..engine.fitting import torch_seed
    from ..registry.lookup import load_detector
    from .config import check_detector_options, options_for

    if not cfg.detectors:
        raise SidbenchError("no detectors given: --detectors NAME[,NAME...] (see `sidbench list detectors`)")
    check_detector_options(cfg, plugins)
    dets, seen = [], set()
    for name in cfg.detectors:
        options = {**options_for(cfg, name, plugins), **({"preprocess": cfg.protocol} if cfg.protocol else {})}
        torch_seed(cfg.seed)
        det = load_detector(name, backbone=cfg.backbone, plugins=plugins, **options)
        if det.name in seen:
            raise SidbenchError(f"detector {det.name!r} is listed twice in --detectors")
        seen.add(det.name)
        dets.append(det)
    check_weights_target(cfg, dets)
    return dets


def check_weights_target(cfg: RunConfig, detectors: Sequence["Detector"]) -> None:
    """``--weights`` belongs to one backbone: refuse it when the detectors read several and --backbone names none
    (``rine`` on ViT-L-14:openai and ``clip_svm`` on the CommonPool model would both get the file)."""
    if not cfg.weights or cfg.backbone:
        return
    names = sorted({SourcePool.key(d, cfg) for d in detectors if d.input == "features"})
    if len(names) > 1:
        raise SidbenchError(f"--weights {cfg.weights}: the detectors read {len(names)} backbones ({', '.join(names)}); "
                            "name the one these weights belong to with --backbone")


def feature_backbone(det: "Detector", override: str | None) -> str:
    """The backbone a feature detector reads: its own ``backbone`` option (``probe[backbone=dinov2-l]``), else
    ``--backbone``, else the one its sidbench checkpoint was fitted on, else its spec's."""
    return det.options.get("backbone") or override or det.checkpoint_backbone or det.spec.backbone


class SourcePool:
    """The sources of one run: each backbone once (lazy: built only on a cache miss), one per pixel detector."""

    def __init__(self, cfg: RunConfig, device: str, plugins: "Plugins", cache: "FeatureCache | None"):
        self.cfg, self.device, self.plugins, self.cache = cfg, device, plugins, cache
        self.backbones: dict[str, "BackboneSource"] = {}
        self.pixels: dict[str, "Source"] = {}

    @staticmethod
    def key(det: "Detector", cfg: RunConfig) -> str:
        """Detectors with the same key share one source pass."""
        return f"pixels:{det.name}" if det.input == "pixels" else feature_backbone(det, cfg.backbone)

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
    val_cache: "FeatureCache | None" = None  # --no-cache: a run-private cache of the fit's validation features


def run(cfg: RunConfig, data: RunData, out: Path, plugins: "Plugins", log: Log = note,
        overwrite: bool = False) -> "pd.DataFrame | None":
    """Run ``cfg`` on ``data`` into ``out`` and return the metrics table (None on torchrun ranks > 0).

    Names, perturbations and fitting needs are checked before ``out`` is touched; ``out`` is then locked
    (one run at a time), cleared of an earlier run's files with ``overwrite``, and claimed. A run that fails
    before it scored or fitted anything removes what it wrote there."""
    import torch

    from ..data.perturb import parse_perturbations
    from ..engine.inputs import ExtractOptions
    from ..engine.loader import DecodedImages
    from . import distributed
    from .resume import RowCheck

    t0 = time.time()
    torch.manual_seed(cfg.seed)
    dist = distributed.init(cfg.device)
    device = dist.device(pick_device(cfg.device))
    log = log if dist.is_main else (lambda message: None)  # one voice under torchrun
    if cfg.precision not in (None, "fp32") and not str(device).startswith("cuda"):
        log(f"--precision {cfg.precision} applies to CUDA devices; {device} runs fp32")
    perturbations = parse_perturbations(cfg.perturb, plugins)
    detectors = build_detectors(cfg, plugins)
    check_fittable(detectors, data, out)
    dist.on_main(lambda: check_fitted_for_torchrun(detectors, out, dist))
    check_val_for_operating_points(cfg, data)
    check_out_outside_data(out, cfg)
    check = RowCheck(detectors, perturbations, data, cfg)
    folder = dist.on_main(lambda: open_results(out, overwrite, cfg, check))
    cache = scratch = None
    try:
        cache = None if cfg.no_cache else feature_cache(dist)
        if cache is None and data.val and data.train:
            # --no-cache leaves the user's cache alone; the validation images the fit extracted are still
            # scored from that pass (a run-private cache, deleted at the end), not sent through the backbone again
            scratch = scratch_cache()
        # on CPU (in-process loading) each file is read and decoded once for all protocols, perturbations and fits
        opts = ExtractOptions(cfg.batch_size, cfg.workers, cfg.progress, cache=cache, decoded=DecodedImages())
        ctx = RunContext(cfg, data, out, plugins, dist, SourcePool(cfg, device, plugins, cache), opts, log,
                         val_cache=scratch[1] if scratch else None)
        with dist.main_first():  # fits (one process) or reloads an earlier run's checkpoints (rank 0 first)
            fit_all(ctx, detectors)
        with dist.main_first():  # rank 0 drops the rows of changed or deleted images before anyone resumes
            if dist.is_main:
                check.changed = changed_detectors(out, detectors)
                prune_stale_rows(out, check, log)
                if data.val:  # validation rows follow their files too: --threshold val fits on them
                    from ..data.perturb import NONE

                    val_check = RowCheck(detectors, [NONE], data, cfg, records=data.val)
                    val_check.changed = check.changed
                    prune_stale_rows(out, val_check, log, files=[out / VAL_SCORES], what="validation score")
                record_detectors(out, detectors)
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
        if cache is not None:
            cache.close()
        if scratch is not None:
            scratch[1].close()
            scratch[0].cleanup()
        if folder is not None:
            folder.release()
        dist.close()


def check_out_outside_data(out: Path, cfg: RunConfig) -> None:
    """Refuse an ``--out`` inside a data folder: the next run would read its report figures as test images."""
    import os

    real_out = os.path.realpath(out)
    for flag, paths in (("--data", cfg.data), ("--train", cfg.train), ("--val", cfg.val)):
        for root in [paths] if isinstance(paths, str) else (paths or []):
            real_root = os.path.realpath(root)
            if os.path.isdir(real_root) and (real_out + os.sep).startswith(real_root.rstrip(os.sep) + os.sep):
                raise SidbenchError(f"--out {out} is inside the data folder {flag} {root}: a later run would read the "
                                    "results (report figures) as images; choose an --out outside it")


def open_results(out: Path, overwrite: bool, cfg: RunConfig, check: "RowCheck") -> "ResultsFolder":
    """Lock ``out``, clear it with ``overwrite``, and claim it for ``cfg`` (rank 0 only)."""
    from ..results.folder import ResultsFolder

    folder = ResultsFolder.open(out, overwrite)
    try:
        folder.claim(cfg.identity(), lambda: check.adoption_problem(out))
    except BaseException:
        folder.abandon()
        folder.release()
        raise
    return folder


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


def feature_cache(dist: "Dist | None" = None) -> "FeatureCache":
    """The user's feature cache; under torchrun this rank writes its own shard of it (safe on a shared disk)."""
    from ..engine.cache import FeatureCache

    return FeatureCache(rank=dist.rank if dist is not None and dist.active else None)


def scratch_cache() -> "tuple[tempfile.TemporaryDirectory, FeatureCache]":
    """A feature cache private to one run, in a temporary folder the caller deletes."""
    import tempfile

    from ..engine.cache import FeatureCache

    folder = tempfile.TemporaryDirectory(prefix="sidbench-run-cache-")
    return folder, FeatureCache(Path(folder.name))


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


VAL_SCORES = "val_scores.csv"


def check_val_for_operating_points(cfg: RunConfig, data: RunData) -> None:
    """``--threshold val``/``val-fpr:X`` and ``--calibrate`` need validation images: fail before any work."""
    from ..results.operating import VAL_HINT, parse_threshold

    policy = parse_threshold(cfg.threshold)
    if (policy.needs_val or cfg.calibrate) and not data.val:
        what = f"--threshold {policy}" if policy.needs_val else f"--calibrate {cfg.calibrate}"
        raise SidbenchError(f"{what} chooses on the validation split, and this run has none: {VAL_HINT}")


def score_validation(ctx: RunContext, detectors: Sequence["Detector"]) -> None:
    """Score every detector (fitted here or attached by checkpoint) on the clean validation records, through
    the same scoring path as the test records, into ``val_scores.csv`` (resumable like ``scores.csv``)."""
    from ..data.perturb import NONE
    from ..engine.scoring import ScoreContext
    from ..results.scores import ScoreLog

    if not ctx.data.val:
        return
    options = replace(ctx.options, cache=ctx.val_cache) if ctx.val_cache is not None else ctx.options
    score = ScoreContext(ScoreLog(ctx.out / VAL_SCORES), options)
    try:
        score_all(score, ctx.pool, detectors, assign(detectors, ctx.data, ctx.cfg, ctx.data.val), [NONE], ctx.timings,
                  label="score val")
    finally:
        score.scores.close()
    if score.skipped:
        ctx.log(f"validation: {len(score.skipped)} unreadable image(s) skipped")


def fit_all(ctx: RunContext, detectors: Sequence["Detector"]) -> None:
    """Fit (or reload from this folder's checkpoints) every detector that needs it; detectors on one
    backbone share one FitData, so each split and view passes the backbone once for all of them."""
    from ..engine.fitting import EngineFitData

    todo = []
    for det in detectors:
        if det.fitted:
            continue
        ckpt = earlier_checkpoint(ctx.out, det)
        if ckpt is not None and not same_code(det, ckpt):
            ctx.log(f"{det.name}: its code changed since the earlier run fitted {ckpt}; fitting it again")
        elif ckpt is not None:  # fitted by an earlier, interrupted run of the same command
            det.load(str(ckpt))
            note_training(det, ctx.data.train, ctx.cfg.train)
            det.fitted_in_run = True
            ctx.log(f"{det.name}: loaded the checkpoint fitted by the earlier run ({ckpt})")
            continue
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


def check_fittable(detectors: Sequence["Detector"], data: RunData, out: Path) -> None:
    """Every detector that needs fitting has training data or a checkpoint (checked before ``out`` is touched)."""
    for det in detectors:
        if not det.fitted and not data.train and earlier_checkpoint(out, det) is None:
            raise FitRequiredError(
                f"detector {det.name!r} must be fitted: give --train PATH (and --val PATH), "
                f"or a checkpoint with --detectors {det.name}@CHECKPOINT"
            )


def check_fitted_for_torchrun(detectors: Sequence["Detector"], out: Path, dist: "Dist") -> None:
    """Under torchrun every detector comes fitted (a checkpoint, or one an earlier run saved in ``out``): fitting
    is a one-process job, done before the scoring job."""
    need = [d.name for d in detectors if not d.fitted and earlier_checkpoint(out, d) is None]
    if dist.active and need:
        names = ",".join(need)
        raise FitRequiredError(
            f"detector(s) {names} need fitting, which torchrun does not do: fit first with `sidbench train NAME "
            f"--data TRAIN --out CKPT` or `sidbench run --train` on one process, then attach the checkpoint "
            f"(--detectors {need[0]}@CKPT)")


def same_code(det: "Detector", ckpt: Path) -> bool:
    """Whether ``ckpt`` was saved by this detector's code (a checkpoint without a code record: assumed so)."""
    from ..api.checkpoints import read_metadata
    from ..api.code import code_identity

    saved = read_metadata(ckpt).get("code")
    return not isinstance(saved, dict) or saved.get("source_sha256") == code_identity(det)["source_sha256"]


def checkpoint_path(out: Path, det: "Detector") -> Path:
    """Where a detector fitted during the run is saved (and found again on resume)."""
    return out / "checkpoints" / f"{det.name}.safetensors"


def epoch_state_path(out: Path, det: "Detector") -> Path:
    """Where an epoch loop keeps its state while ``det`` is being fitted (removed once its checkpoint is saved)."""
    return out / "checkpoints" / f"{det.name}.epoch-state.pt"


def earlier_checkpoint(out: Path, det: "Detector") -> Path | None:
    """The checkpoint an earlier, interrupted run of this command fitted for ``det`` in ``out``, if any."""
    ckpt = checkpoint_path(out, det)
    return ckpt if ckpt.exists() and written_by_sidbench(ckpt) else None


def fit_data_for(ctx: RunContext, det: "Detector", group: Sequence["Detector"]):
    """The FitData of ``group`` (detectors on one source): the union of their features under each protocol is
    extracted at once."""
    from ..engine.fitting import EngineFitData
    from ..engine.scoring import source_outputs

    common = dict(protocol=det.preprocess, seed=ctx.cfg.seed, options=ctx.options, device=ctx.pool.device,
                  val_cache=ctx.val_cache)
    if det.input == "pixels":
        return EngineFitData(ctx.data.train, ctx.data.val, pixels=det.pixel_input, **common)
    names: dict[str, set[str]] = {}  # per protocol: a resize-protocol fit need not carry RINE's cls_ln2
    for d in group:
        names.setdefault(d.preprocess, set()).update(source_outputs(d))
    along = {p: tuple(sorted(v)) for p, v in names.items()}
    return EngineFitData(ctx.data.train, ctx.data.val, backbone=ctx.pool.source(det), names=along, **common)


def fit_and_save(ctx: RunContext, det: "Detector", data) -> None:
    from ..api.fitting import EpochState
    from ..engine.fitting import fit_detector, fit_key

    from ..api.checkpoints import non_finite_tensor

    state = EpochState(epoch_state_path(ctx.out, det), fit_key(det, ctx.data.train, ctx.cfg.seed, ctx.cfg.digest()))
    summary, seconds = fit_detector(det, data, ctx.cfg.seed, log=lambda m, d=det: ctx.log(f"{d.name}: {m}"), state=state)
    bad = non_finite_tensor(det.state_dict())
    if bad is not None:  # a diverged fit is not saved, so the next run fits again instead of loading it
        raise SidbenchError(f"fitting detector {det.name!r} gave NaN or Inf weights ({bad}); lower its learning rate "
                            "or check the training data")
    note_training(det, ctx.data.train, ctx.cfg.train)
    det.fitted_in_run = True
    det.save(str(checkpoint_path(ctx.out, det)))
    state.clear()
    ctx.log(f"{det.name}: fitted in {seconds:.1f}s {summary or ''}".rstrip())


def generators(records: Sequence[Record]) -> list[str]:
    """The generators a detector fitted on these records saw (recorded as its training data)."""
    return sorted({r.generator for r in records if r.label == 1 and r.generator})


def note_training(det: "Detector", records: Sequence[Record], roots: Any) -> None:
    """What ``det`` was fitted on, for its checkpoint and run.json: the generators (the leaderboard's
    seen-in-training marks), the splits, the roots given and the counts of reals and fakes."""
    det.trained_on = generators(records)
    det.training = {"generators": det.trained_on, "splits": sorted({r.split for r in records}),
                    "roots": [str(r) for r in ([roots] if isinstance(roots, (str, Path)) else roots or [])],
                    "n_real": sum(r.label == 0 for r in records), "n_fake": sum(r.label == 1 for r in records)}


def finish(ctx: RunContext, detectors: Sequence["Detector"], perturbations: Sequence[Any],
           skipped: dict[str, tuple[str, str]]) -> "pd.DataFrame":
    """metrics.csv, skipped.csv, leaderboard.md and run.json from the finished scores."""
    import dataclasses

    from ..api.paths import write_atomic
    from ..results.folder import environment, write_run_json, write_skipped
    from ..results.leaderboard import DAGGER, coverage_warning, leaderboard_markdown, seen_marker, split_names
    from ..results.metrics import metrics_table, one_class, one_class_note
    from ..results.scores import to_csv

    out, cfg, data = ctx.out, ctx.cfg, ctx.data
    scores, op = operating_scores(ctx, detectors)
    n_skipped = write_skipped(out / SKIPPED, skipped)
    metrics = metrics_table(scores, op)
    write_atomic(out / "metrics.csv", to_csv(metrics))
    training = {d.name: d.trained_on if d.trained_on is not None else d.spec.training_data for d in detectors}
    seen = seen_marker(training, split_names(scores[["split", "generator"]].drop_duplicates().itertuples(index=False)))
    real_only = one_class(metrics) & (metrics["n_fake"] == 0)
    board = leaderboard_markdown(metrics, ("acc", "ap", *(("fpr",) if real_only.any() else ())), seen=seen)
    if DAGGER in board:
        board += f"\n{DAGGER} = the split's generator is in the detector's training data.\n"
    counts = f"{scores['path'].nunique()} images scored, {n_skipped} skipped"
    note = one_class_note(metrics)
    header = (f"# sidbench leaderboard: {data.name}\n\n{counts} (see skipped.csv); {op.summary()}; "
              "means are unweighted over splits.\n\n" + (f"Note: {note}.\n\n" if note else ""))
    write_atomic(out / "leaderboard.md", header + board)
    write_run_json(out / "run.json", {
        "name": data.name,
        "config": {**dataclasses.asdict(cfg), "numerics": cfg.numerics()},  # what cfg.identity() holds, and more
        "detectors": [detector_info(d, cfg, ctx.pool, ctx.out) for d in detectors],
        "plugins": plugin_versions(ctx.plugins),
        "backbones": ctx.pool.describe(),
        "perturbations": [p.name for p in perturbations],
        "operating_points": op.describe(),
        "counts": {"test": len(data.test), "train": len(data.train), "val": len(data.val), "skipped": n_skipped},
        "seed": cfg.seed,
        "timings_s": ctx.timings,
        "environment": environment(),
    })
    ctx.log(header + board)
    if (warning := coverage_warning(metrics)) is not None:
        ctx.log(f"warning: {warning}")
    ctx.log(f"{counts}{f' (unreadable: see {out / SKIPPED})' if n_skipped else ''}; results in {out}")
    return metrics


def operating_scores(ctx: RunContext, detectors: Sequence["Detector"]):
    """The finalised test scores and the run's operating points (thresholds and calibrations fitted on
    ``val_scores.csv``); with a calibration, both score files gain ``prob_calibrated``."""
    from ..results.operating import operating_points, parse_threshold
    from ..results.scores import finalize_scores, write_calibrated

    val_path = ctx.out / VAL_SCORES
    val = finalize_scores(val_path) if val_path.exists() else None
    op = operating_points(parse_threshold(ctx.cfg.threshold), ctx.cfg.calibrate, [d.name for d in detectors], val,
                          ctx.cfg.fpr_targets, ctx.cfg.ap_from)
    if val is not None:
        write_calibrated(val_path, val, op)
    return write_calibrated(ctx.out / "scores.csv", finalize_scores(ctx.out / "scores.csv"), op), op


def detector_info(det: "Detector", cfg: RunConfig, pool: SourcePool, out: Path | None = None) -> dict[str, Any]:
    from ..api.checkpoints import file_sha256
    from ..api.code import code_identity

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
        info["options_from_checkpoint"] = {k: v for k, v in det.options_from_checkpoint.items() if _plain(v)}
    fitted = checkpoint_path(out, det) if out is not None and getattr(det, "fitted_in_run", False) else None
    if fitted is not None and fitted.is_file():  # fitted by this run (or its interrupted start): from the first run
        info["checkpoint"] = {"path": str(fitted), "sha256": file_sha256(fitted, remember=False)}
    info["code"] = code_identity(det)  # the plugin's version and a hash of its module source
    if det.fit_summary is not None:
        info["fit"] = det.fit_summary
    if det.training is not None:
        info["training"] = det.training
    fitted = fitted_values(det)
    if fitted:
        info["fitted_values"] = fitted
    return info


def plugin_versions(plugins: "Plugins") -> list[dict[str, Any]]:
    """Every loaded plugin: name, where it came from, its version, and a hash of its file when it is one."""
    from ..api.code import file_digest

    out = []
    for p in plugins.loaded:
        digest = file_digest(p.origin) if p.source in ("builtin", "plugins dir") else None
        out.append({"name": p.name, "source": p.source, "version": p.version, "origin": p.origin,
                    "source_sha256": digest[:16] if digest else None})
    return out


def fitted_values(det: "Detector") -> dict[str, Any]:
    """What a fit chose besides tensors (``extra_metadata``: a k picked on validation, a threshold), for
    run.json; a long value (a per-epoch history, a vector) is named with its size (it is in the checkpoint)."""
    import json

    if not det.fitted or not det.needs_fit:
        return {}
    try:
        extra = det.extra_metadata() or {}
    except Exception:  # noqa: BLE001 - provenance must not fail a finished run
        return {}
    out: dict[str, Any] = {}
    for key, value in extra.items():
        text = json.dumps(value, default=str)
        out[key] = value if len(text) <= 500 else f"({len(text)} characters of JSON, in the checkpoint's metadata)"
    return out


def _plain(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, type(None), list, tuple))
