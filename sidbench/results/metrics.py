"""Per-split metrics and unweighted means over splits, with scikit-learn.

Thresholded metrics (``acc``, ``real_acc``, ``fake_acc``, ``f1``, ``bal_acc``) predict fake when
``logit > threshold`` (by default 0, i.e. P(fake) > 0.5; see :mod:`sidbench.results.operating` for the
other policies). Ranking metrics (AP, ROC-AUC, EER, TPR at a fixed FPR) use the logit, which ranks like
the probability without float32 saturation ties; ``ap_from="sigmoid32"`` (``--ap-from sigmoid32``) computes AP
and ROC-AUC on float32 sigmoids instead, as the reference scripts do (saturated logits then tie), for
comparisons with published numbers. Probability metrics (ECE, Brier, NLL) use the (calibrated) logit.

A split with one class (real-only or fake-only) has no AP, ROC-AUC, EER or TPR; it keeps its accuracy and
``fpr`` (the false-positive rate at the threshold, reals only) and is left out of every mean, so the means
average the same kind of split (:func:`one_class_note` says so in one line).
"""
from __future__ import annotations

import logging
import math
import re
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .operating import FPR_TARGETS, OperatingPoints, nll_terms, p_fake

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
METRICS = ("acc", "real_acc", "fake_acc", "ap", "auc", "f1")  # the stable columns (DESIGN 9), in order
KEYS = ("detector", "split", "group", "perturbation")
THRESHOLDED = ("acc", "real_acc", "fake_acc", "f1", "bal_acc", "fpr")  # depend on the row's threshold
LOWER_IS_BETTER = frozenset({"eer", "ece", "brier", "nll", "fpr"})
AP_FROM = ("logit", "sigmoid32")  # what AP and ROC-AUC rank: the logit (default) or float32 sigmoids
ECE_BINS = 15
_TPR = re.compile(r"tpr_fpr(\d+)")


def tpr_name(target: float) -> str:
    """The column of TPR at a false-positive rate: the digits after ``0.``, at least two
    (0.01 -> ``tpr_fpr01``, 0.05 -> ``tpr_fpr05``, 0.1 -> ``tpr_fpr10``, 0.001 -> ``tpr_fpr001``)."""
    digits = f"{target:.12f}".split(".")[1].rstrip("0")
    return f"tpr_fpr{digits.ljust(2, '0')}"


def tpr_target(name: str) -> float | None:
    """The FPR of a ``tpr_fpr..`` column name (inverse of :func:`tpr_name`), or None."""
    m = _TPR.fullmatch(name)
    return float(f"0.{m.group(1)}") if m else None


def metric_names(fpr_targets: Sequence[float] = FPR_TARGETS) -> tuple[str, ...]:
    """Every metric column, in metrics.csv order."""
    return (*METRICS, "bal_acc", "eer", *(tpr_name(t) for t in fpr_targets), "ece", "brier", "nll", "fpr")


def metric_columns(table: "pd.DataFrame") -> list[str]:
    """The metric columns a metrics table holds (older results folders have only ``METRICS``)."""
    known = set(metric_names())
    return [c for c in table.columns if c in known or tpr_target(c) is not None]


