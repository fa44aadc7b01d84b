"""Operating points: every new metric, threshold policy and calibration against computations written
here from scikit-learn, scipy and numpy (not the library's own helpers), on arrays and on real runs."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq, minimize_scalar
from scipy.special import expit, log_expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, brier_score_loss, f1_score, log_loss, roc_curve

from sidbench.api.errors import SidbenchError
from sidbench.results.metrics import binary_metrics, metrics_table, tpr_name, tpr_target
from sidbench.results.operating import (Calibration, OperatingPoints, ThresholdPolicy, best_balanced_threshold,
                                        fit_calibration, fpr_threshold, parse_threshold)

PLUGIN_DIR = str(Path(__file__).parent / "plugins")
NEW = ("bal_acc", "eer", "tpr_fpr01", "tpr_fpr05", "ece", "brier", "nll")


# -- independent computations --------------------------------------------------------------------

def sigmoid(z):
    return 1 / (1 + np.exp(-np.asarray(z, float)))


def ref_eer(y, s):
    """The usual EER: where 1 - x meets the interpolated ROC curve (brentq on scikit-learn's roc_curve)."""
    fpr, tpr, _ = roc_curve(y, s)
    return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)


def ref_tpr_at(y, s, target):
    """Brute force: over every threshold `s >= t`, the best TPR whose FPR on the reals is <= target."""
    y, s = np.asarray(y), np.asarray(s, float)
    best = 0.0
    for t in np.unique(s):
        pred = s >= t
        if pred[y == 0].mean() <= target + 1e-12:
            best = max(best, pred[y == 1].mean())
    return best


def ref_ece(y, p):
    counts, _ = np.histogram(p, bins=15, range=(0, 1))
    fakes, _ = np.histogram(p, bins=15, range=(0, 1), weights=y)
    probs, _ = np.histogram(p, bins=15, range=(0, 1), weights=p)
    share = counts / counts.sum()
    with np.errstate(invalid="ignore"):
        gap = np.abs(fakes / counts - probs / counts)
    return float(np.nansum(share * gap))


def ref_nll(y, z):
    """Mean cross-entropy from the logit with scipy's log-sigmoid (log_loss clips saturated probabilities)."""
    y, z = np.asarray(y), np.asarray(z, float)
    return float(-np.mean(np.where(y == 1, log_expit(z), log_expit(-z))))


def ref_row(y, s, threshold, z=None):
    """Every metric of one row: thresholded ones at `logit > threshold`, probability ones from the
    (calibrated) logits `z` (default: the logits)."""
    y, s = np.asarray(y), np.asarray(s, float)
    z = s if z is None else np.asarray(z, float)
    p = expit(z)
    pred = s > threshold
    return {"acc": accuracy_score(y, pred), "real_acc": (~pred[y == 0]).mean(), "fake_acc": pred[y == 1].mean(),
            "f1": f1_score(y, pred, zero_division=0), "bal_acc": balanced_accuracy_score(y, pred),
            "eer": ref_eer(y, s), "tpr_fpr01": ref_tpr_at(y, s, 0.01), "tpr_fpr05": ref_tpr_at(y, s, 0.05),
            "ece": ref_ece(y, p), "brier": brier_score_loss(y, p), "nll": ref_nll(y, z)}


def ref_best_balanced(y, s):
    """The best balanced accuracy over every cut of the scores (scikit-learn per candidate)."""
    v = np.unique(s)
    cuts = np.r_[v[0] - 1, (v[:-1] + v[1:]) / 2, v[-1] + 1]
    return max(balanced_accuracy_score(y, s > t) for t in cuts)


def scores_of(seed, n=400, sep=1.2, bias=0.0, round_to=None):
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n // 2, int), np.ones(n - n // 2, int)]
    s = rng.normal(y * sep + bias, 1.0)
    return y, (np.round(s, round_to) if round_to is not None else s)


# -- metrics on arrays -----------------------------------------------------------------------------

@pytest.mark.parametrize("seed,threshold", [(0, 0.0), (1, 0.37), (2, -0.8)])
def test_new_metrics_match_independent_computations(seed, threshold):
    y, s = scores_of(seed)
    m, ref = binary_metrics(y, s, threshold), ref_row(y, s, threshold)
    for k, v in ref.items():
        assert m[k] == pytest.approx(v, abs=1e-9), k


