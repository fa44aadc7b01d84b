"""Significance: DeLong's AUC test against a brute-force computation of the paper's formulas, the paired
bootstrap's marks in the report, and ``sidbench report --compare A,B``."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from sidbench.reports.significance import delong_components, delong_test, difference_summary


def brute_delong(labels, a, b):
    """DeLong et al. (1988), written out: psi over every (fake, real) pair, structural components V10, V01,
    their covariance matrices S10, S01 (ddof 1), S = S10/m + S01/n, z = (A_a - A_b) / sqrt(var of the difference)."""
    y = np.asarray(labels).astype(bool)
    comps = []
    for s in (a, b):
        x, r = s[y], s[~y]
        psi = (x[:, None] > r[None, :]) + 0.5 * (x[:, None] == r[None, :])
        comps.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    m, n = y.sum(), (~y).sum()
    s10 = np.array([[np.sum((ci[1] - ci[0]) * (cj[1] - cj[0])) / (m - 1) for cj in comps] for ci in comps])
    s01 = np.array([[np.sum((ci[2] - ci[0]) * (cj[2] - cj[0])) / (n - 1) for cj in comps] for ci in comps])
    s = s10 / m + s01 / n
    z = (comps[0][0] - comps[1][0]) / math.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])
    return comps[0][0], comps[1][0], z


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_matches_the_papers_formula(seed):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(37), np.ones(23)]
    a = labels * 1.0 + rng.normal(size=60)
    b = np.round(0.6 * a + rng.normal(size=60), 1)  # correlated with a, and with ties
    auc_a, auc_b, z = brute_delong(labels, a, b)
    res = delong_test(labels, a, b)
    assert res.auc_a == pytest.approx(roc_auc_score(labels, a), abs=1e-12)
    assert res.auc_b == pytest.approx(roc_auc_score(labels, b), abs=1e-12)
    assert (res.auc_a, res.auc_b, res.z) == pytest.approx((auc_a, auc_b, z), abs=1e-10)
    assert res.p == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), abs=1e-12)
    assert delong_components(labels, a)[0] == pytest.approx(auc_a)


def test_difference_summary():
    lo, hi, p = difference_summary(np.linspace(0.01, 0.2, 1000))
    assert lo > 0 and hi < 0.2 and p == 0.0
    lo, hi, p = difference_summary(np.linspace(-0.1, 0.1, 1001))
    assert lo < 0 < hi and p == pytest.approx(1.0, abs=0.01)


def _scores(n=60, seed=0):
    """Scores of three detectors on two splits: 'good' separates the classes, 'same' is 'good' plus a
    tiny noise (no real difference), 'poor' is nearly random."""
    rng = np.random.default_rng(seed)
    rows = []
    for split in ("gan_a", "diff_a"):
        labels = np.r_[np.zeros(n // 2), np.ones(n // 2)].astype(int)
        good = (labels * 2 - 1) * 1.5 + rng.normal(size=n)
        for det, logit in (("good", good), ("same", good + rng.normal(scale=0.01, size=n)),
                           ("poor", 0.2 * (labels * 2 - 1) + rng.normal(size=n))):
            for i in range(n):
                rows.append(dict(path=f"/d/{split}/{i}.png", label=labels[i], split=split, generator=split,
                                 group=split.split("_")[0], detector=det, perturbation="none", logit=logit[i],
                                 prob=1 / (1 + math.exp(-logit[i])), skipped=""))
    return pd.DataFrame(rows)


def test_report_marks_and_compare(tmp_path, capsys):
    from sidbench.reports.bootstrap import replicates
    from sidbench.reports.significance import significance_marks
    from sidbench.results.leaderboard import leaderboard
    from sidbench.results.metrics import metrics_table

    scores = _scores()
    metrics = metrics_table(scores)
    per_split = metrics[~metrics["split"].str.startswith("mean:")]
    reps, paired = replicates(scores, 400, ["acc", "auc"], seed=0, thresholds=per_split)
    assert ("gan_a", "none") in paired and ("mean:all", "none") in paired
    # the same resamples for every detector: 'same' differs from 'good' by noise only
    board = leaderboard(metrics, "auc")
    marks = significance_marks(reps, paired, board.values, "auc", "none")
    assert not marks.to_numpy().any()  # good and same are tied beyond noise: nobody marked
    two = board.values.loc[["good", "poor"]]
    marks = significance_marks(reps, paired, two, "auc", "none")
    assert marks.loc["good"].all() and not marks.loc["poor"].any()  # good beats poor in every column and the means
    diff = reps[("good", "gan_a", "none")]["auc"] - reps[("poor", "gan_a", "none")]["auc"]
    assert difference_summary(diff)[0] > 0


def test_cli_compare_and_marked_report(tmp_path, capsys):
    """End to end through a results folder written as `sidbench run` writes it."""
    from sidbench.cli import main
    from sidbench.results.metrics import metrics_table

    scores = _scores()
    out = tmp_path / "run"
    out.mkdir()
    scores.to_csv(out / "scores.csv", index=False)
    metrics_table(scores).to_csv(out / "metrics.csv", index=False)
    rc = main(["report", str(out), "--format", "md", "--metric", "acc,auc", "--bootstrap", "300"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "\\*" in text and "beyond noise" in text  # the mark and its legend
    rc = main(["report", str(out), "--compare", "good,poor", "--metric", "acc", "--bootstrap", "300"])
    text = capsys.readouterr().out
    assert rc == 0
    lines = [l for l in text.splitlines() if l.startswith("none")]
    auc = [l for l in lines if " auc " in f" {l} " and "gan_a" in l]
    assert auc and auc[0].rstrip().endswith("yes")
    assert any("mean:all" in l for l in lines)
    rc = main(["report", str(out), "--compare", "good,nosuch"])
    assert rc == 2 and "no detector 'nosuch'" in capsys.readouterr().err
