"""Per-split metrics and unweighted means over splits, with scikit-learn.

Thresholded metrics use P(fake) > 0.5 (logit > 0). Ranking metrics (AP, ROC-AUC) use the
logit, which ranks like the probability without float32 saturation ties.
"""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
METRICS = ("acc", "real_acc", "fake_acc", "ap", "auc", "f1")
KEYS = ("detector", "split", "group", "perturbation")


def binary_metrics(labels: Sequence[int], logits: Sequence[float]) -> dict[str, float]:
    """Accuracy (overall, real, fake), AP, ROC-AUC and F1 of one split; NaN where undefined."""
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

    y = np.asarray(labels, dtype=int)
    s = np.asarray(logits, dtype=np.float64)
    pred = (s > 0).astype(int)
    n_real, n_fake = int((y == 0).sum()), int((y == 1).sum())
    both = n_real > 0 and n_fake > 0
    return {
        "n_real": n_real,
        "n_fake": n_fake,
        "acc": float(accuracy_score(y, pred)) if len(y) else math.nan,
        "real_acc": float(accuracy_score(y[y == 0], pred[y == 0])) if n_real else math.nan,
        "fake_acc": float(accuracy_score(y[y == 1], pred[y == 1])) if n_fake else math.nan,
        "ap": float(average_precision_score(y, s)) if both else math.nan,
        "auc": float(roc_auc_score(y, s)) if both else math.nan,
        "f1": float(f1_score(y, pred, zero_division=0)) if len(y) else math.nan,
    }


def metrics_table(scores: "pd.DataFrame") -> "pd.DataFrame":
    """One row per detector x split x perturbation, then ``mean:<group>`` and ``mean:all`` rows
    holding unweighted means over splits (counts are summed)."""
    import pandas as pd

    rows = []
    by = ["detector", "split", "group", "perturbation"]
    for (det, split, group, pert), df in finite_scores(scores).groupby(by, sort=True, dropna=False):
        rows.append({"detector": det, "split": split, "group": group, "perturbation": pert,
                     **binary_metrics(df["label"], df["logit"]), "protocol": _protocols(df)})
    table = pd.DataFrame(rows, columns=[*KEYS, "n_real", "n_fake", *METRICS, "protocol"])
    return pd.concat([table, group_means(table)], ignore_index=True)


def finite_scores(scores: "pd.DataFrame") -> "pd.DataFrame":
    """The rows whose logit is a finite number; the others (a file from elsewhere: sidbench itself refuses to
    write them) are left out with one warning, so AP and AUC never fail on a NaN."""
    import pandas as pd

    ok = np.isfinite(pd.to_numeric(scores["logit"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))
    if not ok.all():
        bad = scores.loc[~ok, "detector"].astype(str)
        log.warning(f"{len(bad)} score row(s) with a NaN, Inf or missing logit are left out of the metrics "
                    f"(detector(s): {', '.join(sorted(set(bad)))})")
        return scores[ok]
    return scores


def group_means(table: "pd.DataFrame") -> "pd.DataFrame":
    import pandas as pd

    means = []
    for (det, pert), df in table.groupby(["detector", "perturbation"], sort=True):
        for group, gdf in sorted(df.groupby("group"), key=lambda kv: str(kv[0])):
            means.append(_mean_row(gdf, det, f"mean:{group}", group, pert))
        means.append(_mean_row(df, det, "mean:all", "all", pert))
    return pd.DataFrame(means)


def _mean_row(df: "pd.DataFrame", det: str, split: str, group: str, pert: str) -> dict:
    row = {"detector": det, "split": split, "group": group, "perturbation": pert,
           "n_real": int(df["n_real"].sum()), "n_fake": int(df["n_fake"].sum())}
    for m in METRICS:
        vals = df[m].dropna()
        row[m] = float(vals.mean()) if len(vals) else math.nan
    row["protocol"] = _protocols(df)
    return row


def _protocols(df: "pd.DataFrame") -> str:
    """The preprocessing protocol(s) behind these rows, e.g. ``center_crop`` or ``center_crop+ten_crop``."""
    if "protocol" not in df:
        return ""
    return "+".join(sorted({p for v in df["protocol"] for p in str(v).split("+") if p}))