def test_eer_and_tpr_with_ties():
    y, s = scores_of(3, n=300, round_to=1)  # many tied scores: diagonal ROC segments
    m = binary_metrics(y, s)
    assert m["eer"] == pytest.approx(ref_eer(y, s), abs=1e-9)
    for t in (0.01, 0.05, 0.1):
        assert binary_metrics(y, s, fpr_targets=(t,))[tpr_name(t)] == pytest.approx(ref_tpr_at(y, s, t))


def test_perfect_separation_and_hand_values():
    m = binary_metrics([0, 0, 1, 1], [-2.0, -1.0, 1.0, 2.0])
    assert m["eer"] == 0.0 and m["tpr_fpr01"] == 1.0 and m["bal_acc"] == 1.0
    # 4 reals, 4 fakes, one real above every fake: FPR 25% buys TPR 100%; at 0% FPR TPR is 0
    m = binary_metrics([0, 0, 0, 0, 1, 1, 1, 1], [5, 0, -1, -2, 1, 2, 3, 4], fpr_targets=(0.01, 0.25))
    assert m["tpr_fpr01"] == 0.0 and m[tpr_name(0.25)] == 1.0


def test_nll_is_stable_where_probabilities_saturate():
    # P(fake) of logit 800 is 1.0 in float: a real scored there costs 800 nats, not inf (or log_loss's clip)
    m = binary_metrics([0, 1], [800.0, 800.0])
    assert m["nll"] == pytest.approx(800 / 2, rel=1e-12)
    y, s = scores_of(4, sep=3)  # no saturation here: scikit-learn's log_loss agrees
    assert binary_metrics(y, s)["nll"] == pytest.approx(log_loss(y, sigmoid(s)), rel=1e-10)
    y, s = np.r_[np.zeros(50), np.ones(50)], np.r_[np.linspace(-60, 40, 50), np.linspace(-40, 60, 50)]
    assert binary_metrics(y, s)["nll"] == pytest.approx(ref_nll(y, s), rel=1e-12)


def test_ece_of_a_calibrated_and_a_constant_predictor():
    rng = np.random.default_rng(5)
    z = rng.normal(0, 2, 200_000)
    y = (rng.random(len(z)) < sigmoid(z)).astype(int)  # labels drawn from P(fake): calibrated
    assert binary_metrics(y, z)["ece"] < 0.01
    # constant P = 0.5 on a 30/70 split: one bin, |0.7 - 0.5|
    assert binary_metrics([0] * 3 + [1] * 7, [0.0] * 10)["ece"] == pytest.approx(0.2)


def test_tpr_column_names_round_trip():
    assert [tpr_name(t) for t in (0.01, 0.05, 0.1, 0.001, 0.25)] == \
        ["tpr_fpr01", "tpr_fpr05", "tpr_fpr10", "tpr_fpr001", "tpr_fpr25"]
    assert all(tpr_target(tpr_name(t)) == t for t in (0.01, 0.05, 0.1, 0.001, 0.25))
    assert tpr_target("acc") is None


# -- thresholds -------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_val_threshold_maximises_balanced_accuracy(seed):
    y, s = scores_of(seed, n=120, bias=1.5, round_to=1 if seed % 2 else None)
    t = best_balanced_threshold(y, s)
    assert balanced_accuracy_score(y, s > t) == pytest.approx(ref_best_balanced(y, s), abs=1e-12)


def test_val_threshold_keeps_zero_when_it_is_as_good_and_moves_when_it_is_not():
    assert best_balanced_threshold([0, 0, 1, 1], [-2, -1, 1, 2]) == 0.0  # 0 separates: keep the published one
    t = best_balanced_threshold([0, 0, 1, 1], [1, 2, 3, 4])  # every score > 0: 0 calls all fake
    assert 2 <= t < 3


@pytest.mark.parametrize("target", [0.01, 0.05, 0.2])
def test_val_fpr_threshold_is_the_lowest_within_target(target):
    y, s = scores_of(7, n=400)
    t = fpr_threshold(y, s, target)
    reals = s[y == 0]
    assert (reals > t).mean() <= target + 1e-12
    below = np.nextafter(t, -np.inf)  # any lower threshold lets one more real through
    assert (reals > below).mean() > target
    # the TPR of that threshold is the reported TPR at that FPR
    assert (s[y == 1] > t).mean() == pytest.approx(ref_tpr_at(y, s, target))


