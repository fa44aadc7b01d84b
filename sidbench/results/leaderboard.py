"""Leaderboard tables (detectors x splits, group means, overall) and their Markdown form, as written
into ``leaderboard.md`` and printed at the end of a run (``sidbench report`` adds LaTeX, CSV and HTML).

A :class:`Leaderboard` holds fractions; renderers show percentages with one decimal, the best
value per column in bold, ``†`` where the split's generator was in the detector's training data,
and ``[lo, hi]`` bootstrap intervals when given.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

if TYPE_CHECKING:
    import pandas as pd

METRIC_NAMES = {"acc": "Accuracy", "real_acc": "Real accuracy", "fake_acc": "Fake accuracy",
                "ap": "Average precision", "auc": "ROC-AUC", "f1": "F1"}
DAGGER = "†"


@dataclass
class Leaderboard:
    """One metric at one perturbation: ``values`` [detectors x columns] in [0, 1]; ``lo``/``hi``
    bootstrap bounds and ``seen`` (split generator in training data) of the same shape, or None."""

    metric: str
    perturbation: str
    values: "pd.DataFrame"
    lo: "pd.DataFrame | None" = None
    hi: "pd.DataFrame | None" = None
    seen: "pd.DataFrame | None" = None

    @property
    def title(self) -> str:
        return f"{METRIC_NAMES.get(self.metric, self.metric)} (%), perturbation {self.perturbation}"

    def best(self) -> "pd.DataFrame":
        """True where a cell shows the column's best value (ties at the shown precision all count);
        nothing is marked when there is only one detector."""
        shown = (self.values * 100).round(1)
        return shown.eq(shown.max(axis=0), axis=1) & shown.notna() & (len(shown) > 1)


def perturbation_order(names: Iterable[str]) -> list[str]:
    """``none`` first, then by family and numeric value (jpeg40 < jpeg65 < jpeg90 < jpeg100)."""
    def key(name: str):
        family, value = parse_perturbation(name)
        return (name != "none", family, value if value is not None else math.inf, name)

    return sorted(dict.fromkeys(names), key=key)


def parse_perturbation(name: str) -> tuple[str, float | None]:
    """``jpeg40`` -> ("jpeg", 40.0), ``resize0.5`` -> ("resize", 0.5), ``none`` -> ("none", None);
    a chain like ``blur1+jpeg75`` is its own family with no value."""
    m = re.fullmatch(r"([A-Za-z_]+)(-?\d+(?:\.\d+)?(?:e-?\d+)?)", name)
    return (m.group(1), float(m.group(2))) if m else (name, None)


GROUP_ORDER = ("gan", "deepfake", "low_level", "perceptual", "diffusion", "synthbuster")


def split_columns(metrics: "pd.DataFrame") -> list[str]:
    """Splits grouped (GAN, deepfake, low-level, perceptual, diffusion, Synthbuster, then others A-Z)
    in table order within a group, then the ``mean:<group>`` columns in the same order, ``mean:all`` last."""
    groups = dict(zip(metrics["split"], metrics["group"]))
    rank = {g: (GROUP_ORDER.index(g) if g in GROUP_ORDER else len(GROUP_ORDER), g) for g in groups.values()}
    splits = [s for s in dict.fromkeys(metrics["split"]) if not s.startswith("mean:")]
    splits.sort(key=lambda s: rank[groups[s]])
    means = [s for s in dict.fromkeys(metrics["split"]) if s.startswith("mean:") and s != "mean:all"]
    means.sort(key=lambda s: rank.get(s[5:], (len(GROUP_ORDER), s[5:])))
    return splits + means + (["mean:all"] if "mean:all" in groups else [])


def leaderboard(metrics: "pd.DataFrame", metric: str, perturbation: str = "none",
                intervals: "pd.DataFrame | None" = None,
                seen: Callable[[str, str], bool] | None = None) -> Leaderboard:
    """Detectors x splits for one metric, sorted by ``mean:all`` (best first)."""
    df = metrics[metrics["perturbation"] == perturbation]
    cols = split_columns(df)
    values = df.pivot_table(index="detector", columns="split", values=metric, aggfunc="first", dropna=False)
    values = values.reindex(columns=cols)
    if "mean:all" in values:
        values = values.sort_values("mean:all", ascending=False, kind="stable")
    values.columns.name = values.index.name = None
    board = Leaderboard(metric, perturbation, values)
    if intervals is not None and len(intervals):
        ci = intervals[(intervals["metric"] == metric) & (intervals["perturbation"] == perturbation)]
        for bound in ("lo", "hi"):
            t = ci.pivot_table(index="detector", columns="split", values=bound, aggfunc="first", dropna=False)
            setattr(board, bound, t.reindex(index=values.index, columns=cols))
    if seen is not None:
        import pandas as pd

        board.seen = pd.DataFrame([[seen(d, c) for c in cols] for d in values.index], index=values.index, columns=cols)
    return board


def board_cells(board: Leaderboard, bold: Callable[[str], str], dagger: str, interval: Callable[[float, float], str]):
    """The shown text of every cell, row by row."""
    best = board.best()
    for det in board.values.index:
        row = []
        for col in board.values.columns:
            v = board.values.at[det, col]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                row.append("-")
                continue
            text = f"{100 * v:.1f}"
            text = bold(text) if best.at[det, col] else text
            if board.seen is not None and board.seen.at[det, col]:
                text += dagger
            if board.lo is not None and not math.isnan(board.lo.at[det, col]):
                text += interval(100 * board.lo.at[det, col], 100 * board.hi.at[det, col])
            row.append(text)
        yield det, row


def to_markdown(boards: Sequence[Leaderboard]) -> str:
    """GitHub tables, one per leaderboard; names are escaped, so a split called ``a|b`` stays one cell."""
    from tabulate import tabulate

    from ..api.escape import markdown_escape

    parts = []
    for b in boards:
        rows = [[markdown_escape(det), *cells]
                for det, cells in board_cells(b, lambda t: f"**{t}**", DAGGER, lambda lo, hi: f" [{lo:.1f}, {hi:.1f}]")]
        headers = ["detector", *map(markdown_escape, b.values.columns)]  # names from folders: `|`, `\\`, `*` ...
        body = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
        parts.append(f"### {b.title.replace(b.perturbation, f'`{b.perturbation}`')}\n\n{body}\n")
    return "\n".join(parts)


def leaderboard_markdown(metrics: "pd.DataFrame", metrics_shown: Sequence[str] = ("acc", "ap"),
                         seen: Callable[[str, str], bool] | None = None) -> str:
    """Detectors x splits tables (in %), one per metric and perturbation, means last: the same
    tables as ``sidbench report --format md`` (best per column in bold)."""
    perts = perturbation_order(metrics["perturbation"])
    return to_markdown([leaderboard(metrics, m, p, seen=seen) for p in perts for m in metrics_shown])
