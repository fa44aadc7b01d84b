"""Operating points: the threshold each metrics row uses, and the calibration of P(fake).

Thresholds are on the raw logit of ``scores.csv`` (predict fake when ``logit > threshold``), so every
accuracy column can be recomputed from the scores alone. Policies (``--threshold``):

- ``fixed``: P(fake) > 0.5, i.e. logit 0, as every detector is published (with ``--calibrate``: the
  calibrated P(fake) > 0.5);
- ``val``: per detector, the threshold that maximises balanced accuracy on its validation scores;
  ``val-fpr:0.05``: the lowest threshold whose false-positive rate on the validation reals is <= 5%;
- ``oracle``: per row, the threshold that maximises balanced accuracy on the test split itself. It
  uses the test labels, so it is a labelled diagnostic (what the best threshold could reach), never a result.

Calibration (``--calibrate temperature|platt``) is an increasing affine map of the logit fitted on the
validation split by minimising the cross-entropy: temperature scaling ``z / T`` (Guo et al., ICML 2017)
or Platt scaling ``a z + b`` with ``a >= 0`` (so it never reverses a detector's ranking), both against
Platt's soft targets, so a perfectly separated validation split does not send the scale to infinity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..api.errors import SidbenchError

if TYPE_CHECKING:
    import pandas as pd

POLICIES = ("fixed", "val", "oracle")
CALIBRATIONS = ("temperature", "platt")
FPR_TARGETS = (0.01, 0.05)  # always reported (metrics.csv columns tpr_fpr01, tpr_fpr05)
VAL_HINT = "give validation images with --val PATH (a folder with 0_real/ and 1_fake/)"


@dataclass(frozen=True)
class ThresholdPolicy:
    """A parsed ``--threshold``: ``kind`` is fixed, val or oracle; ``fpr`` the target of ``val-fpr:X``."""

    kind: str = "fixed"
    fpr: float | None = None

    @property
    def needs_val(self) -> bool:
        return self.kind == "val"

    def __str__(self) -> str:
        return f"val-fpr:{self.fpr:g}" if self.fpr is not None else self.kind


def parse_threshold(text: str | None) -> ThresholdPolicy:
    """``fixed`` | ``val`` | ``oracle`` | ``val-fpr:X`` (0 < X < 1); anything else is a one-line error."""
    text = (text or "fixed").strip()
    if text in POLICIES:
        return ThresholdPolicy(text)
    if text.startswith("val-fpr:"):
        try:
            target = float(text.split(":", 1)[1])
        except ValueError:
            target = math.nan
        if 0 < target < 1:
            return ThresholdPolicy("val", target)
    raise SidbenchError(f"--threshold {text}: choose fixed, val, oracle or val-fpr:X with 0 < X < 1 (e.g. val-fpr:0.05)")


def fpr_targets(extra: Sequence[float] = ()) -> tuple[float, ...]:
    """The false-positive rates at which TPR is reported: 1% and 5% always, plus ``extra``, ascending."""
    bad = [t for t in extra if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < 1]
    if bad:
        raise SidbenchError(f"fpr-targets: {bad[0]!r} is not a false-positive rate; give fractions in (0, 1), e.g. 0.001,0.1")
    return tuple(sorted({*FPR_TARGETS, *(float(t) for t in extra)}))


# -- calibration -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Calibration:
    """``calibrated logit = scale * logit + bias`` (temperature: scale = 1 / T, bias = 0)."""

    method: str
    scale: float = 1.0
    bias: float = 0.0

    def apply(self, logits: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(logits, dtype=np.float64) + self.bias

    def half_threshold(self) -> float:
        """The raw logit where the calibrated P(fake) is 0.5 (the fixed threshold after calibration)."""
        if self.scale > 0:
            return -self.bias / self.scale
        return math.inf if self.bias <= 0 else -math.inf  # a constant P(fake): one class everywhere

    def describe(self) -> dict[str, float]:
        out = {"scale": self.scale, "bias": self.bias}
        if self.method == "temperature":
            out["temperature"] = 1 / self.scale if self.scale > 0 else math.inf
        return out


def nll_terms(labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Per-image binary cross-entropy from the logit, without overflow: log(1 + exp(-z)) for fakes,
    log(1 + exp(z)) for reals."""
    sign = 1.0 - 2.0 * np.asarray(labels, dtype=np.float64)  # -1 fake, +1 real
    return np.logaddexp(0.0, sign * np.asarray(logits, dtype=np.float64))