def test_threshold_policies_parse_and_reject():
    assert parse_threshold("val") == ThresholdPolicy("val") and parse_threshold(None).kind == "fixed"
    assert parse_threshold("val-fpr:0.05") == ThresholdPolicy("val", 0.05)
    assert str(parse_threshold("val-fpr:0.05")) == "val-fpr:0.05"
    for bad in ("best", "val-fpr:5", "val-fpr:x", "oracle:1"):
        with pytest.raises(SidbenchError, match="choose fixed, val, oracle or val-fpr"):
            parse_threshold(bad)


def test_run_config_checks_the_new_keys():
    from sidbench.run.config import RunConfig, config_from

    with pytest.raises(SidbenchError, match="--calibrate isotonic: choose temperature or platt"):
        RunConfig(calibrate="isotonic")
    with pytest.raises(SidbenchError, match="--threshold best"):
        config_from({"threshold": "best"})
    with pytest.raises(SidbenchError, match="not a false-positive rate"):
        RunConfig(fpr_targets=[5])
    cfg = config_from({"threshold": "val-fpr:0.1", "calibrate": "platt", "fpr_targets": [0.001]})
    assert cfg.digest() == RunConfig().digest()  # they change metrics, not scores: same folder


# -- calibration -------------------------------------------------------------------------------------

def soft(y):
    """Platt's targets written out: (N+ + 1) / (N+ + 2) for fakes, 1 / (N- + 2) for reals."""
    y = np.asarray(y)
    return np.where(y == 1, (y.sum() + 1) / (y.sum() + 2), 1 / ((1 - y).sum() + 2))


def soft_log_loss(y, p):
    """Cross-entropy against the soft targets, as scikit-learn's weighted log loss of both labels."""
    t, n = soft(y), len(y)
    return log_loss(np.r_[np.ones(n), np.zeros(n)], np.r_[p, p], sample_weight=np.r_[t, 1 - t])


def soft_logistic_regression(y, z):
    t, n = soft(y), len(y)
    x = np.r_[z, z][:, None]
    return LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(
        x, np.r_[np.ones(n), np.zeros(n)], sample_weight=np.r_[t, 1 - t])


def test_temperature_minimises_the_validation_cross_entropy():
    y, s = scores_of(8, sep=1.0)
    z = 4.0 * s  # overconfident
    cal = fit_calibration("temperature", y, z)
    ref = minimize_scalar(lambda t: soft_log_loss(y, sigmoid(z / t)), bounds=(0.05, 50), method="bounded",
                          options={"xatol": 1e-10})
    assert cal.bias == 0.0 and 1 / cal.scale == pytest.approx(ref.x, rel=1e-4)
    assert 1 / cal.scale > 1  # overconfident logits are softened


def test_platt_is_logistic_regression_on_the_logit():
    y, s = scores_of(9, sep=1.5, bias=2.0)
    cal = fit_calibration("platt", y, s)
    lr = soft_logistic_regression(y, s)
    assert cal.scale == pytest.approx(lr.coef_[0, 0], rel=1e-4)
    assert cal.bias == pytest.approx(lr.intercept_[0], rel=1e-4, abs=1e-6)
    assert cal.half_threshold() == pytest.approx(-lr.intercept_[0] / lr.coef_[0, 0], rel=1e-4)


def test_calibration_stays_finite_on_a_separated_validation_split():
    y, s = np.array([0, 0, 0, 1, 1, 1]), np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    for method in ("temperature", "platt"):
        cal = fit_calibration(method, y, s)
        assert 0 < cal.scale < 10
        assert sigmoid(cal.apply(s)).max() < 0.9  # a fit to hard labels would drive this towards 1


def test_platt_never_reverses_the_ranking():
    y, s = scores_of(10, sep=-1.0)  # fakes score lower: worse than chance on validation
    cal = fit_calibration("platt", y, s)
    assert cal.scale == 0.0  # the constant P(fake) = share of fakes, not a flipped detector
    assert sigmoid(cal.bias) == pytest.approx(y.mean(), abs=1e-6) and math.isinf(cal.half_threshold())


