"""The report's figures, built from a merged results table with the reusable functions of ``plots``."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from . import plots
from ..results.leaderboard import METRIC_NAMES, PLAIN, metric_label, parse_perturbation, perturbation_order, split_columns
from ..results.metrics import ECE_BINS, THRESHOLDED, ece_bins, probability_metrics
from ..results.leaderboard import is_oracle
from ..results.operating import p_fake

if TYPE_CHECKING:
    import pandas as pd

    from .merge import Merged

# Families whose value is a quality (higher = milder); others grow more severe with the value,
# except resize, whose severity is the distance of the scale from 1.
QUALITY_FAMILIES = {"jpeg", "webp"}
FAMILY_AXIS = {"jpeg": "JPEG quality", "webp": "WebP quality", "blur": "Gaussian blur sigma",
               "resize": "resize scale", "noise": "noise sigma", "crop": "crop size"}


@dataclass
class FigureFile:
    """A saved figure: ``path`` relative to the report folder, with a caption."""

    section: str
    title: str
    path: str
    caption: str = ""


def split_frame(merged: "Merged", metric: str, perturbation: str = "none",
                intervals: "pd.DataFrame | None" = None) -> "pd.DataFrame":
    """Rows detector, split, value[, lo, hi] for one metric and perturbation, splits in table order."""
    df = merged.metrics[merged.metrics["perturbation"] == perturbation]
    if metric in THRESHOLDED:  # oracle-threshold rows are shown in their own tables only
        df = df[~is_oracle(df)]
    df = df[["detector", "split", metric]]
    df = df.rename(columns={metric: "value"})
    if intervals is not None and len(intervals):
        ci = intervals[(intervals["metric"] == metric) & (intervals["perturbation"] == perturbation)]
        df = df.merge(ci[["detector", "split", "lo", "hi"]], on=["detector", "split"], how="left")
    return df


def curve_frames(scores: "pd.DataFrame", perturbation: str = "none") -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """ROC (split, detector, fpr, tpr) and precision-recall (split, detector, recall, precision) points."""
    import pandas as pd
    from sklearn.metrics import precision_recall_curve, roc_curve

    roc, pr = [], []
    df = scores[scores["perturbation"] == perturbation]
    for (split, det), sdf in df.groupby(["split", "detector"], sort=False):
        y, s = sdf["label"].to_numpy(), sdf["logit"].to_numpy()
        if y.min() == y.max():
            continue
        fpr, tpr, _ = roc_curve(y, s)
        precision, recall, _ = precision_recall_curve(y, s)
        roc.append(pd.DataFrame({"split": split, "detector": det, "fpr": fpr, "tpr": tpr}))
        pr.append(pd.DataFrame({"split": split, "detector": det, "recall": recall[::-1], "precision": precision[::-1]}))
    empty = pd.DataFrame(columns=["split", "detector"])
    return (pd.concat(roc, ignore_index=True) if roc else empty), (pd.concat(pr, ignore_index=True) if pr else empty)


def severity_order(family: str, values: Sequence[float]) -> list[float]:
    """Values from the mildest to the most severe perturbation."""
    if family in QUALITY_FAMILIES:
        return sorted(values, reverse=True)
    if family == "resize":
        return sorted(values, key=lambda v: abs(math.log(v)) if v > 0 else math.inf)
    return sorted(values)


def robustness_frames(metrics: "pd.DataFrame", split: str = "mean:all") -> dict[str, "pd.DataFrame"]:
    """Per perturbation family with numeric values (jpeg40, blur1, resize0.5, ...): rows detector,
    level (``clean`` then values, mildest first), perturbation and the metric columns of ``split``."""
    import pandas as pd

    df = metrics[metrics["split"] == split]
    families: dict[str, dict[float, str]] = {}
    for name in perturbation_order(df["perturbation"]):
        family, value = parse_perturbation(name)
        if value is not None:
            families.setdefault(family, {})[value] = name
    out = {}
    for family, by_value in families.items():
        levels = [("clean", "none")] + [(f"{v:g}", by_value[v]) for v in severity_order(family, list(by_value))]
        parts = []
        for label, pert in levels:
            rows = df[df["perturbation"] == pert].copy()
            rows.insert(0, "level", label)
            parts.append(rows)
        out[family] = pd.concat(parts, ignore_index=True)
    return out


def real_fake_frame(merged: "Merged", perturbation: str = "none") -> "pd.DataFrame":
    """Rows detector, images (real/fake), accuracy: the ``mean:all`` accuracy on each class."""
    df = merged.metrics[(merged.metrics["split"] == "mean:all") & (merged.metrics["perturbation"] == perturbation)]
    df = df[~is_oracle(df)]
    long = df.melt(id_vars=["detector"], value_vars=["real_acc", "fake_acc"], var_name="images", value_name="accuracy")
    long["images"] = long["images"].map({"real_acc": "real", "fake_acc": "fake"})
    return long


def reliability_frame(scores: "pd.DataFrame", perturbation: str = "none") -> "pd.DataFrame":
    """Per detector, its clean test images pooled over splits in the 15 equal-width bins of P(fake) (the
    calibrated one where the run calibrated): rows detector, lo, hi, n, share, mean_prob, frac_fake, ece."""
    import numpy as np
    import pandas as pd

    edges = np.linspace(0, 1, ECE_BINS + 1)
    rows = []
    df = scores[scores["perturbation"] == perturbation]
    for det, sdf in df.groupby("detector", sort=False):
        z = sdf["logit_calibrated" if "logit_calibrated" in sdf else "logit"].to_numpy(dtype=float)
        p, y = p_fake(z), sdf["label"].to_numpy(dtype=float)
        bins = ece_bins(p)
        ece = probability_metrics(y, z)["ece"]
        for b in np.unique(bins):
            sel = bins == b
            rows.append((det, edges[b], edges[b + 1], int(sel.sum()), sel.mean(), p[sel].mean(), y[sel].mean(), ece))
    return pd.DataFrame(rows, columns=["detector", "lo", "hi", "n", "share", "mean_prob", "frac_fake", "ece"])


def report_figures(merged: "Merged", out: Path, metrics: Sequence[str],
                   intervals: "pd.DataFrame | None" = None) -> list[FigureFile]:
    """Draw and save every figure of the report under ``out/figures``."""
    detectors = merged.detectors
    colors = plots.palette(detectors)
    files: list[FigureFile] = []

    def save(fig, name: str, section: str, title: str, caption: str = "") -> None:
        plots.save_figure(fig, out / "figures" / name)
        files.append(FigureFile(section, title, f"figures/{name}", caption))

    cols = split_columns(merged.metrics[merged.metrics["perturbation"] == "none"])
    for m in metrics:
        label = metric_label(m)
        df = split_frame(merged, m, "none", intervals)
        if not df["value"].notna().any():  # e.g. accuracy when every row has an oracle threshold
            continue
        fig = plots.bar_plot(df, "split", "value", "detector", lo="lo" if "lo" in df else None,
                             hi="hi" if "hi" in df else None, order=cols, hue_order=detectors, colors=colors,
                             title=f"{label} per split (clean images)", xlabel="test split", ylabel=label,
                             percent=m not in PLAIN, ylim=None if m == "nll" else (0, 1))
        means = [i for i, c in enumerate(cols) if c.startswith("mean:")]
        if means and means[0] > 0:
            fig.axes[0].axvline(means[0] - 0.5, color="0.5", lw=0.8, ls="--")  # splits | means
        save(fig, f"bars_{m}.png", "Per split", f"{label} per split")
    if merged.has_scores:
        roc, pr = curve_frames(merged.scores)
        if len(roc):
            for kind, frame, title in (("roc", roc, "ROC curves"), ("pr", pr, "Precision-recall curves")):
                order = [c for c in cols if c in set(frame["split"])]
                fig = plots.curve_grid(frame, "split", "detector", kind, order=order, hue_order=detectors, colors=colors,
                                       title=f"{title} per split (clean images)")
                save(fig, f"{kind}.png", "Curves", title)
        rel = reliability_frame(merged.scores)
        if len(rel):
            eces = rel.groupby("detector")["ece"].first()
            fig = plots.reliability_grid(rel, "detector", order=[d for d in detectors if d in eces.index], colors=colors,
                                         titles={d: f"{d}\nECE {100 * e:.1f}%" for d, e in eces.items()},
                                         title="Reliability per detector (clean test images, pooled over splits)")
            save(fig, "reliability.png", "Calibration", "Reliability diagrams",
                 "15 equal-width bins of P(fake) (calibrated where the run calibrated); bars on the diagonal = "
                 "calibrated; ECE here pools all splits, metrics.csv's ece is per split")
    for family, df in robustness_frames(merged.metrics).items():
        fig, axes = plots.new_figure(11.5, 3.8, 1, 2)
        levels = list(dict.fromkeys(df["level"]))
        for ax, m in zip(axes, ("ap", "acc")):
            plots.line_plot(df if m == "ap" else df[~is_oracle(df)], "level", m, "detector", order=levels, hue_order=detectors, colors=colors,
                            title=f"{METRIC_NAMES[m]}, mean over splits", ylabel=METRIC_NAMES[m],
                            xlabel=FAMILY_AXIS.get(family, family), ax=ax)
        if axes[0].get_legend():
            axes[0].get_legend().remove()  # one legend, on the right panel
        save(fig, f"robustness_{family}.png", "Robustness", f"Robustness to {family}",
             "clean = no perturbation; levels run from mild to severe")
    df = real_fake_frame(merged)
    if len(df):
        fig = plots.bar_plot(df, "detector", "accuracy", "images", order=detectors, hue_order=["real", "fake"],
                             colors={"real": "#4c72b0", "fake": "#dd8452"}, xlabel="detector",
                             ylabel="accuracy", title="Real vs fake accuracy at the rows' thresholds (mean over splits)")
        save(fig, "real_vs_fake.png", "Calibration", "Real vs fake accuracy",
             "at each run's threshold (0.5 unless the run chose another); a large gap means the threshold is off")
    return files
