"""``sidbench score``: P(fake) per image for files and folders, no labels needed.

The same engine as ``sidbench run`` (sources, feature cache, the one scoring path, unreadable files skipped
and listed), without a results folder: the rows are kept in memory and returned as a DataFrame.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..api.errors import DataError, FitRequiredError
from ..api.records import UNKNOWN, Record
from .config import RunConfig, RunData, config_from, pick_device

if TYPE_CHECKING:
    import pandas as pd

    from ..registry.plugins import Plugins

SPLIT = "images"  # the one split of scored images (they carry no labels)
COLUMNS = ("path", "detector", "logit", "prob", "protocol", "skipped")


def image_records(paths: Sequence[str | Path]) -> list[Record]:
    """One record per file given, and per file below each folder given (the metadata files that data sets
    ship beside their images, such as .txt or .csv, are left out); in the order given, each file once."""
    from ..data.layout import files_in

    seen: dict[str, Record] = {}
    for p in paths:
        path = Path(p).expanduser()
        if not path.exists():
            raise DataError(f"{p}: no such file or folder")
        files = files_in(path, drop_metadata=True) if path.is_dir() else [path]
        if path.is_dir() and not files:
            raise DataError(f"{p}: the folder holds no files to score")
        for f in files:
            seen.setdefault(str(f), Record(str(f), UNKNOWN, SPLIT))
    if not seen:
        raise DataError("give at least one image file or folder to score")
    return list(seen.values())


def score_images(cfg: RunConfig, records: Sequence[Record], plugins: "Plugins",
                 log: Callable[[str], None] = lambda message: None) -> "pd.DataFrame":
    """P(fake) of every record for every detector of ``cfg``: one row per image x detector (``COLUMNS``, in
    record order); an unreadable image gets NaN scores and the reason in ``skipped``."""
    import pandas as pd

    from ..data.perturb import NONE
    from ..engine.inputs import ExtractOptions
    from ..engine.workers import WorkerPool
    from ..engine.scoring import ScoreContext
    from ..results.score_log import ScoreRows
    from .build import SourcePool, build_detectors, feature_cache
    from .scoring import assign, score_all

    detectors = build_detectors(cfg, plugins)
    for det in detectors:
        if not det.fitted:
            raise FitRequiredError(
                f"detector {det.name!r} must be fitted to score images: attach a checkpoint, {det.name}@CHECKPOINT, "
                f"or its published one, {det.name}@official where `sidbench weights list` has it; "
                f"or fit it with `sidbench train {det.name}`")
    cache = None if cfg.no_cache else feature_cache()
    with WorkerPool() as workers:  # one set of loader processes for every detector group's pass
        opts = ExtractOptions(cfg.batch_size, cfg.workers, cfg.progress, cache=cache, pool=workers,
                              decode=cfg.decode_mode())
        pool = SourcePool(cfg, pick_device(cfg.device), plugins, cache)
        score = ScoreContext(ScoreRows(), opts)
        score_all(score, pool, detectors, assign(detectors, RunData(test=list(records)), cfg), [NONE], {})
    rows = score.scores.frame()[["path", "detector", "logit", "prob", "protocol"]].assign(skipped="")
    lost = [{"path": r.path, "detector": d.name, "logit": float("nan"), "prob": float("nan"), "protocol": d.preprocess,
             "skipped": score.skipped[r.path][0]} for r in records if r.path in score.skipped for d in detectors]
    out = pd.concat([rows, pd.DataFrame(lost, columns=COLUMNS)], ignore_index=True) if lost else rows
    order = {r.path: i for i, r in enumerate(records)}
    rank = {d.name: i for i, d in enumerate(detectors)}
    out = out.sort_values(["path", "detector"], key=lambda c: c.map(order if c.name == "path" else rank), kind="stable")
    log(f"{len(records) - len(score.skipped)} images scored, {len(score.skipped)} skipped")
    return out.reset_index(drop=True)[list(COLUMNS)]


def score(paths: str | Path | Sequence[str | Path], detectors: str | Sequence[str], *,
          plugins: "Plugins | None" = None, **settings: Any) -> "pd.DataFrame":
    """P(fake) per image, from Python: ``sidbench.score(["a.png", "folder/"], detectors=["univfd@fc_weights.pth"])``.

    ``settings`` are run settings (``backbone``, ``weights``, ``device``, ``batch_size``, ``protocol``,
    ``precision``, ``no_cache``, ...). Returns one row per image x detector: path, detector, logit,
    prob (= P(fake)), protocol, skipped (why an unreadable image has no score, else "").
    """
    from ..registry.plugins import default_plugins

    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    names = [detectors] if isinstance(detectors, str) else list(detectors)
    cfg = config_from({"progress": False, **settings, "detectors": ",".join(names)})
    return score_images(cfg, image_records(paths), plugins or default_plugins())
