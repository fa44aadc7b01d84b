"""Is detector A better than B beyond noise? Paired tests over the same test images.

- **Paired bootstrap** (every metric): each resample draws the images of a split (reals and fakes separately,
  :func:`~sidbench.reports.bootstrap.stratified_counts`) from the split's own seeded stream, so every detector
  is measured on the same resamples; the difference of two detectors' metric on each resample gives the
  distribution of the difference. Significant at 95% when its 2.5-97.5 percentile interval excludes 0. Means
  over splits are resampled split by split, as in the leaderboard's intervals.
- **DeLong** (ROC-AUC): the asymptotic test of two correlated AUCs on the same images (DeLong, DeLong and
  Clarke-Pearson, Biometrics 1988), from the structural components of each AUC (computed with midranks).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..results.metrics import LOWER_IS_BETTER

if TYPE_CHECKING:
    import pandas as pd

LEVEL = 0.95
MARK = "*"  # a column's best value that beats every other detector there beyond noise
MARK_NOTE = (f"{MARK} = best in its column and better than every other detector there beyond noise (paired bootstrap "
             "over the same resampled images, 95%, each pair tested on its own)")


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their mean rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + 1 + e) / 2
    return ranks


def delong_components(labels: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(AUC, V10 per fake image, V01 per real image): V10(X_i) = mean over reals Y_j of psi(X_i, Y_j) and
    V01(Y_j) = mean over fakes of psi, psi = 1 when the fake scores higher, 1/2 on a tie."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    x, r = s[y], s[~y]
    m, n = len(x), len(r)
    all_ranks = midranks(np.r_[x, r])
    v10 = (all_ranks[:m] - midranks(x)) / n
    v01 = 1.0 - (all_ranks[m:] - midranks(r)) / m
    return float(v10.mean()), v10, v01


@dataclass
class DelongResult:
    auc_a: float
    auc_b: float
    z: float
    p: float


def delong_test(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> DelongResult:
    """DeLong's test of AUC(a) = AUC(b) on the same images (two-sided normal p-value)."""
    y = np.asarray(labels).astype(bool)
    if y.sum() < 2 or (~y).sum() < 2:
        return DelongResult(math.nan, math.nan, math.nan, math.nan)
    auc_a, v10a, v01a = delong_components(y, scores_a)
    auc_b, v10b, v01b = delong_components(y, scores_b)
    s10 = np.cov(np.stack([v10a, v10b]))  # ddof 1, as in the paper
    s01 = np.cov(np.stack([v01a, v01b]))
    cov = s10 / y.sum() + s01 / (~y).sum()
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    if var <= 0:
        same = auc_a == auc_b
        return DelongResult(auc_a, auc_b, 0.0 if same else math.copysign(math.inf, auc_a - auc_b), 1.0 if same else 0.0)
    z = (auc_a - auc_b) / math.sqrt(var)
    return DelongResult(auc_a, auc_b, z, math.erfc(abs(z) / math.sqrt(2)))


def difference_summary(diff: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """(lo, hi, p) of a bootstrap distribution of a difference: the percentile interval and the two-sided
    bootstrap p-value (twice the smaller tail beyond 0)."""
    d = diff[np.isfinite(diff)]
    if not len(d):
        return math.nan, math.nan, math.nan
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(d, [tail, 100 - tail])
    p = min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean()))
    return float(lo), float(hi), float(p)


def better_beyond_noise(a: np.ndarray, b: np.ndarray, metric: str, level: float = LEVEL) -> bool:
    """Whether ``a`` beats ``b`` on every resample interval: the difference's interval excludes 0 on a's side."""
    diff = (b - a) if metric in LOWER_IS_BETTER else (a - b)
    lo, _, _ = difference_summary(diff, level)
    return bool(lo > 0)


def significance_marks(replicates: dict, paired: set, boards_values: "pd.DataFrame", metric: str,
                       perturbation: str) -> "pd.DataFrame":
    """True where a cell is its column's best and beats every other detector there beyond noise.

    ``replicates[(detector, column, perturbation)][metric]`` are the paired bootstrap values;
    ``paired`` holds the (column, perturbation) pairs whose detectors were all scored on the same images."""
    marks = boards_values.notna() & False
    for col in boards_values.columns:
        shown = boards_values[col].dropna()
        if len(shown) < 2 or (col, perturbation) not in paired:
            continue
        best = shown.idxmin() if metric in LOWER_IS_BETTER else shown.idxmax()
        reps = {d: replicates.get((d, col, perturbation), {}).get(metric) for d in shown.index}
        if any(v is None for v in reps.values()):
            continue
        if all(better_beyond_noise(reps[best], reps[o], metric) for o in shown.index if o != best):
            marks.at[best, col] = True
    return marks


def compare_rows(scores: "pd.DataFrame", metrics_table: "pd.DataFrame", a: str, b: str, metrics: Sequence[str],
                 n_boot: int, seed: int) -> list[list]:
    """Rows of the paired test of detectors ``a`` and ``b``: per perturbation and split (then the means), per
    metric: a, b, a - b, its 95% interval and bootstrap p; for AUC also DeLong's z and p (per split)."""
    from .bootstrap import replicates

    both = scores[scores["detector"].isin([a, b])]
    per_split = metrics_table[~metrics_table["split"].str.startswith("mean:")]
    reps, paired = replicates(both, n_boot, metrics, seed=seed, thresholds=per_split)
    rows = []
    value = metrics_table.set_index(["detector", "split", "perturbation"])
    columns = sorted({(k[2], k[1]) for k in reps if k[0] == a} & {(k[2], k[1]) for k in reps if k[0] == b},
                     key=lambda pc: (pc[0] != "none", pc[0], pc[1].startswith("mean:"), pc[1]))
    for pert, col in columns:
        for m in metrics:
            va, vb = (value[m].get((d, col, pert), math.nan) for d in (a, b))
            lo, hi, p = difference_summary(reps[(a, col, pert)][m] - reps[(b, col, pert)][m])
            if (col, pert) not in paired:
                lo = hi = p = math.nan
            dz = dp = math.nan
            if m == "auc" and not col.startswith("mean:"):
                ia = _split_scores(both, a, col, pert)
                ib = _split_scores(both, b, col, pert)
                if ia is not None and ib is not None and list(ia.index) == list(ib.index):
                    res = delong_test(ia["label"].to_numpy(), ia["score"].to_numpy(), ib["score"].to_numpy())
                    dz, dp = res.z, res.p
            sig = "yes" if math.isfinite(p) and (lo > 0 or hi < 0) else "no"
            rows.append([pert, col, m, va, vb, va - vb, lo, hi, p, dz, dp, sig])
    return rows


def _split_scores(scores: "pd.DataFrame", det: str, split: str, pert: str) -> "pd.DataFrame | None":
    """One detector's (label, score) on a split, indexed by path and sorted (the ranking the AUC uses)."""
    df = scores[(scores["detector"] == det) & (scores["split"] == split) & (scores["perturbation"] == pert)]
    if not len(df):
        return None
    df = df.sort_values("path", kind="stable").set_index("path")
    return df.assign(score=np.asarray(df["logit"], dtype=np.float64))[["label", "score"]]


COMPARE_HEADERS = ["perturbation", "split", "metric", "A", "B", "A-B", "lo", "hi", "p (bootstrap)", "DeLong z",
                   "DeLong p", "bootstrap significant (95%)"]
