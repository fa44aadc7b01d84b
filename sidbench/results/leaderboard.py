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
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

if TYPE_CHECKING:
    import pandas as pd

from .metrics import LOWER_IS_BETTER, THRESHOLDED, tpr_target

METRIC_NAMES = {"acc": "Accuracy", "real_acc": "Real accuracy", "fake_acc": "Fake accuracy",
                "ap": "Average precision", "auc": "ROC-AUC", "f1": "F1", "bal_acc": "Balanced accuracy",
                "eer": "Equal error rate", "fpr": "False-positive rate (reals called fake)",
                "ece": "Expected calibration error", "brier": "Brier score", "nll": "Negative log-likelihood"}
PLAIN = frozenset({"brier", "nll"})  # shown as numbers (3 decimals); the others as percentages
DAGGER = "†"
ORACLE_NOTE = "ORACLE threshold, chosen on the test labels: a diagnostic, not a result"


def metric_label(metric: str) -> str:
    """``tpr_fpr01`` -> "TPR at 1% FPR"; known metrics by their name; others as they are."""
    target = tpr_target(metric)
    return f"TPR at {100 * target:g}% FPR" if target is not None else METRIC_NAMES.get(metric, metric)


def format_value(metric: str, value: float) -> str:
    return f"{value:.3f}" if metric in PLAIN else f"{100 * value:.1f}"


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
    oracle: bool = False  # accuracies at oracle thresholds (their own tables, labelled)
    comparable: bool = True  # False: the detectors' means cover different splits (not ranked, no best mean)
    note: str = ""  # one line under the title (merged reports: each row's threshold policy and calibration)
    significant: "pd.DataFrame | None" = None  # True: the column's best, better than every other beyond noise

    @property
    def title(self) -> str:
        unit = "" if self.metric in PLAIN else " (%)"
        note = f" ({ORACLE_NOTE})" if self.oracle else ""
        return f"{metric_label(self.metric)}{unit}, perturbation {self.perturbation}{note}"

    def best(self) -> "pd.DataFrame":
        """True where a cell shows the column's best value (the lowest for EER, ECE, Brier and NLL; ties at
        the shown precision all count); nothing is marked when there is only one detector, nor in mean
        columns that are not comparable."""
        shown = self.values.round(3) if self.metric in PLAIN else (self.values * 100).round(1)
        top = shown.min(axis=0) if self.metric in LOWER_IS_BETTER else shown.max(axis=0)
        best = shown.eq(top, axis=1) & shown.notna() & (len(shown) > 1)
        if not self.comparable:
            best.loc[:, [c for c in best.columns if str(c).startswith("mean:")]] = False
        return best


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


def is_oracle(metrics: "pd.DataFrame") -> "pd.Series":
    """Rows whose threshold was chosen on the test labels (``threshold_source`` oracle)."""
    if "threshold_source" not in metrics:
        return metrics["split"] != metrics["split"]
    return metrics["threshold_source"].astype(str) == "oracle"


def leaderboard(metrics: "pd.DataFrame", metric: str, perturbation: str = "none",
                intervals: "pd.DataFrame | None" = None,
                seen: Callable[[str, str], bool] | None = None, oracle: bool = False) -> Leaderboard:
    """Detectors x splits for one metric, sorted by ``mean:all`` (best first). A thresholded metric shows
    the rows at honest thresholds, or with ``oracle`` only those at oracle thresholds."""
    df = metrics[metrics["perturbation"] == perturbation]
    if metric in THRESHOLDED:
        df = df[is_oracle(df) == oracle]
    cols = split_columns(df)
    values = df.pivot_table(index="detector", columns="split", values=metric, aggfunc="first", dropna=False)
    values = values.reindex(columns=cols)
    comparable = not uneven_coverage(df)
    if "mean:all" in values and comparable:
        values = values.sort_values("mean:all", ascending=metric in LOWER_IS_BETTER, kind="stable")
    values.columns.name = values.index.name = None
    board = Leaderboard(metric, perturbation, values, oracle=oracle and metric in THRESHOLDED, comparable=comparable)
    if intervals is not None and len(intervals):
        ci = intervals[(intervals["metric"] == metric) & (intervals["perturbation"] == perturbation)]
        for bound in ("lo", "hi"):
            t = ci.pivot_table(index="detector", columns="split", values=bound, aggfunc="first", dropna=False)
            setattr(board, bound, t.reindex(index=values.index, columns=cols))
    if seen is not None:
        import pandas as pd

        board.seen = pd.DataFrame([[seen(d, c) for c in cols] for d in values.index], index=values.index, columns=cols)
    return board


