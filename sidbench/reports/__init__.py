"""Reports from results folders: leaderboard tables with bootstrap intervals, figures, an offline HTML page.

The pieces are reusable: ``tables.leaderboard`` and its renderers, ``bootstrap.bootstrap_intervals``,
``plots.bar_plot`` / ``line_plot`` / ``curve_grid`` (DataFrame in, figure out).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..api.paths import write_atomic
from ..results.metrics import tpr_target
from .merge import Merged
from .runs import ReportError, load_runs

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("html", "md", "latex", "csv")
SUFFIX = {"md": "md", "latex": "tex", "csv": "csv"}


@dataclass
class ReportOptions:
    """What ``sidbench report`` makes: format, metrics shown, bootstrap resamples and seed."""

    format: str = "html"
    metrics: tuple[str, ...] = ("acc", "ap")
    bootstrap: int = 0
    seed: int = 0


def report_text(merged: Merged, opts: ReportOptions) -> str:
    """The leaderboards as Markdown, LaTeX or CSV."""
    from ..results.leaderboard import to_markdown
    from .tables import leaderboards, long_table, to_latex

    intervals, significance = _intervals(merged, opts)
    if opts.format == "csv":
        return spreadsheet_csv(long_table(merged, opts.metrics, intervals))
    boards = leaderboards(merged, opts.metrics, intervals, significance)
    return to_markdown(boards) if opts.format == "md" else to_latex(boards)


def spreadsheet_csv(df: "pd.DataFrame") -> str:
    """CSV for spreadsheets: a text cell starting with ``=``, ``+``, ``-``, ``@`` (a split folder named
    ``=HYPERLINK(...)``) gets a leading ``'``, so it is shown as text instead of run as a formula."""
    from ..api.escape import spreadsheet_safe

    df = df.copy()
    for col in df.columns:
        if df[col].dtype == object or str(df[col].dtype) in ("str", "string"):
            df[col] = [spreadsheet_safe(v) for v in df[col]]
    from ..results.scores import to_csv

    return to_csv(df)


def write_report(merged: Merged, out: Path, opts: ReportOptions) -> Path:
    """Write the report into ``out`` (``index.html`` and ``figures/``, or ``leaderboard.md|tex|csv``)."""
    out = Path(out)
    path = out / ("index.html" if opts.format == "html" else f"leaderboard.{SUFFIX[opts.format]}")
    claim_report_folder(out, path)
    if opts.format != "html":
        write_atomic(path, report_text(merged, opts))
        return path
    from .figures import report_figures
    from .html import write_html
    from .tables import leaderboards

    from .html import OPERATING

    extra = [c for c in merged.metrics.columns if c in OPERATING or tpr_target(c) is not None]
    intervals, significance = _intervals(merged, opts, extra)  # the operating-point table's metrics too
    figures = report_figures(merged, out, opts.metrics, intervals)
    return write_html(merged, leaderboards(merged, opts.metrics, intervals, significance), figures, out, opts.bootstrap,
                      intervals)


def claim_report_folder(out: Path, first: Path) -> None:
    """Write the report only where sidbench keeps its files, as ``sidbench run`` does: inside a results folder
    (``RESULTS_DIR/report``), or in ``out`` made one (its manifest lists what the report writes). A user's file
    in the way and any link in the folder are refused in one line, before anything is drawn."""
    import os

    from ..api.paths import RESULTS_MANIFEST, check_replace
    from ..results.manifest import mark

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"--out {out}: cannot create the report folder ({exc.strerror}); "
                          "choose a writable folder") from None
    if not any(os.path.lexists(folder / RESULTS_MANIFEST) for folder in (out, out.parent)):
        mark(out)
    check_replace(first)
    check_replace(out / "figures" / "x")  # a link at figures/ is refused now, not after the figures are drawn


def _intervals(merged: Merged, opts: ReportOptions, extra: Sequence[str] = ()):
    """(bootstrap intervals, (paired replicates, paired columns)) of the report's metrics; (None, None) without
    ``--bootstrap``."""
    if opts.bootstrap <= 0:
        return None, None
    from .bootstrap import intervals_of, replicates

    metrics = list(dict.fromkeys([*opts.metrics, *extra]))
    per_split = merged.metrics[~merged.metrics["split"].str.startswith("mean:")]
    reps, paired = replicates(merged.scores, opts.bootstrap, metrics, seed=opts.seed, thresholds=per_split)
    return intervals_of(reps, metrics), (reps, paired)


def check_metrics(names: Sequence[str], merged: Merged | None = None) -> tuple[str, ...]:
    """Validate metric names against the metrics table's columns (those of ``merged`` when given)."""
    from ..results.metrics import metric_columns, metric_names, tpr_target

    known = metric_names() if merged is None else tuple(metric_columns(merged.metrics))
    bad = [m for m in names if m not in known and (merged is not None or tpr_target(m) is None)]
    if bad or not names:
        where = " in these results" if merged is not None else ""
        raise ReportError(f"--metric: unknown metric(s) {', '.join(bad) or '(none)'}{where}; choose from {', '.join(known)}")
    return tuple(names)


__all__ = ["FORMATS", "Merged", "ReportError", "ReportOptions", "check_metrics", "load_runs", "report_text", "write_report"]