# -- the metrics table -------------------------------------------------------------------------------

def table_scores(seed=0):
    rows = []
    for det, bias in (("a", 0.0), ("b", 1.0)):
        for split, group in (("s1", "gan"), ("s2", "gan"), ("s3", "diffusion")):
            y, s = scores_of(seed + int(split[1:]), n=60, bias=bias)  # hash(str) varies per process
            rows += [dict(detector=det, split=split, group=group, perturbation="none", label=int(a), logit=float(b))
                     for a, b in zip(y, s)]
    return pd.DataFrame(rows)


def test_metrics_table_uses_val_thresholds_and_calibration_and_means_them():
    scores = table_scores()
    op = OperatingPoints(ThresholdPolicy("val"), thresholds={"a": 0.25, "b": 1.1},
                         calibration={"a": Calibration("platt", 0.5, -0.2), "b": Calibration("temperature", 2.0)})
    table = metrics_table(scores, op)
    assert list(table.columns[:12]) == ["detector", "split", "group", "perturbation", "n_real", "n_fake", "acc",
                                        "real_acc", "fake_acc", "ap", "auc", "f1"]  # the stable columns first
    assert list(table.columns[12:]) == [*NEW, "fpr", "threshold", "threshold_source", "ap_from", "protocol"]
    for row in table[~table.split.str.startswith("mean:")].itertuples():
        df = scores[(scores.detector == row.detector) & (scores.split == row.split)]
        cal = op.calibration[row.detector]
        ref = ref_row(df.label, df.logit, op.thresholds[row.detector], cal.scale * df.logit + cal.bias)
        assert row.threshold == op.thresholds[row.detector] and row.threshold_source == "val"
        for k, v in ref.items():
            assert getattr(row, k) == pytest.approx(v, abs=1e-9), k
    t = table.set_index(["detector", "split"])
    for m in NEW:  # unweighted means over splits
        assert t.at[("a", "mean:gan"), m] == pytest.approx((t.at[("a", "s1"), m] + t.at[("a", "s2"), m]) / 2)
        assert t.at[("a", "mean:all"), m] == pytest.approx(t.loc[[("a", "s1"), ("a", "s2"), ("a", "s3")], m].mean())
    assert t.at[("b", "mean:all"), "threshold"] == 1.1 and t.at[("b", "mean:all"), "threshold_source"] == "val"


def test_fixed_threshold_after_calibration_is_half_calibrated_probability():
    scores = table_scores(1)
    op = OperatingPoints(calibration={"a": Calibration("platt", 2.0, -1.0)})
    row = metrics_table(scores, op).set_index(["detector", "split"]).loc[("a", "s1")]
    assert row["threshold"] == 0.5 and row["threshold_source"] == "fixed"  # 2 z - 1 > 0  <=>  z > 0.5
    assert metrics_table(scores).set_index(["detector", "split"]).loc[("a", "s1"), "threshold"] == 0.0


def test_oracle_rows_choose_on_each_split_and_are_labelled():
    scores = table_scores(2)
    table = metrics_table(scores, OperatingPoints(ThresholdPolicy("oracle")))
    assert set(table.threshold_source) == {"oracle"}
    for row in table[~table.split.str.startswith("mean:")].itertuples():
        df = scores[(scores.detector == row.detector) & (scores.split == row.split)]
        assert row.bal_acc == pytest.approx(ref_best_balanced(df.label.to_numpy(), df.logit.to_numpy()))
        assert row.acc == pytest.approx(accuracy_score(df.label, df.logit > row.threshold))
    assert table.set_index(["detector", "split"])["threshold"].loc[("a", "mean:all")] != \
        table.set_index(["detector", "split"])["threshold"].loc[("a", "mean:all")]  # NaN: one per split


