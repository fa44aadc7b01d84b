"""``sidbench train``: fit one detector on a training folder and save its checkpoint (the same
FitData and fit as ``sidbench run``, without the test data)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..api.errors import DataError
from ..api.log import note
from .config import RunConfig, pick_device

if TYPE_CHECKING:
    from ..registry.plugins import Plugins


def train_detector(cfg: RunConfig, name: str, out: str, plugins: "Plugins", options: dict[str, Any] | None = None,
                   classes: list[str] | None = None, log: Callable[[str], None] = note) -> str:
    """Fit ``name`` on ``cfg.train`` (validated on ``cfg.val``) and save it to ``out``; returns the path written."""
    from ..engine.cache import FeatureCache
    from ..engine.fitting import EngineFitData, fit_detector, torch_seed
    from ..engine.inputs import ExtractOptions
    from ..engine.scoring import source_outputs
    from ..engine.sources import BackboneSource
    from ..registry.lookup import load_detector
    from .inputs import fit_records
    from .orchestrate import feature_backbone, note_training

    torch_seed(cfg.seed)  # before the detector is built: a network initialised in __init__ is the run's
    det = load_detector(name, backbone=cfg.backbone, plugins=plugins, **(options or {}))
    train, val = fit_records(cfg, plugins)
    if classes:
        keep = set(classes)
        train = [r for r in train if r.split in keep]
        val = [r for r in val if r.split in keep]
        if not train:
            raise DataError(f"--classes {','.join(classes)}: no training images in those class folders under {cfg.train}")
    device = pick_device(cfg.device)
    cache = None if cfg.no_cache else FeatureCache()
    opts = ExtractOptions(cfg.batch_size, cfg.workers, cfg.progress, cache=cache)
    common = dict(protocol=det.preprocess, seed=cfg.seed, options=opts, device=device)
    if det.input == "pixels":
        data = EngineFitData(train, val, pixels=det.pixel_input, **common)
        where = "its own network"
    else:
        source = BackboneSource(feature_backbone(det, cfg.backbone), plugins, weights=cfg.weights, device=device,
                                precision=cfg.precision, compile=cfg.compile, cache=cache)
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
