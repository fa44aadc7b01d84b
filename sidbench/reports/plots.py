"""Reusable matplotlib figures from tidy DataFrames (Agg canvas, no pyplot, so no global state).

Every function takes a DataFrame and column names, draws into ``ax`` when given (to compose
panels) or into a new figure, and returns the figure; :func:`save_figure` writes a PNG. Values in
[0, 1] are shown as percentages when ``percent`` is set.
"""
from __future__ import annotations

import textwrap

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..api.paths import check_replace, write_atomic_bytes

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 110


def new_figure(width: float = 7.5, height: float = 4.0, nrows: int = 1, ncols: int = 1, **kw: Any):
    """A figure on the Agg canvas and its axes (a flat array when there are several)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw).ravel()
    return fig, (axes[0] if len(axes) == 1 else axes)


def palette(names: Sequence[str]) -> dict[str, Any]:
    """A stable colour per name (tab10, then tab20 for more than ten)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _order(df: "pd.DataFrame", col: str | None, order: Sequence | None) -> list:
    if col is None:
        return [None]
    return list(order) if order is not None else list(dict.fromkeys(df[col]))


def _finish_axes(ax: "Axes", title: str | None, xlabel: str | None, ylabel: str | None, percent: bool,
                 legend_title: str | None, n_series: int) -> None:
    from matplotlib.ticker import PercentFormatter

    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.set_title(title or "")
    ax.set_xlabel(xlabel or "")
    ax.set_ylabel(ylabel or "")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if n_series > 1:
        ax.legend(title=legend_title, fontsize="small", title_fontsize="small", frameon=False,
                  loc="upper left", bbox_to_anchor=(1.0, 1.0))


def bar_plot(df: "pd.DataFrame", x: str, y: str, hue: str | None = None, *, lo: str | None = None,
             hi: str | None = None, title: str | None = None, xlabel: str | None = None,
             ylabel: str | None = None, percent: bool = True, order: Sequence | None = None,
             hue_order: Sequence | None = None, colors: dict | None = None, ylim: tuple | None = (0, 1),
             ax: "Axes | None" = None) -> "Figure":
    """Grouped bars: one group per ``x`` value, one bar per ``hue`` value; ``lo``/``hi`` columns draw intervals."""
    xs, hues = _order(df, x, order), _order(df, hue, hue_order)
    if ax is None:
        long_names = max((len(str(v)) for v in xs), default=0) > 10
        _, ax = new_figure(max(5.0, 1.6 + 0.22 * len(xs) * len(hues) + (0.9 if long_names else 0.35) * len(xs)), 4.0)
    colors = colors or palette([h for h in hues if h is not None])
    width = 0.8 / len(hues)
    for i, h in enumerate(hues):
        sub = df if h is None else df[df[hue] == h]
        sub = sub.set_index(x).reindex(xs)
        pos = np.arange(len(xs)) + (i - (len(hues) - 1) / 2) * width
        err = None
        if lo and hi:
            err = np.vstack([sub[y] - sub[lo], sub[hi] - sub[y]]).clip(min=0)
        ax.bar(pos, sub[y].to_numpy(dtype=float), width, yerr=err, capsize=2, label=str(h),
               color=colors.get(h) if h is not None else None, error_kw={"elinewidth": 0.8})
    many = len(xs) > 6
    labels = [str(v) if many else textwrap.fill(str(v), 14) for v in xs]  # long names wrap instead of overlapping
    ax.set_xticks(np.arange(len(xs)), labels, rotation=30 if many else 0, ha="right" if many else "center")
    if ylim:
        ax.set_ylim(*ylim)
    _finish_axes(ax, title, xlabel if xlabel is not None else x, ylabel if ylabel is not None else y,
                 percent, hue, len(hues))
    return ax.figure


def line_plot(df: "pd.DataFrame", x: str, y: str, hue: str | None = None, *, title: str | None = None,
              xlabel: str | None = None, ylabel: str | None = None, percent: bool = True,
              order: Sequence | None = None, hue_order: Sequence | None = None, colors: dict | None = None,
              ylim: tuple | None = (0, 1), ax: "Axes | None" = None) -> "Figure":
    """One line per ``hue`` value over ``x``; ``order`` makes ``x`` categorical in that order."""
    hues = _order(df, hue, hue_order)
    if ax is None:
        _, ax = new_figure(6.5, 4.0)
    colors = colors or palette([h for h in hues if h is not None])
    categorical = order is not None or not np.issubdtype(df[x].dtype, np.number)
    xs = _order(df, x, order)
    for h in hues:
        sub = df if h is None else df[df[hue] == h]
        if categorical:
            sub = sub.set_index(x).reindex(xs)
            pos = np.arange(len(xs))
        else:
            sub = sub.sort_values(x)
            pos = sub[x].to_numpy()
        ax.plot(pos, sub[y].to_numpy(dtype=float), marker="o", label=str(h),
                color=colors.get(h) if h is not None else None)
    if categorical:
        ax.set_xticks(np.arange(len(xs)), [str(v) for v in xs])
    if ylim:
        ax.set_ylim(*ylim)
    _finish_axes(ax, title, xlabel if xlabel is not None else x, ylabel if ylabel is not None else y,
                 percent, hue, len(hues))
    return ax.figure


