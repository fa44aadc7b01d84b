"""``sidbench train``: fit one detector on a training folder and save its checkpoint (the same
FitData and fit as ``sidbench run``, without the test data)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..api.errors import DataError
from ..api.log import note
from .config import RunConfig, pick_device

if TYPE_CHECKING:
    from ..api.detector import Detector
    from ..engine.inputs import ExtractOptions
    from ..registry.plugins import Plugins


def train_detector(cfg: RunConfig, name: str, out: str, plugins: "Plugins", options: dict[str, Any] | None = None,
                   classes: list[str] | None = None, log: Callable[[str], None] = note) -> str:
    """Fit ``name`` on ``cfg.train`` (validated on ``cfg.val``) and save it to ``out``; returns the path written."""
    from ..engine.cache import FeatureCache
    from ..engine.inputs import ExtractOptions
    from ..engine.workers import WorkerPool
    from .build import load_seeded
    from .inputs import fit_records

    # from the seeded random state, as `sidbench run` builds it: a network initialised in __init__ is the run's
    det = load_seeded(name, cfg.seed, plugins, cfg.backbone, **(options or {}))
    train, val = fit_records(cfg, plugins)
    if classes:
        keep = set(classes)
        train = [r for r in train if r.split in keep]
        val = [r for r in val if r.split in keep]
        if not train:
            raise DataError(f"--classes {','.join(classes)}: no training images in those class folders under {cfg.train}")
    device = pick_device(cfg.device)
    cache = None if cfg.no_cache else FeatureCache()
    with WorkerPool() as pool:  # one set of loader processes for every epoch
        opts = ExtractOptions(cfg.batch_size, cfg.workers, cfg.progress, cache=cache, pool=pool,
                              decode=cfg.decode_mode())
        return _train(cfg, det, train, val, opts, device, plugins, out, log)


def _train(cfg: RunConfig, det: "Detector", train: list, val: list, opts: "ExtractOptions", device: str,
           plugins: "Plugins", out: str, log: Callable[[str], None]) -> str:
    from ..engine.fitting import EngineFitData, fit_detector
    from ..engine.scoring import source_outputs
    from .build import SourcePool
    from .fit import note_training

    common = dict(protocol=det.preprocess, seed=cfg.seed, options=opts, device=device)
    if det.input == "pixels":
        data = EngineFitData(train, val, pixels=det.pixel_input, **common)
        where = "its own network"
    else:
        source = SourcePool(cfg, device, plugins, opts.cache).source(det)  # the backbone `sidbench run` reads
        data = EngineFitData(train, val, backbone=source, names=source_outputs(det), **common)
        where = source.identity
    log(f"training {det.name} on {len(train)} images ({len(val)} validation) with {where} on {device}")
    from ..api.fitting import EpochState
    from ..engine.fitting import fit_key

    # beside the checkpoint: the same command run again after an interruption resumes at the last epoch
    state = EpochState(f"{out}.epoch-state.pt", fit_key(det, train, cfg.seed, f"{cfg.digest()}|{len(val)}"))
    summary, seconds = fit_detector(det, data, cfg.seed, log=log, state=state)
    note_training(det, train, cfg.train)
    path = det.save(out)
    state.clear()
    log(f"done in {seconds:.1f}s {summary or ''}\ncheckpoint: {path}")
    return path