def test_oracle_tables_are_separate_and_labelled():
    from sidbench.results.leaderboard import ORACLE_NOTE, leaderboard_markdown

    scores = table_scores(3)
    honest = metrics_table(scores[scores.detector == "a"])
    oracle = metrics_table(scores[scores.detector == "b"], OperatingPoints(ThresholdPolicy("oracle")))
    text = leaderboard_markdown(pd.concat([honest, oracle], ignore_index=True), ("acc", "ap"))
    titles = [ln for ln in text.splitlines() if ln.startswith("### ")]
    assert titles == ["### Accuracy (%), perturbation `none`", "### Average precision (%), perturbation `none`",
                      f"### Accuracy (%), perturbation `none` ({ORACLE_NOTE})"]
    sections = text.split("### ")
    assert "| a " in sections[1] and "| b " not in sections[1]  # the honest accuracy table has no oracle rows
    assert "| a " in sections[2] and "| b " in sections[2]  # AP does not depend on the threshold
    assert "| b " in sections[3] and "| a " not in sections[3]


def test_lower_is_better_metrics_sort_ascending_and_bold_the_lowest():
    from sidbench.results.leaderboard import leaderboard, to_markdown

    table = metrics_table(table_scores(4))
    board = leaderboard(table, "eer")
    assert list(board.values["mean:all"]) == sorted(board.values["mean:all"])
    best = board.best()
    for col in board.values.columns:
        assert best[col].idxmax() == board.values[col].idxmin()
    nll = to_markdown([leaderboard(table, "nll")])
    assert "### Negative log-likelihood, perturbation `none`" in nll and "(%)" not in nll.splitlines()[0]
    value = table.set_index(["detector", "split"]).at[("a", "s1"), "nll"]
    assert f"{value:.3f}" in nll


# -- bootstrap ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("oracle", [False, True])
def test_weighted_new_metrics_equal_metrics_of_the_resampled_images(oracle):
    """A resample's weights give the metrics of the images repeated that many times."""
    from sidbench.reports.bootstrap import stratified_counts, weighted_metrics

    rng = np.random.default_rng(11)
    y, s = scores_of(11, n=80)
    zc = 0.7 * s + 0.1
    w = stratified_counts(y, 4, rng)
    got = weighted_metrics(y, s, w, 0.3, zc, oracle)
    for b in range(4):
        k = w[b].astype(int)
        yr, sr, zr = np.repeat(y, k), np.repeat(s, k), np.repeat(zc, k)
        t = best_balanced_threshold(yr, sr) if oracle else 0.3
        ref = ref_row(yr, sr, t, zr)
        for m in NEW if not oracle else ("bal_acc", "eer", "ece", "nll"):
            assert got[m][b] == pytest.approx(ref[m], abs=1e-9), m


def test_bootstrap_intervals_cover_new_metrics_and_follow_row_thresholds():
    from sidbench.reports.bootstrap import bootstrap_intervals

    scores = table_scores(5)
    scores["path"] = [f"img{i}" for i in range(len(scores))]
    op = OperatingPoints(ThresholdPolicy("val"), thresholds={"a": 0.4, "b": 0.9})
    table = metrics_table(scores, op)
    ci = bootstrap_intervals(scores, 300, ("acc", *NEW), seed=0, thresholds=table)
    merged = ci.merge(table.melt(id_vars=["detector", "split", "perturbation"], value_vars=["acc", *NEW],
                                 var_name="metric", value_name="value"), on=["detector", "split", "perturbation", "metric"])
    assert len(merged) == 2 * 6 * 8  # detectors x (3 splits, 2 group means, mean:all) x metrics
    inside = (merged.lo <= merged.value + 1e-9) & (merged.value <= merged.hi + 1e-9)
    assert inside.mean() > 0.95  # the point estimate sits inside its own percentile interval
    # with threshold 0 instead, accuracy intervals move: the row's threshold is used
    ci0 = bootstrap_intervals(scores, 300, ("acc",), seed=0)
    assert not np.allclose(ci0.lo, ci[ci.metric == "acc"].lo.to_numpy())


# -- runs ------------------------------------------------------------------------------------------

def run_cli(*args: str) -> int:
    from sidbench.cli import main

    return main(["run", "--backbone", "clip-tiny", "--no-progress", *args])


@pytest.fixture
def val_folder(tmp_path) -> Path:
    from conftest import make_folder

    return make_folder(tmp_path / "val", splits=("v",), n=8, seed=1)


