"""A benchmark run: fit what needs fitting, run each backbone once per batch for every detector,
stream scores to disk (resumable), then write metrics and the leaderboard."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .data.records import Record
from .errors import FitRequiredError, SidbenchError

if TYPE_CHECKING:
    import pandas as pd

    from .backbones.base import Backbone
    from .detector import Detector
    from .plugins import Plugins


@dataclass
class RunConfig:
    """Everything that defines a run (also readable from a TOML file with the same keys)."""

    data: list[str] = field(default_factory=list)
    dataset: str | None = None
    detectors: list[str] = field(default_factory=list)
    detector_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per name in `detectors`
    backbone: str | None = None
    weights: str | None = None
    perturb: str | None = None
    protocol: str | None = None
    device: str | None = None
    batch_size: int = 64
    workers: int | None = None
    out: str | None = None
    train: str | None = None
    val: str | None = None
    seed: int = 0
    progress: bool = True
    suite: str | None = None  # a named benchmark (sidbench.suites), e.g. "paper"
    no_cache: bool = False  # do not read or write the feature cache
    compile: bool = False  # torch.compile the backbone (GPU runs)

    def __post_init__(self) -> None:
        """Values of the wrong kind fail here with one line (TOML files are not type-checked)."""
        for name, low in (("batch_size", 1), ("seed", None), ("workers", 0)):
            v = getattr(self, name)
            if v is None and name == "workers":
                continue
            if not isinstance(v, int) or isinstance(v, bool) or (low is not None and v < low):
                need = f"an integer >= {low}" if low is not None else "an integer"
                raise SidbenchError(f"{name.replace('_', '-')} must be {need}, got {v!r}")
        for name in ("data", "detectors"):
            v = getattr(self, name)
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise SidbenchError(f"{name} must be a list of strings, got {v!r}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type == "str | None" and v is not None and not isinstance(v, str):
                raise SidbenchError(f"{f.name} must be a string, got {v!r}")
        if not isinstance(self.detector_options, dict):
            raise SidbenchError(f"detector_options must be a table of tables, got {self.detector_options!r}")

    def identity(self) -> dict[str, Any]:
        """What fixes the results (not where they go, how fast or with which progress bars)."""
        skip = ("out", "progress", "workers", "device", "no_cache")
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]


@dataclass
class RunData:
    """Records to evaluate, and optionally to fit on."""

    test: list[Record]
    train: list[Record] = field(default_factory=list)
    val: list[Record] = field(default_factory=list)
    name: str = "run"
    # Which records each detector scores under which protocol and perturbations (a suite's
    # per-dataset rules, see sidbench.suites.ScorePlan); None: every record, every perturbation,
    # each detector's own protocol.
    plan: Any = None


def pick_device(device: str | None) -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError:
        raise SidbenchError(f"--device {device}: not a device; use cpu, cuda or cuda:N") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SidbenchError("--device cuda: no CUDA device is visible to PyTorch; use --device cpu")
    return device


def build_detectors(cfg: RunConfig, plugins: "Plugins") -> list["Detector"]:
    from .detector import load_detector

    if not cfg.detectors:
        raise SidbenchError("no detectors given: --detectors NAME[,NAME...] (see `sidbench list detectors`)")
    dets, seen = [], set()
    for name in cfg.detectors:
        det = load_detector(name, backbone=cfg.backbone, plugins=plugins,
                            **({"preprocess": cfg.protocol} if cfg.protocol else {}), **cfg.detector_options.get(name, {}))
        if det.name in seen:
            raise SidbenchError(f"detector {det.name!r} is listed twice in --detectors")
        seen.add(det.name)
        dets.append(det)
    return dets


class BackbonePool:
    """Loads each backbone once per run (several preprocessing groups may share it)."""

    def __init__(self, cfg: RunConfig, device: str, plugins: "Plugins"):
        self.cfg, self.device, self.plugins = cfg, device, plugins
        self._live: dict[str, "Backbone"] = {}

    def get(self, name: str) -> "Backbone":
        from .backbones.registry import build_backbone

        if name not in self._live:
            backbone = build_backbone(name, weights=self.cfg.weights, device=self.device, plugins=self.plugins)
            self._live[name] = backbone.compile() if self.cfg.compile else backbone
        return self._live[name]


def run(cfg: RunConfig, data: RunData, out: Path, plugins: "Plugins", log: Callable[[str], None] = print) -> "pd.DataFrame | None":
    """Run ``cfg`` on ``data`` into ``out`` and return the metrics table (None on torchrun ranks > 0)."""
    import torch

    from . import distributed
    from .data.perturb import parse_perturbations
    from .features import ExtractOptions

    t0 = time.time()
    torch.manual_seed(cfg.seed)
    dist = distributed.init(cfg.device)
    device = dist.device(pick_device(cfg.device))
    log = log if dist.is_main else (lambda message: None)  # one voice under torchrun
    out.mkdir(parents=True, exist_ok=True)
    claim_results_folder(out, cfg)  # every rank writes the same content atomically
    perturbations = parse_perturbations(cfg.perturb, plugins)
    detectors = build_detectors(cfg, plugins)
    pool = BackbonePool(cfg, device, plugins)
    opts = ExtractOptions(cfg.batch_size, cfg.workers, cfg.progress, cache=_feature_cache(cfg))
    timings: dict[str, float] = {}
    skipped: dict[str, tuple[str, str]] = {}
    scores = distributed.open_scores(out, dist)
    try:
        for (backbone_name, protocol), by_det in _assign(detectors, data, cfg).items():
            group = [d for d in detectors if d.name in by_det]
            backbone = pool.get(backbone_name)
            t = time.time()
            with dist.main_first():  # rank 0 fits and saves; the other ranks load its checkpoints
                _fit_group(group, backbone, data, out, cfg, opts, log)
            timings[f"fit {backbone_name} {protocol}"] = round(time.time() - t, 3)
            for det in group:
                det.to(device).eval()
                det.bind(backbone)
            for pert in perturbations:
                t = time.time()
                wanted = {n: [r for r in rs if data.plan is None or data.plan.wants(pert.name, r)] for n, rs in by_det.items()}
                _score_group(group, backbone, protocol, pert, wanted, scores, skipped, opts, (dist.rank, dist.world))
                timings[f"score {backbone_name} {protocol} {pert.name}"] = round(time.time() - t, 3)
    finally:
        scores.close()
    if opts.cache is not None:
        log(f"feature cache: {opts.cache.hits} image(s) served, {opts.cache.stored} feature(s) stored ({opts.cache.root})")
    for other in dist.gather(skipped)[1:]:  # every rank has finished scoring after this
        skipped.update(other)
    if not dist.is_main:
        dist.close()
        return None
    distributed.merge_scores(out)
    timings["total"] = round(time.time() - t0, 3)
    try:
        return _finish(out, cfg, data, detectors, pool, perturbations, skipped, timings, log)
    finally:
        dist.close()


def _feature_cache(cfg: RunConfig):
    from .cache import FeatureCache

    return None if cfg.no_cache else FeatureCache()


def claim_results_folder(out: Path, cfg: RunConfig) -> None:
    """Resume only the run that started in ``out``: another configuration there would mix two runs' scores."""
    from .paths import write_atomic

    marker, now = out / "config.json", json.loads(json.dumps(cfg.identity()))
    if marker.exists():
        try:
            before = json.loads(marker.read_text())
        except ValueError:
            before = None
        if before != now:
            changed = sorted(k for k in now if not isinstance(before, dict) or before.get(k) != now[k])
            raise SidbenchError(
                f"{out} holds a run with another configuration (differs in: {', '.join(changed) or 'format'}); "
                "add --overwrite to start over there, or choose another --out"
            )
        return
    write_atomic(marker, json.dumps(now, indent=2, sort_keys=True) + "\n")


