"""``--ap-from logit|sigmoid32``: AP and ROC-AUC on the logit (default) or, as the reference scripts compute them,
on float32 sigmoids where saturated logits tie; recorded in run.json and in every metrics row."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score


def saturated() -> tuple[np.ndarray, np.ndarray]:
    """Confident detector: many fakes and some reals above logit 17, where a float32 sigmoid is exactly 1.0."""
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(300), np.ones(300)].astype(int)
    return y, np.r_[rng.normal(8, 9, 300), rng.normal(24, 6, 300)]


def sigmoid32(z: np.ndarray) -> np.ndarray:
    """An independent float32 sigmoid (what ``model(x).sigmoid()`` gives in float32)."""
    return (1.0 / (1.0 + np.exp(-z.astype(np.float64)))).astype(np.float32)


def test_sigmoid32_equals_sklearn_on_float32_sigmoids_and_differs_from_logit_ranking():
    from sidbench.results.metrics import binary_metrics

    y, z = saturated()
    p = sigmoid32(z)
    assert (p == np.float32(1.0)).sum() > 100  # saturated: ties
    by_logit = binary_metrics(y, z)
    by_sigmoid = binary_metrics(y, z, ap_from="sigmoid32")
    assert by_sigmoid["ap"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert by_sigmoid["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert by_logit["ap"] == pytest.approx(average_precision_score(y, z), abs=1e-12)
    assert abs(by_logit["ap"] - by_sigmoid["ap"]) > 0.005 and abs(by_logit["auc"] - by_sigmoid["auc"]) > 0.001
    # only AP and AUC change: accuracies, EER and the probability metrics are the same
    for m in ("acc", "real_acc", "fake_acc", "eer", "tpr_fpr01", "ece", "nll"):
        assert by_logit[m] == by_sigmoid[m]


def test_unknown_ap_from_is_a_one_line_error():
    from sidbench.api.errors import SidbenchError
    from sidbench.run.config import RunConfig

    with pytest.raises(SidbenchError, match="--ap-from sigmoid16: choose logit or sigmoid32"):
        RunConfig(ap_from="sigmoid16")


def run_cli(*args: str) -> int:
    from sidbench.cli import main

    return main(["run", "--backbone", "clip-tiny", "--no-progress", "--detectors", "clip_zeroshot", *args])


def test_run_records_ap_from_in_run_json_and_every_metrics_row_and_reuses_scores(image_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("--data", str(image_folder), "--out", str(out)) == 0
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["ap_from"]) == {"logit"}
    assert json.loads((out / "run.json").read_text())["operating_points"]["ap_from"] == "logit"
    scores_before = (out / "scores.csv").read_bytes()

    assert run_cli("--data", str(image_folder), "--out", str(out), "--ap-from", "sigmoid32") == 0  # same folder
    assert (out / "scores.csv").read_bytes() == scores_before  # a metrics-only option: the scores are reused
    info = json.loads((out / "run.json").read_text())
    assert info["operating_points"]["ap_from"] == "sigmoid32" and info["config"]["ap_from"] == "sigmoid32"
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["ap_from"]) == {"sigmoid32"}  # per-split and mean rows
    scores = pd.read_csv(out / "scores.csv")
    for (split, pert), df in scores.groupby(["split", "perturbation"]):
        row = metrics[(metrics.split == split) & (metrics.perturbation == pert)].iloc[0]
        p = sigmoid32(df["logit"].to_numpy())
        assert row["ap"] == pytest.approx(average_precision_score(df["label"], p), abs=1e-12)
        assert row["auc"] == pytest.approx(roc_auc_score(df["label"], p), abs=1e-12)
    assert "float32 sigmoids" in (out / "leaderboard.md").read_text()


def test_bootstrap_uses_the_rows_convention():
    """With unit weights the bootstrap's AP/AUC under sigmoid32 are sklearn's on float32 sigmoids; a metrics row
    marked sigmoid32 makes the intervals resample that convention."""
    from sidbench.reports.bootstrap import bootstrap_intervals, weighted_metrics

    y, z = saturated()
    p = sigmoid32(z)
    ones = np.ones((1, len(y)))
    m = weighted_metrics(y, z, ones, ap_from="sigmoid32")
    assert m["ap"][0] == pytest.approx(average_precision_score(y, p), abs=1e-9)
    assert m["auc"][0] == pytest.approx(roc_auc_score(y, p), abs=1e-9)
    assert m["eer"][0] == weighted_metrics(y, z, ones)["eer"][0]  # EER stays on the logit
    scores = pd.DataFrame({"detector": "d", "split": "s", "group": "g", "perturbation": "none",
                           "path": [f"{i:04d}" for i in range(len(y))], "label": y, "logit": z})
    table = pd.DataFrame({"detector": ["d"], "split": ["s"], "perturbation": ["none"], "threshold": [0.0],
                          "threshold_source": ["fixed"], "ap_from": ["sigmoid32"]})
    sig = bootstrap_intervals(scores, 200, ["ap"], thresholds=table)
    logit = bootstrap_intervals(scores, 200, ["ap"], thresholds=table.assign(ap_from="logit"))
    sig, logit = sig[sig.split == "s"].iloc[0], logit[logit.split == "s"].iloc[0]
    ap_sig, ap_logit = average_precision_score(y, p), average_precision_score(y, z)
    assert sig.lo <= ap_sig <= sig.hi and logit.lo <= ap_logit <= logit.hi
    assert sig.lo + sig.hi < logit.lo + logit.hi  # the saturated convention's interval sits lower
