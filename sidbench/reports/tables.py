"""Leaderboards of merged runs and their LaTeX, CSV and HTML forms (the table itself and its Markdown
form live in :mod:`sidbench.results.leaderboard`, shared with the run's ``leaderboard.md``)."""
from __future__ import annotations

import html
from typing import TYPE_CHECKING, Sequence

from ..results.leaderboard import DAGGER, Leaderboard, board_cells, leaderboards_of

if TYPE_CHECKING:
    import pandas as pd

    from .merge import Merged


def leaderboards(merged: "Merged", metrics: Sequence[str], intervals: "pd.DataFrame | None" = None,
                 significance: "tuple[dict, set] | None" = None) -> list[Leaderboard]:
    """One leaderboard per perturbation (clean first) and metric, then the labelled oracle-threshold tables;
    with ``significance`` (paired bootstrap replicates, :func:`~sidbench.reports.bootstrap.replicates`) the
    best value of a column is marked when it beats every other detector there beyond noise."""
    boards = leaderboards_of(merged.metrics, metrics, intervals, merged.seen_in_training)
    from ..results.metrics import one_class_note
    from .significance import MARK_NOTE, significance_marks

    one_class = one_class_note(merged.metrics)
    note = " ".join(filter(None, [merged.operating_note(), f"Note: {one_class}." if one_class else ""]))
    for b in boards:
        b.note = note
        if significance is not None and not b.oracle:
            b.significant = significance_marks(*significance, b.values, b.metric, b.perturbation)
            b.note = " ".join(filter(None, [b.note, MARK_NOTE + "."]))
    return boards


LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                 "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                 "|": r"\textbar{}", "<": r"\textless{}", ">": r"\textgreater{}"}


def latex_escape(text: str) -> str:
    """``text`` as literal LaTeX (one pass, so the braces an escape adds are not escaped again); control
    characters and undecodable bytes are shown as ``\\xNN``."""
    from ..api.escape import one_line

    return "".join(LATEX_SPECIAL.get(c, c) for c in one_line(text))


def to_latex(boards: Sequence[Leaderboard]) -> str:
    """booktabs tables (needs ``\\usepackage{booktabs}``), best per column in bold.

    Written directly: tabulate's latex_booktabs escapes the bold markup, and pandas' Styler
    needs jinja2, which sidbench does not depend on."""
    parts = []
    for b in boards:
        cols = list(b.values.columns)
        caption = b.title + (f". {b.note}" if b.note else "")
        lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(caption)}}}",
                 rf"\begin{{tabular}}{{l{'r' * len(cols)}}}", r"\toprule",
                 " & ".join(["Detector", *map(latex_escape, cols)]) + r" \\", r"\midrule"]
        for det, cells in board_cells(b, lambda t: rf"\textbf{{{t}}}", r"$^\dagger$",
                                 lambda lo, hi: rf" {{\scriptsize[{lo}, {hi}]}}", r"$^*$"):
            lines.append(" & ".join([latex_escape(det), *cells]) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
        parts.append("\n".join(lines))
    return "\n".join(parts)


def long_table(merged: "Merged", metrics: Sequence[str], intervals: "pd.DataFrame | None" = None) -> "pd.DataFrame":
    """Tidy rows (detector, split, group, perturbation[, threshold_source], metric, value[, lo, hi],
    seen_in_training, threshold_policy, calibration) for CSV."""
    keys = ["detector", "split", "group", "perturbation"] + (["threshold_source"] if "threshold_source" in merged.metrics else [])
    df = merged.metrics.melt(id_vars=keys, value_vars=list(metrics), var_name="metric", value_name="value")
    if intervals is not None and len(intervals):
        df = df.merge(intervals, on=["detector", "split", "perturbation", "metric"], how="left")
    df["seen_in_training"] = [merged.seen_in_training(d, s) for d, s in zip(df["detector"], df["split"])]
    df["threshold_policy"] = [merged.keys[d].threshold if d in merged.keys else "" for d in df["detector"]]
    df["calibration"] = [merged.keys[d].calibration if d in merged.keys else "" for d in df["detector"]]
    return df


def to_html(board: Leaderboard) -> str:
    """An HTML table (classes ``best``, ``seen``, ``ci`` and ``mean`` for styling)."""
    cols = list(board.values.columns)
    cls = ['' if not c.startswith("mean:") else ' class="mean"' for c in cols]
    head = "<th>detector</th>" + "".join(f"<th{k}>{html.escape(c)}</th>" for c, k in zip(cols, cls))
    rows = []
    for det, cells in board_cells(board, lambda t: f'<b class="best">{t}</b>', f'<sup class="seen" title="generator seen in training">{DAGGER}</sup>',
                             lambda lo, hi: f'<span class="ci">[{lo}, {hi}]</span>',
                             '<sup class="sig" title="better than every other detector here beyond noise (paired bootstrap, 95%)">*</sup>'):
        tds = "".join(f"<td{k}>{c}</td>" for c, k in zip(cells, cls))
        rows.append(f"<tr><th>{html.escape(det)}</th>{tds}</tr>")
    note = f'<br><span class="note">{html.escape(board.note)}</span>' if board.note else ""
    return (f'<table class="board"><caption>{html.escape(board.title)}{note}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