def uneven_coverage(metrics: "pd.DataFrame") -> dict[str, int]:
    """Detector -> how many splits its ``mean:all`` covers, when that differs between detectors at some
    perturbation (their means then average different splits and must not be ranked together); else {}."""
    rows = metrics[~metrics["split"].astype(str).str.startswith("mean:")]
    for _, df in rows.groupby("perturbation", sort=True):
        cover = df.groupby("detector")["split"].agg(frozenset)
        if len(set(cover)) > 1:
            return {d: len(s) for d, s in cover.items()}
    return {}


def coverage_warning(metrics: "pd.DataFrame") -> str | None:
    """One line saying that the detectors' means cover different splits, or None when they agree."""
    counts = uneven_coverage(metrics)
    if not counts:
        return None
    shown = ", ".join(f"{d}: {n}" for d, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:6])
    return (f"the detectors' mean:all cover different splits ({shown}{' ...' if len(counts) > 6 else ''} splits), "
            "so their means are not ranked against each other; compare them split by split")


def split_names(pairs: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """Split -> the names a detector's declared training data may match: the split's name, its last path part
    and the generators of its fakes (lower case), from (split, generator) pairs (generator "" for reals)."""
    names: dict[str, set[str]] = {}
    for split, gen in pairs:
        if str(split).startswith("mean:"):
            continue
        entry = names.setdefault(split, {str(split).lower(), str(split).lower().rsplit("/", 1)[-1]})
        if gen:
            entry.add(str(gen).lower())
    return names


def seen_marker(training: Mapping[str, Iterable[str]], names: Mapping[str, set[str]]) -> Callable[[str, str], bool]:
    """``seen(detector, split)``: whether any name of ``split`` is in the detector's training data (the ``†``)."""
    lowered = {d: {str(g).lower() for g in gens} for d, gens in training.items()}
    return lambda det, split: bool(lowered.get(det, set()) & names.get(split, set()))


def board_cells(board: Leaderboard, bold: Callable[[str], str], dagger: str, interval: Callable[[str, str], str],
                significant: str = "*"):
    """The shown text of every cell, row by row (``significant`` follows a best value that beats every other
    detector in its column beyond noise)."""
    best = board.best()
    for det in board.values.index:
        row = []
        for col in board.values.columns:
            v = board.values.at[det, col]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                row.append("-")
                continue
            text = format_value(board.metric, v)
            text = bold(text) if best.at[det, col] else text
            if board.significant is not None and best.at[det, col] and board.significant.at[det, col]:
                text += significant
            if board.seen is not None and board.seen.at[det, col]:
                text += dagger
            if board.lo is not None and not math.isnan(board.lo.at[det, col]):
                text += interval(format_value(board.metric, board.lo.at[det, col]),
                                 format_value(board.metric, board.hi.at[det, col]))
            row.append(text)
        yield det, row


def to_markdown(boards: Sequence[Leaderboard]) -> str:
    """GitHub tables, one per leaderboard; names are escaped, so a split called ``a|b`` stays one cell."""
    from tabulate import tabulate

    from ..api.escape import markdown_escape

    parts = []
    for b in boards:
        rows = [[markdown_escape(det), *cells]
                for det, cells in board_cells(b, lambda t: f"**{t}**", DAGGER, lambda lo, hi: f" [{lo}, {hi}]", "\\*")]
        headers = ["detector", *map(markdown_escape, b.values.columns)]  # names from folders: `|`, `\\`, `*` ...
        body = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
        note = f"{markdown_escape(b.note)}\n\n" if b.note else ""
        parts.append(f"### {b.title.replace(b.perturbation, f'`{b.perturbation}`')}\n\n{note}{body}\n")
    return "\n".join(parts)


def leaderboards_of(metrics: "pd.DataFrame", metrics_shown: Sequence[str], intervals: "pd.DataFrame | None" = None,
                    seen: Callable[[str, str], bool] | None = None) -> list[Leaderboard]:
    """One leaderboard per perturbation (clean first) and metric, then the oracle-threshold tables of the
    thresholded metrics (when some rows have oracle thresholds); empty tables are left out."""
    perts = perturbation_order(metrics["perturbation"])
    boards = [leaderboard(metrics, m, p, intervals, seen) for p in perts for m in metrics_shown]
    if is_oracle(metrics).any():
        boards += [leaderboard(metrics, m, p, intervals, seen, oracle=True)
                   for p in perts for m in metrics_shown if m in THRESHOLDED]
    return [b for b in boards if len(b.values) and b.values.notna().to_numpy().any()]  # no table of dashes only


def leaderboard_markdown(metrics: "pd.DataFrame", metrics_shown: Sequence[str] = ("acc", "ap"),
                         seen: Callable[[str, str], bool] | None = None) -> str:
    """Detectors x splits tables (in %), one per metric and perturbation, means last, oracle-threshold
    tables last and labelled: the same tables as ``sidbench report --format md`` (best per column in bold)."""
    return to_markdown(leaderboards_of(metrics, metrics_shown, seen=seen))