def binary_metrics(labels: Sequence[int], logits: Sequence[float], threshold: float = 0.0,
                   calibrated: Sequence[float] | None = None,
                   fpr_targets: Sequence[float] = FPR_TARGETS, ap_from: str = "logit") -> dict[str, float]:
    """Every metric of one split; NaN where undefined. ``calibrated``: the logits the probability
    metrics use (default: ``logits``); ``ap_from``: what AP and ROC-AUC rank (:data:`AP_FROM`)."""
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

    y = np.asarray(labels, dtype=int)
    s = np.asarray(logits, dtype=np.float64)
    pred = (s > threshold).astype(int)
    n_real, n_fake = int((y == 0).sum()), int((y == 1).sum())
    both = n_real > 0 and n_fake > 0
    ranked = ranking_scores(s, ap_from) if both else None
    out = {
        "n_real": n_real,
        "n_fake": n_fake,
        "acc": float(accuracy_score(y, pred)) if len(y) else math.nan,
        "real_acc": float(accuracy_score(y[y == 0], pred[y == 0])) if n_real else math.nan,
        "fake_acc": float(accuracy_score(y[y == 1], pred[y == 1])) if n_fake else math.nan,
        "ap": float(average_precision_score(y, ranked)) if both else math.nan,
        "auc": float(roc_auc_score(y, ranked)) if both else math.nan,
        "f1": float(f1_score(y, pred, zero_division=0)) if len(y) else math.nan,
    }
    out["bal_acc"] = (out["real_acc"] + out["fake_acc"]) / 2
    out["fpr"] = 1 - out["real_acc"]  # reals called fake at the threshold (the false-positive check of real-only data)
    out.update(operating_metrics(y, s, fpr_targets) if both else
               {"eer": math.nan, **{tpr_name(t): math.nan for t in fpr_targets}})
    out.update(probability_metrics(y, s if calibrated is None else np.asarray(calibrated, dtype=np.float64)))
    return out


def ranking_scores(logits: np.ndarray, ap_from: str = "logit") -> np.ndarray:
    """What AP and ROC-AUC rank: the logit, or (``sigmoid32``) the reference scripts' float32 P(fake), the
    exact sigmoid rounded to float32, so logits above ~16.6 all become 1.0 and tie."""
    if ap_from == "logit":
        return logits
    if ap_from == "sigmoid32":
        return p_fake(logits).astype(np.float32)
    raise ValueError(f"ap_from must be one of {AP_FROM}, got {ap_from!r}")