def p_fake(logits: np.ndarray) -> np.ndarray:
    """sigmoid(logit) = P(fake) of an array of logits, without overflow."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(logits, dtype=np.float64)))


def platt_targets(labels: np.ndarray) -> np.ndarray:
    """Platt's (1999) soft targets: (N+ + 1) / (N+ + 2) for fakes, 1 / (N- + 2) for reals, so a validation
    split the detector separates perfectly still gives a finite scale."""
    y = np.asarray(labels, dtype=np.float64)
    n_fake, n_real = y.sum(), len(y) - y.sum()
    return np.where(y == 1, (n_fake + 1) / (n_fake + 2), 1 / (n_real + 2))


def fit_calibration(method: str, labels: Sequence[int], logits: Sequence[float]) -> Calibration:
    """Fit ``method`` (temperature or platt) on validation scores: minimise the mean cross-entropy of the
    calibrated P(fake) against Platt's soft targets (:func:`platt_targets`)."""
    from scipy.optimize import minimize

    if method not in CALIBRATIONS:
        raise SidbenchError(f"--calibrate {method}: choose temperature or platt")
    target = platt_targets(np.asarray(labels))
    z = np.asarray(logits, dtype=np.float64)
    platt = method == "platt"

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        zc = params[0] * z + (params[1] if platt else 0.0)
        value = np.mean(target * np.logaddexp(0.0, -zc) + (1 - target) * np.logaddexp(0.0, zc))
        residual = p_fake(zc) - target  # d(loss)/d(zc)
        grad = [np.mean(residual * z)] + ([np.mean(residual)] if platt else [])
        return float(value), np.array(grad, dtype=np.float64)

    start = np.array([1.0, 0.0] if platt else [1.0])
    bounds = [(0.0, None), (None, None)] if platt else [(0.0, None)]
    res = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 2000})
    return Calibration(method, float(res.x[0]), float(res.x[1]) if platt else 0.0)


# -- thresholds --------------------------------------------------------------------------------

def threshold_candidates(logits: Sequence[float]) -> np.ndarray:
    """Every distinct cut of these scores, as a threshold on the logit, ascending: one below all
    (all fake), one between each pair of neighbouring values, the largest value (all real), and 0."""
    v = np.unique(np.asarray(logits, dtype=np.float64))
    if not len(v):
        return np.zeros(1)
    mid = v[:-1] / 2 + v[1:] / 2
    mid = np.where((mid >= v[:-1]) & (mid < v[1:]), mid, v[:-1])  # neighbours one float apart
    return np.unique(np.concatenate([[np.nextafter(v[0], -np.inf)], mid, v[-1:], [0.0]]))


