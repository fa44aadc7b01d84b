"""Stage 1 of a run, building: the detectors (each from the seeded random state), the sources they read (each
backbone once, one per pixel detector), the feature caches, the results folder and the context the later
stages share; with the checks that refuse a run before anything is written."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..api.errors import SidbenchError
from .config import RunConfig, RunData

if TYPE_CHECKING:
    import tempfile

    from ..api.detector import Detector
    from ..engine.cache import FeatureCache
    from ..engine.inputs import ExtractOptions
    from ..engine.sources import BackboneSource, Source
    from ..registry.plugins import Plugins
    from ..results.folder import ResultsFolder
    from .distributed import Dist
    from .resume import RowCheck

Log = Callable[[str], None]


def load_seeded(name: str, seed: int, plugins: "Plugins", backbone: str | None = None, **options: Any) -> "Detector":
    """Detector ``name`` built from the random state of ``seed`` (as ``sidbench train`` builds one, so a network
    initialised in ``__init__`` is the same in a run, a study and a training, whatever else was built before)."""
    from ..engine.fitting import torch_seed
    from ..registry.lookup import load_detector

    torch_seed(seed)
    return load_detector(name, backbone=backbone, plugins=plugins, **options)


def build_detectors(cfg: RunConfig, plugins: "Plugins") -> list["Detector"]:
    """The run's detectors, each built from the seeded random state (:func:`load_seeded`)."""
    from .config import check_detector_options, options_for

    if not cfg.detectors:
        raise SidbenchError("no detectors given: --detectors NAME[,NAME...] (see `sidbench list detectors`)")
    check_detector_options(cfg, plugins)
    dets, seen = [], set()
    for name in cfg.detectors:
        options = {**options_for(cfg, name, plugins), **({"preprocess": cfg.protocol} if cfg.protocol else {})}
        det = load_seeded(name, cfg.seed, plugins, cfg.backbone, **options)
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
    """What the stages of one run share."""

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
