"""The tables of a study: variants' metrics widened to one row each, shown as percentages in Markdown, and the
comma-separated grids of the study flags."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..api.errors import SidbenchError

if TYPE_CHECKING:
    import pandas as pd


def markdown_table(table: "pd.DataFrame", percent: Sequence[str] | None = None) -> str:
    """Fractions in ``percent`` columns (default: those named like metrics) shown as percentages, one decimal."""
    shown = table.copy()
    for col in shown.columns:
        if (col in percent if percent is not None else is_metric(col)) and shown[col].dtype.kind == "f":
            shown[col] = (shown[col] * 100).map(lambda v: "" if v != v else f"{v:.1f}")
    return shown.to_markdown(index=False)


def is_metric(column: str) -> bool:
    words = str(column).replace("_", " ").split()
    return bool(words) and words[-1] in {"acc", "AP", "ap", "AUC", "auc"}


def wide(long: "pd.DataFrame", row: str, metrics: Sequence[str] = ("acc", "ap")) -> "pd.DataFrame":
    """Rows = ``row`` values (in first-seen order), columns ``<split> acc``, ``<split> AP``, ..., ``mean acc``."""
    import pandas as pd

    label = {"acc": "acc", "ap": "AP", "auc": "AUC"}
    order = list(dict.fromkeys(long[row]))
    splits = [s for s in dict.fromkeys(long["split"]) if s != "mean"] + ["mean"]
    cols = {}
    for split in splits:
        for m in metrics:
            sub = long[long["split"] == split].set_index(row)[m]
            cols[f"{split} {label.get(m, m)}"] = sub.reindex(order).to_numpy()
    return pd.concat([pd.DataFrame({row: order}), pd.DataFrame(cols)], axis=1)


def parse_list(flag: str, text: str | None, kind: type = float, default: Sequence | None = None) -> list:
    """``"1,2,4"`` -> [1, 2, 4]; a bad item is a one-line error naming the flag."""
    if text is None:
        return list(default or [])
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
        values = [kind(t) for t in items]
    except ValueError:
        raise SidbenchError(f"--{flag} {text!r}: give comma-separated {'integers' if kind is int else 'numbers'}, "
                            f"e.g. --{flag} {'1,2,4' if kind is int else '0,0.5,1'}") from None
    if not values:
        raise SidbenchError(f"--{flag}: give at least one value")
    return values
