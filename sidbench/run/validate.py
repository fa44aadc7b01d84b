"""Stage 4 of a run, validation: every detector scored on the clean validation records (``val_scores.csv``),
and the operating points chosen there (``--threshold val``/``val-fpr:X``, ``--calibrate``) applied to the
finished test scores."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

from ..api.errors import SidbenchError
from .build import RunContext
from .config import RunConfig, RunData
from .scoring import assign, score_all

if TYPE_CHECKING:
    from ..api.detector import Detector

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
    from ..results.score_log import ScoreLog

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