def _panels(n: int, ncols: int, width: float, height: float, extra_width: float):
    """A grid of ``n`` panels sharing both axes (at most ``ncols`` per row) and its flat axes."""
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = new_figure(width * ncols + extra_width, height * nrows + 0.6, nrows, ncols, sharex=True, sharey=True)
    return fig, np.atleast_1d(axes)


def _unit_square(ax: "Axes", title: str) -> None:
    """A panel of rates: both axes 0..100%, a light grid."""
    from matplotlib.ticker import PercentFormatter

    ax.set_title(title, fontsize="medium")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.grid(alpha=0.3)


def _finish_panels(fig: "Figure", axes, n: int, xlabel: str, ylabel: str, title: str | None) -> None:
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.supxlabel(xlabel)
    fig.supylabel(ylabel)
    if title:
        fig.suptitle(title)


def curve_grid(df: "pd.DataFrame", panel: str, hue: str, kind: str, *, ncols: int = 4,
               order: Sequence | None = None, hue_order: Sequence | None = None, colors: dict | None = None, title: str | None = None) -> "Figure":
    """ROC (``kind="roc"``: columns fpr, tpr) or precision-recall (``"pr"``: recall, precision)
    curves, one small panel per ``panel`` value, one line per ``hue`` value, a shared legend."""
    x, y, xl, yl = ("fpr", "tpr", "false positive rate", "true positive rate") if kind == "roc" else \
        ("recall", "precision", "recall", "precision")
    panels, hues = _order(df, panel, order), _order(df, hue, hue_order)
    colors = colors or palette(hues)
    fig, axes = _panels(len(panels), ncols, 2.6, 2.5, 1.8)
    for ax, p in zip(axes, panels):
        for h in hues:
            sub = df[(df[panel] == p) & (df[hue] == h)]
            ax.plot(sub[x], sub[y], color=colors[h], label=str(h), lw=1.2,
                    drawstyle="steps-post" if kind == "pr" else "default")
        if kind == "roc":
            ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
        _unit_square(ax, str(p))
    _finish_panels(fig, axes, len(panels), xl, yl, title)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles[: len(hues)], labels[: len(hues)], loc="outside right upper", frameon=False, fontsize="small")
    return fig


def reliability_grid(df: "pd.DataFrame", panel: str, *, ncols: int = 4, order: Sequence | None = None,
                     colors: dict | None = None, titles: dict | None = None, title: str | None = None) -> "Figure":
    """Reliability diagrams, one panel per ``panel`` value, from rows with columns ``lo``, ``hi`` (bin edges),
    ``mean_prob``, ``frac_fake`` and ``share`` (of the panel's images): the observed fraction of fakes per
    bin (bars), each bin's mean P(fake) (dots), the diagonal of perfect calibration, and the images' share
    per bin (grey)."""
    panels = _order(df, panel, order)
    colors = colors or palette(panels)
    fig, axes = _panels(len(panels), ncols, 2.6, 2.6, 0.6)
    for ax, p in zip(axes, panels):
        sub = df[df[panel] == p]
        width = (sub["hi"] - sub["lo"]).to_numpy()
        ax.bar(sub["lo"], sub["share"], width, align="edge", color="0.85", label="share of images")
        ax.bar(sub["lo"], sub["frac_fake"], width, align="edge", fill=False, edgecolor=colors[p], lw=1.2,
               label="fraction fake")
        ax.plot(sub["mean_prob"], sub["frac_fake"], "o", ms=3, color=colors[p], label="mean P(fake)")
        ax.plot([0, 1], [0, 1], color="0.5", lw=0.8, ls="--")
        _unit_square(ax, (titles or {}).get(p, str(p)))
    _finish_panels(fig, axes, len(panels), "predicted P(fake)", "fraction of fakes", title)
    return fig


def printable_text(fig: "Figure") -> None:
    """Titles, legends and category labels with control characters and bytes that are not UTF-8 shown as
    ``\\xNN`` (a split folder named with Latin-1 bytes made the font renderer raise)."""
    from matplotlib.category import StrCategoryFormatter
    from matplotlib.text import Text
    from matplotlib.ticker import FixedFormatter, FuncFormatter

    from ..api.escape import terminal_safe

    for text in fig.findobj(Text):
        shown = text.get_text()
        if terminal_safe(shown) != shown:
            text.set_text(terminal_safe(shown))
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            fmt = axis.get_major_formatter()
            if isinstance(fmt, FixedFormatter):
                fmt.seq = [terminal_safe(t) for t in fmt.seq]
            elif isinstance(fmt, FuncFormatter):  # tick labels given as a list
                fmt.func = lambda x, pos, f=fmt.func: terminal_safe(f(x, pos))
            elif isinstance(fmt, StrCategoryFormatter):
                axis.set_major_formatter(FuncFormatter(lambda x, pos, f=fmt: terminal_safe(f(x, pos))))


def save_figure(fig: "Figure", path: str | Path, dpi: int = DPI) -> Path:
    """Write a PNG (parents created) and return its path."""
    import io

    path = Path(path)
    check_replace(path)  # before any folder is made: a linked folder is refused, not created through
    path.parent.mkdir(parents=True, exist_ok=True)
    printable_text(fig)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    # in a results folder: listed in its manifest, never over a user's file, never through a link
    write_atomic_bytes(path, buf.getvalue())
    return path
