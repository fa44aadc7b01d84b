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
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from ..results.metrics import ECE_BINS, METRICS, THRESHOLDED, ece_bins, ranking_scores, tpr_name, tpr_target
from ..results.operating import FPR_TARGETS, balanced_accuracy_at, nll_terms, p_fake, pick_threshold, threshold_candidates

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


def weighted_metrics(labels: np.ndarray, logits: np.ndarray, weights: np.ndarray, threshold: float = 0.0,
                     calibrated: np.ndarray | None = None, oracle: bool = False,
                     fpr_targets: Sequence[float] = FPR_TARGETS, only: Iterable[str] | None = None,
                     ap_from: str = "logit") -> dict[str, np.ndarray]:
    """The metrics of ``sidbench.results.metrics.binary_metrics`` for each row of ``weights`` [B, n] (sample
    weights) at ``threshold``; ``oracle``: at each resample's own best balanced-accuracy threshold, as the
    oracle policy chooses it on the test split. ``only`` skips the ROC and probability metrics not named."""
    only = None if only is None else set(only)
    y = np.asarray(labels).astype(bool)
    s = np.asarray(logits, dtype=np.float64)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if oracle and y.any() and not y.all():
        cands = threshold_candidates(s)
        t = cands[pick_threshold(cands, balanced_accuracy_at(y, s, cands, w))]
    else:
        t = np.full(len(w), threshold if not oracle else 0.0)
    pred = s[None, :] > t[:, None]
    w_real, w_fake = w[:, ~y].sum(1), w[:, y].sum(1)
    tp, tn = (w * (y & pred)).sum(1), (w * (~y & ~pred)).sum(1)
    fp, fn = w_real - tn, w_fake - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "acc": (tp + tn) / (w_real + w_fake),
            "real_acc": tn / w_real,
            "fake_acc": tp / w_fake,
            "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1e-300), 0.0),
        }
        out["bal_acc"] = (out["real_acc"] + out["fake_acc"]) / 2
        out["fpr"] = 1 - out["real_acc"]
        out.update(_ranking_metrics(y, s, w, w_real, w_fake, fpr_targets,
                                    curve=only is None or bool(only - {"ap", "auc", *THRESHOLDED})))
        if ap_from != "logit":  # AP and AUC on the run's other convention; EER and TPR stay on the logit
            ranked = ranking_scores(s, ap_from).astype(np.float64)
            out.update(_ranking_metrics(y, ranked, w, w_real, w_fake, fpr_targets, curve=False))
        if only is None or only & {"ece", "brier", "nll"}:
            out.update(_probability_metrics(y, s if calibrated is None else np.asarray(calibrated, dtype=np.float64), w))
    return out


def _ranking_metrics(y, s, w, w_real, w_fake, fpr_targets, curve: bool = True) -> dict[str, np.ndarray]:
    """AP (step-wise, as scikit-learn), ROC-AUC (ties count half) and, with ``curve``, EER (ROC linearly
    interpolated) and TPR at each target FPR, from per-threshold weight sums."""
    names = ["ap", "auc", "eer", *(tpr_name(t) for t in fpr_targets)]
    if not y.any() or y.all():
        return {m: np.full(len(w), np.nan) for m in names}
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])  # distinct thresholds, descending
    ws = w[:, order]
    fake_at = np.add.reduceat(ws * y[order], starts, axis=1)
    real_at = np.add.reduceat(ws * ~y[order], starts, axis=1)
    tp, fp = fake_at.cumsum(1), real_at.cumsum(1)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
    out = {"ap": (fake_at * precision).sum(1) / w_fake,
           "auc": (fake_at * (w_real[:, None] - fp + 0.5 * real_at)).sum(1) / (w_real * w_fake)}
    if not curve:
        return out
    zero = np.zeros((len(w), 1))
    fpr = np.concatenate([zero, fp / w_real[:, None]], axis=1)  # ROC points, (0, 0) first
    tpr = np.concatenate([zero, tp / w_fake[:, None]], axis=1)
    gap = fpr + tpr - 1
    i = np.argmax(gap >= 0, axis=1)[:, None]  # >= 1: the curve starts at gap -1
    g0, g1 = np.take_along_axis(gap, i - 1, 1), np.take_along_axis(gap, i, 1)
    f0, f1 = np.take_along_axis(fpr, i - 1, 1), np.take_along_axis(fpr, i, 1)
    out["eer"] = (f0 + (-g0 / (g1 - g0)) * (f1 - f0))[:, 0]
    for t in fpr_targets:
        out[tpr_name(t)] = np.where(fpr <= t + 1e-12, tpr, -np.inf).max(1)
    return out


