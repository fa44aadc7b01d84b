"""A split with one class (real-only: the false-positive check; fake-only) keeps its accuracy and FPR at the
threshold, has no AP/AUC, stays out of every mean, and the leaderboard says so in one line."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import write_image


def scores_table() -> pd.DataFrame:
    """Detector d: a two-class split 'both', a real-only split 'reals' and a fake-only split 'fakes'."""
    rows = []
    for split, labels, logits in (("both", [0, 0, 1, 1], [-2.0, 0.5, 1.0, 3.0]),
                                  ("reals", [0, 0, 0, 0], [-1.0, 2.0, -3.0, -0.5]),
                                  ("fakes", [1, 1, 1], [1.0, -1.0, 4.0])):
        for i, (y, z) in enumerate(zip(labels, logits)):
            rows.append({"detector": "d", "split": split, "group": "g", "perturbation": "none",
                         "path": f"{split}/{i}.png", "label": y, "logit": z})
    return pd.DataFrame(rows)


def test_one_class_rows_keep_accuracy_and_fpr_and_stay_out_of_the_means():
    from sidbench.results.metrics import metrics_table, one_class_note

    table = metrics_table(scores_table()).set_index("split")
    reals, fakes, both = table.loc["reals"], table.loc["fakes"], table.loc["both"]
    assert reals["acc"] == 0.75 and reals["fpr"] == 0.25 and np.isnan(reals["ap"]) and np.isnan(reals["auc"])
    assert fakes["acc"] == pytest.approx(2 / 3) and np.isnan(fakes["fpr"]) and np.isnan(fakes["ap"])
    assert both["fpr"] == 0.5 and both["acc"] == 0.75
    for mean in ("mean:g", "mean:all"):  # only the two-class split is averaged
        row = table.loc[mean]
        assert row["acc"] == both["acc"] and row["ap"] == both["ap"] and row["fpr"] == both["fpr"]
    note = one_class_note(metrics_table(scores_table()))
    assert note.count("\n") == 0 and "real-only: reals" in note and "fake-only: fakes" in note
    assert "left out of every mean" in note
    assert one_class_note(metrics_table(scores_table()[lambda d: d.split == "both"])) is None


def test_oracle_policy_keeps_the_fixed_threshold_on_one_class_splits():
    """The oracle maximises balanced accuracy, which one class does not have: calling every real real would
    be its trivial answer, so a one-class row keeps the published threshold and says so."""
    from sidbench.results.metrics import metrics_table
    from sidbench.results.operating import OperatingPoints, ThresholdPolicy

    table = metrics_table(scores_table(), OperatingPoints(ThresholdPolicy("oracle"))).set_index("split")
    assert table.loc["reals", "threshold"] == 0.0 and table.loc["reals", "threshold_source"] == "fixed"
    assert table.loc["reals", "fpr"] == 0.25
    assert table.loc["both", "threshold_source"] == "oracle"


def test_bootstrap_means_leave_one_class_splits_out():
    from sidbench.reports.bootstrap import bootstrap_intervals

    scores = scores_table()
    ci = bootstrap_intervals(scores, 50, ["acc"])
    only_both = bootstrap_intervals(scores[scores.split == "both"], 50, ["acc"])
    pick = lambda df: df[df.split == "mean:all"][["lo", "hi"]].to_numpy()  # noqa: E731
    assert np.allclose(pick(ci), pick(only_both))


def run_cli(*args: str) -> int:
    from sidbench.cli import main

    return main(["run", "--backbone", "clip-tiny", "--no-progress", "--detectors", "clip_zeroshot", *args])


def test_data_on_a_real_only_folder_exits_0_with_fpr_and_one_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(5):
        write_image(tmp_path / "photos" / "0_real" / f"{i}.png", rng, (40, 40))
    out = tmp_path / "out"
    assert run_cli("--data", str(tmp_path / "photos"), "--out", str(out)) == 0
    metrics = pd.read_csv(out / "metrics.csv")
    row = metrics[metrics.split == "photos"].iloc[0]
    assert row["n_real"] == 5 and row["n_fake"] == 0 and np.isnan(row["ap"])
    scores = pd.read_csv(out / "scores.csv")
    assert row["fpr"] == pytest.approx((scores["logit"] > 0).mean()) and row["acc"] == pytest.approx(1 - row["fpr"])
    assert not metrics.split.str.startswith("mean:").any()  # nothing to average
    board = (out / "leaderboard.md").read_text()
    notes = [line for line in board.splitlines() if "one-class" in line]
    assert len(notes) == 1 and "real-only: photos" in notes[0] and "AP/AUC undefined" in notes[0]
    assert "False-positive rate" in board and "Average precision" not in board  # no table of dashes
    assert "one-class" in capsys.readouterr().out

    from sidbench.cli import main

    assert main(["report", str(out), "--format", "md"]) == 0  # a report of one-class splits only works too
    assert "real-only: photos" in capsys.readouterr().out
    assert main(["report", str(out), "--out", str(tmp_path / "html")]) == 0
    page = (tmp_path / "html" / "index.html").read_text()
    assert "real-only: photos" in page and "older sidbench" not in page