def balanced_accuracy_at(labels: np.ndarray, logits: np.ndarray, thresholds: np.ndarray,
                         weights: np.ndarray | None = None) -> np.ndarray:
    """[B, C] balanced accuracy of ``logit > t`` for each threshold t and each row of ``weights`` [B, n]
    (sample weights; None: one row of ones)."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(logits, dtype=np.float64)
    w = np.ones((1, len(s))) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order = np.argsort(s, kind="stable")
    pos = np.searchsorted(s[order], thresholds, side="right")  # images at or below each threshold
    ws = w[:, order]
    cum_fake = np.concatenate([np.zeros((len(w), 1)), np.cumsum(ws * y[order], axis=1)], axis=1)
    cum_real = np.concatenate([np.zeros((len(w), 1)), np.cumsum(ws * ~y[order], axis=1)], axis=1)
    w_fake, w_real = cum_fake[:, -1:], cum_real[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = (w_fake - cum_fake[:, pos]) / w_fake
        tnr = cum_real[:, pos] / w_real
    return (tpr + tnr) / 2


def pick_threshold(thresholds: np.ndarray, balanced: np.ndarray) -> np.ndarray:
    """Per row of ``balanced`` [B, C], the index of the best threshold; ties go to the one closest to 0,
    so the published threshold is kept unless another is strictly better."""
    best = np.nanmax(balanced, axis=1, keepdims=True)
    tied = balanced >= best - 1e-12
    return np.where(tied, np.abs(thresholds)[None, :], np.inf).argmin(axis=1)


def best_balanced_threshold(labels: Sequence[int], logits: Sequence[float]) -> float:
    """The threshold on the logit with the highest balanced accuracy on these scores."""
    y, s = np.asarray(labels), np.asarray(logits, dtype=np.float64)
    cands = threshold_candidates(s)
    return float(cands[pick_threshold(cands, balanced_accuracy_at(y, s, cands))[0]])


def fpr_threshold(labels: Sequence[int], logits: Sequence[float], target: float) -> float:
    """The lowest threshold whose false-positive rate on the reals (``logit > t``) is at most ``target``."""
    reals = np.sort(np.asarray(logits, dtype=np.float64)[np.asarray(labels) == 0])
    allowed = int(math.floor(target * len(reals) + 1e-9))  # reals that may score above the threshold
    if allowed >= len(reals):
        return float(np.nextafter(reals[0], -np.inf))
    return float(reals[len(reals) - 1 - allowed])


# -- one run's operating points ------------------------------------------------------------------

@dataclass
class OperatingPoints:
    """How a run turns scores into metrics rows: the threshold policy, the per-detector thresholds chosen
    on validation, the per-detector calibrations, and the FPR targets of the TPR columns."""

    policy: ThresholdPolicy = field(default_factory=ThresholdPolicy)
    thresholds: dict[str, float] = field(default_factory=dict)  # detector -> threshold (val policies)
    calibration: dict[str, Calibration] = field(default_factory=dict)
    fpr_targets: tuple[float, ...] = FPR_TARGETS
    ap_from: str = "logit"  # what AP and ROC-AUC rank: logit or sigmoid32 (sidbench.results.metrics.AP_FROM)

    def calibrated(self, detector: str, logits: np.ndarray) -> np.ndarray:
        """The logits the probability metrics (ECE, Brier, NLL) use."""
        cal = self.calibration.get(detector)
        return cal.apply(logits) if cal is not None else np.asarray(logits, dtype=np.float64)

    def threshold(self, detector: str, labels: np.ndarray, logits: np.ndarray) -> tuple[float, str]:
        """(threshold on the raw logit, its source) for one row's scores."""
        one_class = not (np.any(labels == 0) and np.any(labels == 1))
        if self.policy.kind == "oracle" and not one_class:  # one class has no balanced accuracy: the fixed threshold
            return best_balanced_threshold(labels, logits), "oracle"
        if self.policy.kind == "val":
            return self.thresholds[detector], "val"
        cal = self.calibration.get(detector)
        return (cal.half_threshold() if cal is not None else 0.0), "fixed"

    def summary(self) -> str:
        """One phrase for leaderboard headers: which threshold the accuracy columns use."""
        cal = f", P(fake) calibrated by {self.method} scaling on validation" if self.calibration else ""
        if self.ap_from == "sigmoid32":
            cal += ("; AP and ROC-AUC on float32 sigmoids (--ap-from sigmoid32: saturated logits tie, "
                    "as in the reference scripts)")
        if self.policy.kind == "oracle":
            return ("ORACLE thresholds: accuracies at the best threshold on each test split's own labels, "
                    f"a diagnostic, not a result{cal}")
        if self.policy.kind == "val":
            how = f"FPR <= {self.policy.fpr:g} on its validation reals" if self.policy.fpr is not None else \
                "max balanced accuracy on its validation split"
            return f"accuracy at a threshold chosen per detector ({how}; metrics.csv `threshold`){cal}"
        return f"accuracy at threshold 0.5 on P(fake){cal}"

    @property
    def method(self) -> str | None:
        return next(iter(self.calibration.values())).method if self.calibration else None

    def describe(self) -> dict[str, Any]:
        """run.json's ``operating_points``."""
        criterion = {"fixed": "P(fake) > 0.5" + (" (calibrated)" if self.calibration else ""),
                     "oracle": "max balanced accuracy on each test split (uses test labels: a diagnostic)",
                     "val": (f"lowest threshold with FPR <= {self.policy.fpr:g} on the validation reals"
                             if self.policy.fpr is not None else "max balanced accuracy on the validation split")}
        method = self.method
        return {"threshold": str(self.policy), "criterion": criterion[self.policy.kind], "ap_from": self.ap_from,
                "thresholds": dict(self.thresholds), "fpr_targets": list(self.fpr_targets),
                "calibration": {"method": method, "fitted_on": "val" if method else None,
                                "detectors": {d: c.describe() for d, c in self.calibration.items()}}}


def operating_points(policy: ThresholdPolicy, calibrate: str | None, detectors: Sequence[str],
                     val_scores: "pd.DataFrame | None", extra_fpr: Sequence[float] = (),
                     ap_from: str = "logit") -> OperatingPoints:
    """Fit each detector's calibration and validation threshold on its clean validation scores."""
    op = OperatingPoints(policy, fpr_targets=fpr_targets(extra_fpr), ap_from=ap_from)
    if not policy.needs_val and not calibrate:
        return op
    for det in detectors:
        y, z = _val_of(det, val_scores, policy, calibrate)
        if calibrate:
            op.calibration[det] = fit_calibration(calibrate, y, z)
        if policy.needs_val:
            op.thresholds[det] = fpr_threshold(y, z, policy.fpr) if policy.fpr is not None else best_balanced_threshold(y, z)
    return op


def _val_of(det: str, val_scores: "pd.DataFrame | None", policy: ThresholdPolicy, calibrate: str | None):
    what = f"--threshold {policy}" if policy.needs_val else f"--calibrate {calibrate}"
    if val_scores is None or not len(val_scores):
        raise SidbenchError(f"{what} needs validation scores: {VAL_HINT}")
    rows = val_scores[(val_scores["detector"] == det) & (val_scores["perturbation"] == "none")]
    y, z = rows["label"].to_numpy(dtype=int), rows["logit"].to_numpy(dtype=np.float64)
    need_both = calibrate or policy.fpr is None
    if not (y == 0).any() or (need_both and not (y == 1).any()):
        missing = "real" if not (y == 0).any() else "fake"
        raise SidbenchError(f"{what}: detector {det!r} has no {missing} validation images scored; {VAL_HINT}")
    return y, z