def _probability_metrics(y, z, w) -> dict[str, np.ndarray]:
    """Weighted ECE (the same 15 bins), Brier score and NLL of the (calibrated) logits ``z``."""
    p = p_fake(z)
    onehot = np.eye(ECE_BINS)[ece_bins(p)]  # [n, bins]
    total = w.sum(1)
    return {"ece": np.abs((w * (y - p)) @ onehot).sum(1) / total,
            "brier": (w * (p - y) ** 2).sum(1) / total,
            "nll": (w * nll_terms(y, z)).sum(1) / total}


def split_replicates(labels: np.ndarray, logits: np.ndarray, n_boot: int, rng: np.random.Generator,
                     metrics: Iterable[str] = METRICS, *, threshold: float = 0.0,
                     calibrated: np.ndarray | None = None, oracle: bool = False,
                     ap_from: str = "logit") -> dict[str, np.ndarray]:
    """[n_boot] bootstrap values of each metric on one split (see :func:`weighted_metrics` for the rest)."""
    metrics = list(metrics)
    targets = tuple(t for t in map(tpr_target, metrics) if t is not None)
    parts: dict[str, list] = {m: [] for m in metrics}
    for start in range(0, n_boot, CHUNK):
        w = stratified_counts(labels, min(CHUNK, n_boot - start), rng)
        values = weighted_metrics(labels, logits, w, threshold, calibrated, oracle, targets, metrics, ap_from)
        for m in metrics:
            parts[m].append(values[m])
    return {m: np.concatenate(v) for m, v in parts.items()}


def split_rng(seed: int, split: str, perturbation: str) -> np.random.Generator:
    """The same stream for every detector on one split x perturbation (paired resamples)."""
    return np.random.default_rng([seed, zlib.crc32(split.encode()), zlib.crc32(perturbation.encode())])


def bootstrap_intervals(scores: "pd.DataFrame", n_boot: int, metrics: Iterable[str] = METRICS,
                        seed: int = 0, level: float = 0.95, thresholds: "pd.DataFrame | None" = None) -> "pd.DataFrame":
    """Percentile intervals per detector x split x perturbation and for the ``mean:<group>``/``mean:all``
    rows: columns detector, split, perturbation, metric, lo, hi (the resamples of :func:`replicates`)."""
    metrics = list(metrics)
    return intervals_of(replicates(scores, n_boot, metrics, seed, thresholds)[0], metrics, level)


def intervals_of(reps: dict[tuple[str, str, str], dict[str, np.ndarray]], metrics: Sequence[str],
                 level: float = 0.95) -> "pd.DataFrame":
    """The percentile intervals of :func:`replicates`' values: columns detector, split, perturbation, metric,
    lo, hi."""
    import pandas as pd

    rows = [(det, name, pert, m, *_percentiles(values[m], level))
            for (det, name, pert), values in reps.items() for m in metrics]
    return pd.DataFrame(rows, columns=["detector", "split", "perturbation", "metric", "lo", "hi"])