def _assign(detectors: Sequence["Detector"], data: RunData, cfg: RunConfig) -> dict[tuple[str, str], dict[str, list[Record]]]:
    """(backbone, protocol) -> detector name -> its records: detectors sharing backbone and
    preprocessing share one backbone pass per batch; a plan may give some records another protocol."""
    groups: dict[tuple[str, str], dict[str, list[Record]]] = {}
    for det in detectors:
        backbone = cfg.backbone or det.spec.backbone
        for r in data.test:
            protocol = (data.plan.protocol(det, r) if data.plan is not None and not cfg.protocol else None) or det.preprocess
            groups.setdefault((backbone, protocol), {}).setdefault(det.name, []).append(r)
    return groups


def _fit_group(group, backbone, data: RunData, out: Path, cfg: RunConfig, opts, log) -> None:
    from .training import FitData, fit_detector

    fit_data = None
    for det in group:
        if det.fitted:
            continue
        ckpt = out / "checkpoints" / f"{det.name}.safetensors"
        if ckpt.exists():  # fitted by an earlier, interrupted run of the same command
            det.load(str(ckpt))
            det.fitted_on = _generators(data.train)
            log(f"{det.name}: loaded the checkpoint fitted by the earlier run ({ckpt})")
            continue
        if not data.train:
            raise FitRequiredError(
                f"detector {det.name!r} must be fitted: give --train PATH (and --val PATH), "
                f"or a checkpoint with --detectors {det.name}@CHECKPOINT"
            )
        if fit_data is None:
            fit_data = FitData(backbone, data.train, data.val, protocol=det.preprocess, seed=cfg.seed, options=opts)
        fit_data.protocol = det.preprocess
        summary, seconds = fit_detector(det, fit_data, cfg.seed, log=lambda m, d=det: log(f"{d.name}: {m}"))
        det.fitted_on = _generators(data.train)
        det.save(str(ckpt))
        log(f"{det.name}: fitted in {seconds:.1f}s {summary or ''}".rstrip())


