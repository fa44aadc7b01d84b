"""Bootstrap 95% intervals for the leaderboard: images resampled within each split, stratified by label.

A resample is a vector of multinomial counts per image (reals and fakes drawn separately, so every
resample keeps the split's class balance), and every metric is computed on the original scores
with those counts as weights, vectorised over resamples. The draws are seeded by (seed, split,
perturbation) and images are ordered by path, so all detectors see the same resamples (a paired
bootstrap). A mean over splits is resampled by resampling every split and recomputing the
unweighted mean.
"""
from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Iterable

import numpy as np

from ..results.metrics import METRICS

if TYPE_CHECKING:
    import pandas as pd

CHUNK = 256  # resamples computed at once (bounds memory at CHUNK x images)


def stratified_counts(labels: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n] resampling counts: each class resampled with replacement to its own size."""
    counts = np.zeros((n_boot, len(labels)))
    for cls in (0, 1):
        idx = np.flatnonzero(labels == cls)
        if len(idx):
            counts[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1 / len(idx)), size=n_boot)
    return counts


def weighted_metrics(labels: np.ndarray, logits: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics of ``sidbench.results.metrics.binary_metrics`` for each row of ``weights`` [B, n] (sample weights)."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(logits, dtype=np.float64)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    pred = s > 0
    w_real, w_fake = w[:, ~y].sum(1), w[:, y].sum(1)
    tp, tn = w[:, y & pred].sum(1), w[:, ~y & ~pred].sum(1)
    fp, fn = w_real - tn, w_fake - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "acc": (tp + tn) / (w_real + w_fake),
            "real_acc": tn / w_real,
            "fake_acc": tp / w_fake,
            "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1e-300), 0.0),
        }
        out.update(_ranking_metrics(y, s, w, w_real, w_fake))
    return out


def _ranking_metrics(y, s, w, w_real, w_fake) -> dict[str, np.ndarray]:
    """AP (step-wise, as scikit-learn) and ROC-AUC (ties count half) from per-threshold weight sums."""
    if not y.any() or y.all():
        nan = np.full(len(w), np.nan)
        return {"ap": nan, "auc": nan}
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])  # distinct thresholds, descending
    ws = w[:, order]
    fake_at = np.add.reduceat(ws * y[order], starts, axis=1)
    real_at = np.add.reduceat(ws * ~y[order], starts, axis=1)
    tp, fp = fake_at.cumsum(1), real_at.cumsum(1)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
    ap = (fake_at * precision).sum(1) / w_fake
    auc = (fake_at * (w_real[:, None] - fp + 0.5 * real_at)).sum(1) / (w_real * w_fake)
    return {"ap": ap, "auc": auc}


def split_replicates(labels: np.ndarray, logits: np.ndarray, n_boot: int, rng: np.random.Generator,
                     metrics: Iterable[str] = METRICS) -> dict[str, np.ndarray]:
    """[n_boot] bootstrap values of each metric on one split."""
    metrics = list(metrics)
    parts: dict[str, list] = {m: [] for m in metrics}
    for start in range(0, n_boot, CHUNK):
        w = stratified_counts(labels, min(CHUNK, n_boot - start), rng)
        values = weighted_metrics(labels, logits, w)
        for m in metrics:
            parts[m].append(values[m])
    return {m: np.concatenate(v) for m, v in parts.items()}


def split_rng(seed: int, split: str, perturbation: str) -> np.random.Generator:
    """The same stream for every detector on one split x perturbation (paired resamples)."""
    return np.random.default_rng([seed, zlib.crc32(split.encode()), zlib.crc32(perturbation.encode())])


def bootstrap_intervals(scores: "pd.DataFrame", n_boot: int, metrics: Iterable[str] = METRICS,
                        seed: int = 0, level: float = 0.95) -> "pd.DataFrame":
    """Percentile intervals per detector x split x perturbation and for the ``mean:<group>``/``mean:all``
    rows: columns detector, split, perturbation, metric, lo, hi."""
    import pandas as pd

    metrics = list(metrics)
    rows = []
    for (det, pert), df in scores.groupby(["detector", "perturbation"], sort=True):
        reps: dict[str, dict[str, np.ndarray]] = {}
        groups: dict[str, str] = {}
        for split, sdf in df.groupby("split", sort=True):
            sdf = sdf.sort_values("path", kind="stable")
            reps[split] = split_replicates(sdf["label"].to_numpy(), sdf["logit"].to_numpy(), n_boot,
                                           split_rng(seed, split, pert), metrics)
            groups[split] = str(sdf["group"].iloc[0])
        members = {f"mean:{g}": [s for s in reps if groups[s] == g] for g in sorted(set(groups.values()))}
        members["mean:all"] = list(reps)
        for name, values in [*reps.items(), *((k, _mean(reps, v, metrics)) for k, v in members.items())]:
            for m in metrics:
                lo, hi = _percentiles(values[m], level)
                rows.append((det, name, pert, m, lo, hi))
    return pd.DataFrame(rows, columns=["detector", "split", "perturbation", "metric", "lo", "hi"])


def _mean(reps: dict[str, dict[str, np.ndarray]], splits: list[str], metrics: list[str]) -> dict[str, np.ndarray]:
    """Per resample, the unweighted mean over splits (NaN splits left out, as in the metrics table)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: mean is NaN
        return {m: np.nanmean(np.stack([reps[s][m] for s in splits]), axis=0) for m in metrics}


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return float(lo), float(hi)