def replicates(scores: "pd.DataFrame", n_boot: int, metrics: Iterable[str] = METRICS, seed: int = 0,
               thresholds: "pd.DataFrame | None" = None) -> tuple[dict, set]:
    """The bootstrap values of every metric: ``{(detector, split or mean:<group>, perturbation): {metric:
    [n_boot]}}``, and the (split or mean, perturbation) pairs where every detector was scored on the same images
    (there the resamples are the same images for all of them: a paired bootstrap, :mod:`.significance`).

    ``thresholds`` (the metrics table's detector, split, perturbation, threshold, threshold_source[, ap_from])
    gives each row's threshold (default 0) and what its AP and AUC rank (default the logit). A fixed or
    validation threshold, and a calibration (the ``logit_calibrated`` column of ``scores``, used by ECE,
    Brier and NLL), come from outside the test images and are held fixed; an oracle threshold is chosen
    again on every resample."""
    metrics = list(metrics)
    points = _row_thresholds(thresholds)
    conventions = _row_ap_from(thresholds)
    out: dict[tuple[str, str, str], dict[str, np.ndarray]] = {}
    images: dict[tuple[str, str], set] = {}  # (split, perturbation) -> the image lists the detectors were scored on
    for (det, pert), df in scores.groupby(["detector", "perturbation"], sort=True):
        reps: dict[str, dict[str, np.ndarray]] = {}
        groups: dict[str, str] = {}
        for split, sdf in df.groupby("split", sort=True):
            sdf = sdf.sort_values("path", kind="stable")
            images.setdefault((split, pert), set()).add(tuple(sdf["path"]))
            threshold, source = points.get((det, split, pert), (0.0, "fixed"))
            ap_from = conventions.get((det, split, pert), "logit")
            calibrated = sdf["logit_calibrated"].to_numpy() if "logit_calibrated" in sdf else None
            reps[split] = split_replicates(sdf["label"].to_numpy(), sdf["logit"].to_numpy(), n_boot,
                                           split_rng(seed, split, pert), metrics, threshold=threshold,
                                           calibrated=calibrated, oracle=source == "oracle", ap_from=ap_from)
            if (sdf["label"] == 0).any() and (sdf["label"] == 1).any():  # one-class splits stay out of the means
                groups[split] = str(sdf["group"].iloc[0])
        members = {f"mean:{g}": [s for s in groups if groups[s] == g] for g in sorted(set(groups.values()))}
        members["mean:all"] = list(groups)
        for name, values in [*reps.items(), *((k, _mean(reps, v, metrics)) for k, v in members.items() if v)]:
            out[(det, name, pert)] = values
    paired = {key for key, lists in images.items() if len(lists) == 1}
    for pert in {p for _, p in images}:  # a mean is paired when every split in it is
        splits = [s for s, p in images if p == pert]
        if all((s, pert) in paired for s in splits):
            paired |= {(name, pert) for (_, name, p) in out if p == pert and name.startswith("mean:")}
    return out, paired


def _row_thresholds(table: "pd.DataFrame | None") -> dict[tuple[str, str, str], tuple[float, str]]:
    if table is None or "threshold" not in table:
        return {}
    import pandas as pd

    values = pd.to_numeric(table["threshold"], errors="coerce").fillna(0.0)
    sources = table["threshold_source"] if "threshold_source" in table else ["fixed"] * len(table)
    return {(d, s, p): (float(t), str(src)) for d, s, p, t, src in
            zip(table["detector"], table["split"], table["perturbation"], values, sources)}


def _row_ap_from(table: "pd.DataFrame | None") -> dict[tuple[str, str, str], str]:
    """What each metrics row's AP and AUC ranked (the ``ap_from`` column; older runs: the logit)."""
    if table is None or "ap_from" not in table:
        return {}
    return {(d, s, p): str(a) if str(a) in ("logit", "sigmoid32") else "logit"
            for d, s, p, a in zip(table["detector"], table["split"], table["perturbation"], table["ap_from"])}


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
