"""Stage 5 of a run, finishing: from the finished scores and the operating points, ``metrics.csv``,
``skipped.csv``, ``leaderboard.md`` and ``run.json`` (through :mod:`sidbench.run.record`)."""
from __future__ import annotations

import logging

from typing import TYPE_CHECKING, Any, Sequence

from .build import RunContext
from .record import detector_info, write_run_record
from .validate import operating_scores

if TYPE_CHECKING:
    import pandas as pd

    from ..api.detector import Detector

SKIPPED = "skipped.csv"


def finish(ctx: RunContext, detectors: Sequence["Detector"], perturbations: Sequence[Any],
           skipped: dict[str, tuple[str, str]]) -> "pd.DataFrame":
    """metrics.csv, skipped.csv, leaderboard.md and run.json from the finished scores."""
    from ..api.paths import write_atomic
    from ..results.folder import write_skipped
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
    write_run_record(out, cfg, data.name, [detector_info(d, cfg, ctx.pool, out) for d in detectors],
                     plugins=ctx.plugins, backbones=ctx.pool.describe(),
                     perturbations=[p.name for p in perturbations], operating_points=op.describe(),
                     counts={"test": len(data.test), "train": len(data.train), "val": len(data.val),
                             "skipped": n_skipped},
                     timings=ctx.timings)
    if (warning := coverage_warning(metrics)) is not None:  # the leaderboard itself is the caller's to show
        logging.getLogger("sidbench").warning("%s", warning)
    ctx.log(f"{counts}{f' (unreadable: see {out / SKIPPED})' if n_skipped else ''}; results in {out}")
    return metrics