def _generators(records: Sequence[Record]) -> list[str]:
    """The generators a detector fitted on these records saw (recorded as its training data)."""
    return sorted({r.generator for r in records if r.label == 1 and r.generator})


def _score_group(group, backbone, protocol, pert, records_by_det, scores, skipped, opts, shard=(0, 1)) -> None:
    """Score each detector's unfinished records in fixed chunks of ``batch_size`` images (rank r of w
    takes chunks r, r+w, ...). An image listed in several splits (Synthbuster's shared reals) passes the
    backbone once and gets one row per split.

    A chunk's rows are written in one flush and its loaded images always reach the detector heads
    together, in order: small matmuls round differently by row position, so a resumed or distributed
    run must give each head exactly the batches of an uninterrupted single run.
    """
    from .features import iter_features

    wanted = {d.name: {(r.split, r.path) for r in records_by_det.get(d.name, ())} for d in group}
    by_path: dict[str, list[Record]] = {}
    for recs in records_by_det.values():
        for r in recs:
            if r not in by_path.setdefault(r.path, []):
                by_path[r.path].append(r)
    # The image's first split (by name) seeds its perturbation, whatever is left to do.
    images = [min(rs, key=lambda r: r.split) for rs in by_path.values()]
    size = opts.batch_size
    chunks = [images[k:k + size] for k in range(0, len(images), size)][shard[0]::shard[1]]

    def pending(chunk: list[Record]) -> bool:
        return any((d.name, pert.name, r.split, r.path) not in scores.done
                   for img in chunk for r in by_path[img.path] for d in group if (r.split, r.path) in wanted[d.name])

    todo_chunks = [c for c in chunks if pending(c)]
    todo = [r for c in todo_chunks for r in c]
    if not todo:
        return
    names = sorted({f for d in group for f in d.required_features})
    opts = dataclasses.replace(opts, desc=f"{'+'.join(d.name for d in group)} [{pert.name}]")
    arrived: dict[int, dict | None] = {}  # index into todo -> its features (None: skipped)
    starts = [0]
    for c in todo_chunks:
        starts.append(starts[-1] + len(c))
    spans = [range(a, b) for a, b in zip(starts, starts[1:])]
    next_chunk = 0
    for index, feats, skip in iter_features(backbone, todo, names, protocol=protocol, perturbation=pert, options=opts):
        for i, reason in skip:
            skipped.setdefault(todo[i].path, (reason, todo[i].split))
            arrived[i] = None
        for j, i in enumerate(index):
            arrived[i] = {k: v[j] for k, v in feats.items()}
        while next_chunk < len(spans) and all(i in arrived for i in spans[next_chunk]):
            items = [(todo[i], arrived.pop(i)) for i in spans[next_chunk]]
            _score_chunk(group, protocol, pert, items, by_path, wanted, scores, size)
            next_chunk += 1