def check_against_scores(out: Path, thresholds: dict[str, float] | None = None):
    """Every row of metrics.csv agrees with a computation from scores.csv (and run.json's calibration)."""
    scores = pd.read_csv(out / "scores.csv")
    cal = json.loads((out / "run.json").read_text())["operating_points"]["calibration"]["detectors"]
    metrics = pd.read_csv(out / "metrics.csv", keep_default_na=False)
    rows = metrics[~metrics.split.str.startswith("mean:")]
    assert len(rows)
    for row in rows.itertuples():
        df = scores[(scores.detector == row.detector) & (scores.split == row.split) & (scores.perturbation == row.perturbation)]
        if thresholds is not None:
            assert row.threshold == thresholds[row.detector]
        a, b = (cal[row.detector]["scale"], cal[row.detector]["bias"]) if row.detector in cal else (1.0, 0.0)
        if row.detector in cal:
            np.testing.assert_allclose(df.prob_calibrated, expit(a * df.logit + b), rtol=1e-12)
        else:
            np.testing.assert_allclose(df.prob, expit(df.logit), rtol=1e-12)
        ref = ref_row(df.label, df.logit, float(row.threshold), a * df.logit + b)
        for k, v in ref.items():
            assert getattr(row, k) == pytest.approx(v, abs=1e-9), (row.detector, row.split, k)
    return metrics


def test_val_threshold_run_scores_val_through_the_engine(image_folder, val_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("--data", str(image_folder), "--val", str(val_folder), "--detectors", "clip_zeroshot",
                   "--out", str(out), "--threshold", "val") == 0
    printed = capsys.readouterr().out
    assert "threshold chosen per detector (max balanced accuracy on its validation split" in printed
    val = pd.read_csv(out / "val_scores.csv")
    assert len(val) == 16 and set(val.perturbation) == {"none"}
    # the same scores as scoring the validation folder as test data: one scoring path
    as_test = tmp_path / "as_test"
    assert run_cli("--data", str(val_folder), "--detectors", "clip_zeroshot", "--out", str(as_test)) == 0
    same = val.merge(pd.read_csv(as_test / "scores.csv"), on=["detector", "path"], suffixes=("", "_test"))
    assert len(same) == 16 and (same.logit == same.logit_test).all()
    # the threshold is the validation optimum, recorded in run.json and used by every row
    info = json.loads((out / "run.json").read_text())["operating_points"]
    t = info["thresholds"]["clip_zeroshot"]
    assert info["threshold"] == "val" and balanced_accuracy_score(val.label, val.logit > t) == \
        pytest.approx(ref_best_balanced(val.label.to_numpy(), val.logit.to_numpy()))
    metrics = check_against_scores(out, {"clip_zeroshot": t})
    assert set(metrics.threshold_source) == {"val"}
    assert "prob_calibrated" not in pd.read_csv(out / "scores.csv").columns


def test_oracle_rerun_reuses_scores_and_labels_rows(image_folder, val_folder, tmp_path, monkeypatch):
    from sidbench.backbones.clip import ClipBackbone

    out = tmp_path / "out"
    args = ("--data", str(image_folder), "--val", str(val_folder), "--detectors", "clip_zeroshot", "--out", str(out))
    assert run_cli(*args) == 0
    fixed = check_against_scores(out, {"clip_zeroshot": 0.0})
    assert set(fixed.threshold_source) == {"fixed"}
    before = (out / "scores.csv").read_text()
    calls = []
    monkeypatch.setattr(ClipBackbone, "_forward", lambda self, *a: calls.append(1))
    assert run_cli(*args, "--threshold", "oracle") == 0  # same folder: only the metrics change
    assert calls == [] and (out / "scores.csv").read_text() == before
    oracle = check_against_scores(out)
    assert set(oracle.threshold_source) == {"oracle"}
    scores = pd.read_csv(out / "scores.csv")
    for row in oracle[~oracle.split.str.startswith("mean:")].itertuples():
        df = scores[scores.split == row.split]
        assert row.bal_acc == pytest.approx(ref_best_balanced(df.label.to_numpy(), df.logit.to_numpy()))
    board = (out / "leaderboard.md").read_text()
    assert "ORACLE thresholds" in board.splitlines()[2]
    assert "### Accuracy (%), perturbation `none` (ORACLE threshold, chosen on the test labels" in board
    assert json.loads((out / "run.json").read_text())["operating_points"]["threshold"] == "oracle"


def test_threshold_val_without_val_is_one_line_naming_val(image_folder, tmp_path, capsys):
    for flags in (("--threshold", "val"), ("--calibrate", "temperature"), ("--threshold", "val-fpr:0.05")):
        code = run_cli("--data", str(image_folder), "--detectors", "clip_zeroshot", "--out", str(tmp_path / "o"), *flags)
        err = capsys.readouterr().err.strip()
        assert code == 2 and "--val PATH" in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "o" / "scores.csv").exists()  # refused before any work