def operating_metrics(y: np.ndarray, s: np.ndarray, fpr_targets: Sequence[float]) -> dict[str, float]:
    """EER (where the ROC curve, linearly interpolated, crosses FPR = 1 - TPR) and, per target, the highest
    TPR over the ROC points whose FPR is at most the target."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    gap = fpr + tpr - 1  # rises from -1 at (0, 0) to 1 at (1, 1)
    i = int(np.argmax(gap >= 0))
    frac = 0.0 if i == 0 or gap[i] == gap[i - 1] else -gap[i - 1] / (gap[i] - gap[i - 1])
    out = {"eer": float(fpr[i - 1] + frac * (fpr[i] - fpr[i - 1])) if i else float(fpr[0])}
    for t in fpr_targets:
        out[tpr_name(t)] = float(tpr[fpr <= t + 1e-12].max())
    return out


def probability_metrics(y: np.ndarray, z: np.ndarray) -> dict[str, float]:
    """ECE (15 equal-width bins of P(fake): sum of bin share x |fraction fake - mean P(fake)|), Brier
    score and mean negative log-likelihood (from the logit ``z``, so saturated probabilities stay finite)."""
    if not len(y):
        return {"ece": math.nan, "brier": math.nan, "nll": math.nan}
    p = p_fake(z)
    bins = ece_bins(p)
    count = np.bincount(bins, minlength=ECE_BINS)
    gap = np.bincount(bins, weights=y - p, minlength=ECE_BINS)
    return {"ece": float(np.abs(gap).sum() / count.sum()), "brier": float(np.mean((p - y) ** 2)),
            "nll": float(np.mean(nll_terms(y, z)))}


def ece_bins(p: np.ndarray) -> np.ndarray:
    """The ECE bin (0..14) of each probability: [0, 1/15), [1/15, 2/15), ..., [14/15, 1] (as numpy.histogram)."""
    return np.clip(np.searchsorted(np.linspace(0, 1, ECE_BINS + 1), p, side="right") - 1, 0, ECE_BINS - 1)


def metrics_table(scores: "pd.DataFrame", op: OperatingPoints | None = None) -> "pd.DataFrame":
    """One row per detector x split x perturbation, then ``mean:<group>`` and ``mean:all`` rows
    holding unweighted means over splits (counts are summed); ``op`` sets thresholds and calibration."""
    import pandas as pd

    op = op or OperatingPoints()
    rows = []
    for (det, split, group, pert), df in finite_scores(scores).groupby(list(KEYS), sort=True, dropna=False):
        y, s = df["label"].to_numpy(dtype=int), df["logit"].to_numpy(dtype=np.float64)
        threshold, source = op.threshold(det, y, s)
        rows.append({"detector": det, "split": split, "group": group, "perturbation": pert,
                     **binary_metrics(y, s, threshold, op.calibrated(det, s), op.fpr_targets, op.ap_from),
                     "protocol": _protocols(df), "threshold": threshold, "threshold_source": source,
                     "ap_from": op.ap_from})
    columns = [*KEYS, "n_real", "n_fake", *metric_names(op.fpr_targets), "threshold", "threshold_source", "ap_from",
               "protocol"]
    table = pd.DataFrame(rows, columns=columns)
    return pd.concat([table, group_means(table)], ignore_index=True)[columns]


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


def one_class(table: "pd.DataFrame") -> "pd.Series":
    """Per-split rows holding only reals or only fakes (no AP, ROC-AUC, EER or TPR; left out of the means)."""
    n_real, n_fake = _numeric(table["n_real"]).fillna(0), _numeric(table["n_fake"]).fillna(0)
    per_split = ~table["split"].astype(str).str.startswith("mean:")
    return per_split & ((n_real == 0) | (n_fake == 0))


def one_class_note(table: "pd.DataFrame") -> str | None:
    """One line naming the one-class splits and how they are reported, or None when there are none."""
    rows = table[one_class(table)]
    if not len(rows):
        return None
    def names(mask) -> str:
        found = list(dict.fromkeys(rows.loc[mask, "split"].astype(str)))
        return ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "")
    reals = _numeric(rows["n_fake"]).fillna(0) == 0
    parts = [f"real-only: {names(reals)}"] if reals.any() else []
    parts += [f"fake-only: {names(~reals)}"] if (~reals).any() else []
    return (f"one-class split(s) ({'; '.join(parts)}): accuracy and FPR (reals called fake) at the threshold "
            "only, AP/AUC undefined, left out of every mean")


def group_means(table: "pd.DataFrame") -> "pd.DataFrame":
    """``mean:<group>`` and ``mean:all`` rows per detector and perturbation, over the splits holding both
    classes (a group with none gets no mean row)."""
    import pandas as pd

    means = []
    two_class = table[~one_class(table)]
    for (det, pert), df in two_class.groupby(["detector", "perturbation"], sort=True):
        for group, gdf in sorted(df.groupby("group"), key=lambda kv: str(kv[0])):
            means.append(_mean_row(gdf, det, f"mean:{group}", group, pert))
        means.append(_mean_row(df, det, "mean:all", "all", pert))
    return pd.DataFrame(means)


def _mean_row(df: "pd.DataFrame", det: str, split: str, group: str, pert: str) -> dict:
    row = {"detector": det, "split": split, "group": group, "perturbation": pert,
           "n_real": int(df["n_real"].sum()), "n_fake": int(df["n_fake"].sum())}
    for m in metric_columns(df):
        vals = _numeric(df[m]).dropna()
        row[m] = float(vals.mean()) if len(vals) else math.nan
    row["protocol"] = _protocols(df)
    if "threshold" in df:  # one threshold per detector (fixed, val) is shown; per-split ones (oracle) are not
        values = set(_numeric(df["threshold"]).dropna())
        row["threshold"] = values.pop() if len(values) == 1 else math.nan
    for key in ("threshold_source", "ap_from"):
        if key in df:
            row[key] = "+".join(sorted({str(v) for v in df[key] if str(v)}))
    return row


def _numeric(col: "pd.Series") -> "pd.Series":
    import pandas as pd

    return pd.to_numeric(col, errors="coerce")


def _protocols(df: "pd.DataFrame") -> str:
    """The preprocessing protocol(s) behind these rows, e.g. ``center_crop`` or ``center_crop+ten_crop``."""
    if "protocol" not in df:
        return ""
    return "+".join(sorted({p for v in df["protocol"] for p in str(v).split("+") if p}))