def _score_chunk(group, protocol, pert, items, by_path, wanted, scores, size: int) -> None:
    """Score one chunk's loaded images with every detector and write their pending rows at once."""
    import torch

    from .data.preprocess import n_views

    loaded = [(r, f) for r, f in items if f is not None]
    if not loaded:
        return
    feats = {k: torch.stack([f[k] for _, f in loaded]) for k in loaded[0][1]}
    rows = []
    with torch.inference_mode():
        for det in group:
            logits = _score(det, feats, n_views(protocol), size).cpu().tolist()
            for (img, _), logit in zip(loaded, logits):
                for r in by_path[img.path]:
                    if (r.split, r.path) in wanted[det.name] and (det.name, pert.name, r.split, r.path) not in scores.done:
                        rows.append((det.name, r.split, r.group, r.generator, pert.name, protocol, r.path, r.label,
                                     repr(float(logit)), repr(_sigmoid(logit))))
    scores.write(rows)


def _score(det: "Detector", feats: dict, views: int, pad_to: int = 0) -> "Any":
    """Logits [b]; multi-crop features [b, n, ...] are scored per crop and the n logits averaged.

    Features are zero-padded to ``pad_to`` images, so the head, like the backbone, always sees the
    same batch size: matmul kernels (CPU BLAS, cuBLAS) pick their reduction order by shape, and a
    resumed run must not score an image in a batch of another size than the uninterrupted run did.
    """
    import torch

    needed = {k: feats[k].to(det.device) for k in det.required_features}
    b = next(iter(needed.values())).shape[0]
    if pad_to > b:
        needed = {k: torch.cat([v, v.new_zeros((pad_to - b, *v.shape[1:]))]) for k, v in needed.items()}
    if views > 1:
        flat = {k: v.flatten(0, 1) for k, v in needed.items()}
        return det.score(flat).float().view(-1, views).mean(1)[:b]
    return det.score(needed).float()[:b]


def _sigmoid(x: float) -> float:
    import math

    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _finish(out, cfg, data, detectors, pool, perturbations, skipped, timings, log) -> "pd.DataFrame":
    from .metrics import metrics_table
    from .paths import write_atomic
    from .results import (environment, finalize_scores, leaderboard_markdown, write_run_json,
                          write_skipped)

    scores = finalize_scores(out / "scores.csv")
    write_skipped(out / "skipped.csv", skipped)
    metrics = metrics_table(scores)
    write_atomic(out / "metrics.csv", metrics.to_csv(index=False))
    board = leaderboard_markdown(metrics)
    n_skipped = sum(1 for _ in open(out / "skipped.csv")) - 1
    header = (f"# sidbench leaderboard: {data.name}\n\n{len(data.test)} images, {n_skipped} skipped "
              f"(see skipped.csv); threshold 0.5 on P(fake); means are unweighted over splits.\n\n")
    write_atomic(out / "leaderboard.md", header + board)
    write_run_json(out / "run.json", {
        "name": data.name,
        "config": dataclasses.asdict(cfg),
        "detectors": [_detector_info(d, cfg) for d in detectors],
        "backbones": {n: {"identity": b.identity, **dataclasses.asdict(b.info)} for n, b in pool._live.items()},
        "perturbations": [p.name for p in perturbations],
        "counts": {"test": len(data.test), "train": len(data.train), "val": len(data.val), "skipped": n_skipped},
        "seed": cfg.seed,
        "timings_s": timings,
        "environment": environment(),
    })
    if n_skipped:
        log(f"skipped {n_skipped} unreadable file(s): see {out / 'skipped.csv'}")
    log(board)
    log(f"results in {out}")
    return metrics


def _detector_info(det: "Detector", cfg: RunConfig) -> dict[str, Any]:
    from .checkpoints import file_sha256

    s = det.spec
    info = {"name": s.name, "origin": s.origin, "backbone": cfg.backbone or s.backbone, "features": list(det.required_features),
            "preprocess": det.preprocess, "options": {k: v for k, v in det.options.items() if _plain(v)},
            "training_data": list(getattr(det, "fitted_on", None) or s.training_data),
            "published_training_data": list(s.training_data), "paper": s.paper, "license": s.license}
    if det.weights_path:
        info["weights"] = {"path": det.weights_path, "sha256": file_sha256(Path(det.weights_path))}
    return info


def _plain(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, type(None), list, tuple))