def test_calibrated_checkpoint_detector_with_val_fpr(image_folder, val_folder, tmp_path):
    from conftest import make_folder

    train = make_folder(tmp_path / "train", splits=("t",), n=10, seed=5)
    first = tmp_path / "fit"
    assert run_cli("--plugins-dir", PLUGIN_DIR, "--data", str(image_folder), "--detectors", "lstsq_probe",
                   "--train", str(train), "--out", str(first)) == 0
    ckpt = first / "checkpoints" / "lstsq_probe.safetensors"
    out = tmp_path / "out"
    assert run_cli("--plugins-dir", PLUGIN_DIR, "--data", str(image_folder), "--val", str(val_folder),
                   "--detectors", f"lstsq_probe@{ckpt},clip_zeroshot", "--out", str(out), "--calibrate", "platt",
                   "--threshold", "val-fpr:0.25", "--fpr-targets", "0.25") == 0
    val = pd.read_csv(out / "val_scores.csv")
    assert sorted(val.detector.value_counts().items()) == [("clip_zeroshot", 16), ("lstsq_probe", 16)]
    info = json.loads((out / "run.json").read_text())["operating_points"]
    assert info["calibration"]["method"] == "platt" and info["calibration"]["fitted_on"] == "val"
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores.columns[-4:]) == ["logit", "prob", "prob_calibrated", "sha256"]
    for det, cal in info["calibration"]["detectors"].items():
        v = val[val.detector == det]
        a, b = cal["scale"], cal["bias"]
        if a > 0:  # where the fit is interior, it is logistic regression on the logit (Platt's targets)
            lr = soft_logistic_regression(v.label.to_numpy(), v.logit.to_numpy())
            assert (a, b) == pytest.approx((lr.coef_[0, 0], lr.intercept_[0]), rel=1e-3, abs=1e-4)
        s = scores[scores.detector == det]
        np.testing.assert_allclose(s.prob_calibrated, sigmoid(a * s.logit + b), rtol=1e-12)
        # FPR on the validation reals at most 25%, and the lowest such threshold
        t = info["thresholds"][det]
        reals = v.logit[v.label == 0].to_numpy()
        assert (reals > t).mean() <= 0.25 and (reals > np.nextafter(t, -np.inf)).mean() > 0.25
    metrics = check_against_scores(out, info["thresholds"])
    assert "tpr_fpr25" in metrics.columns and set(metrics.threshold_source) == {"val"}


def test_report_reads_the_new_columns(image_folder, val_folder, tmp_path, capsys):
    from sidbench.cli import main

    out = tmp_path / "out"
    assert run_cli("--data", str(image_folder), "--val", str(val_folder), "--detectors", "clip_zeroshot",
                   "--out", str(out), "--threshold", "oracle", "--calibrate", "temperature") == 0
    capsys.readouterr()
    assert main(["report", str(out), "--format", "md", "--metric", "acc,eer,tpr_fpr05,nll", "--bootstrap", "20"]) == 0
    text = capsys.readouterr().out
    assert "### Equal error rate (%)" in text and "### TPR at 5% FPR (%)" in text
    assert "### Accuracy (%), perturbation `none` (ORACLE threshold" in text
    assert main(["report", str(out), "--metric", "tpr_fpr25"]) == 2
    assert "unknown metric(s) tpr_fpr25 in these results" in capsys.readouterr().err
    assert main(["report", str(out), "--bootstrap", "20", "--metric", "acc,bal_acc"]) == 0
    page = (out / "report" / "index.html").read_text()
    assert "<h2>Operating points</h2>" in page and "figures/reliability.png" in page
    assert "<h2>Oracle thresholds (diagnostic)</h2>" in page and "oracle, temperature calibration" in page
