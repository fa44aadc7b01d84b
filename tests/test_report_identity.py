"""``sidbench report A B`` keys rows by (detector, model identity, threshold policy, calibration): two models
sharing a name are two labelled rows, never averaged, and every merged table names each row's operating point."""
from __future__ import annotations

import hashlib
import io
import json

import pandas as pd
import pytest
from conftest import make_folder
from test_report import make_results

from sidbench.cli import main


def report_csv(args, capsys) -> pd.DataFrame:
    assert main(["report", *map(str, args), "--format", "csv", "--metric", "acc,ap"]) == 0
    return pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)


def fit_run(out, test, train) -> None:
    assert main(["run", "--backbone", "clip-tiny", "--no-progress", "--detectors", "clip_svm", "--data", str(test),
                 "--train", str(train), "--out", str(out)]) == 0


def test_two_differently_fitted_clip_svm_runs_give_two_rows(tmp_path, capsys):
    # other test splits in each run: a merge keyed by name alone would make one row and average the two models
    test_a = make_folder(tmp_path / "test_a", splits=("a",), n=4, size=(32, 32), seed=0)
    test_b = make_folder(tmp_path / "test_b", splits=("b",), n=4, size=(32, 32), seed=3)
    fit_run(tmp_path / "r1", test_a, make_folder(tmp_path / "train1", splits=("t",), n=6, size=(32, 32), seed=1))
    fit_run(tmp_path / "r2", test_b, make_folder(tmp_path / "train2", splits=("t",), n=6, size=(32, 32), seed=2))
    capsys.readouterr()
    tags = {}
    for run in ("r1", "r2"):
        ckpt = tmp_path / run / "checkpoints" / "clip_svm.safetensors"
        tags[run] = hashlib.sha256(ckpt.read_bytes()).hexdigest()[:6]
    assert tags["r1"] != tags["r2"]  # different fits, different models

    got = report_csv([tmp_path / "r1", tmp_path / "r2"], capsys)
    names = {f"clip_svm [{tags['r1']}]": ("r1", "a"), f"clip_svm [{tags['r2']}]": ("r2", "b")}
    assert set(got.detector) == set(names)
    for shown, (run, own_split) in names.items():  # each row is its own run's numbers: nothing averaged
        own = pd.read_csv(tmp_path / run / "metrics.csv", keep_default_na=False)
        assert set(got[(got.detector == shown) & ~got.split.str.startswith("mean:")].split) == {own_split}
        for split in (own_split, "mean:all"):
            for metric in ("acc", "ap"):
                value = got[(got.detector == shown) & (got.split == split) & (got.perturbation == "none")
                            & (got.metric == metric)]["value"].item()
                mine = own[(own.split == split) & (own.perturbation == "none")][metric].item()
                assert value == pytest.approx(float(mine))
    assert set(got.threshold_policy) == {"fixed"} and set(got.calibration) == {"none"}

    assert main(["report", str(tmp_path / "r1"), str(tmp_path / "r2"), "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert f"clip_svm \\[{tags['r1']}\\]" in md and "All rows: threshold fixed, calibration none." in md


def with_operating(run, threshold: str, method: str | None = None):
    info = json.loads((run / "run.json").read_text())
    info["operating_points"] = {"threshold": threshold, "calibration": {"method": method}}
    (run / "run.json").write_text(json.dumps(info))
    return run


def test_same_model_at_two_threshold_policies_gives_two_rows_and_every_table_says_which(tmp_path, capsys):
    dets = {"rine": (3.0, 0.0)}
    fixed = with_operating(make_results(tmp_path / "fixed", n=10, detectors=dets), "fixed")
    val = with_operating(make_results(tmp_path / "val", n=10, detectors=dets, seed=1), "val", "platt")
    got = report_csv([fixed, val], capsys)
    assert set(got.detector) == {"rine [fixed, none]", "rine [val, platt]"}
    row = got[got.detector == "rine [val, platt]"].iloc[0]
    assert row["threshold_policy"] == "val" and row["calibration"] == "platt"

    assert main(["report", str(fixed), str(val), "--format", "md"]) == 0
    md = capsys.readouterr().out
    tables = md.count("### ")
    note = "Per row: rine \\[fixed, none\\]: threshold fixed, calibration none; rine \\[val, platt\\]: threshold val, calibration platt."
    assert tables > 1 and md.count(note) == tables  # under every table
    assert main(["report", str(fixed), str(val), "--format", "latex"]) == 0
    assert capsys.readouterr().out.count("calibration platt") == tables


def test_same_model_in_two_runs_on_other_splits_is_still_one_row(tmp_path, capsys):
    dets = {"rine": (3.0, 0.0)}
    a = make_results(tmp_path / "a", n=10, detectors=dets, splits={"progan": "gan"})
    b = make_results(tmp_path / "b", n=10, detectors=dets, splits={"dalle": "diffusion"}, seed=1)
    got = report_csv([a, b], capsys)
    assert set(got.detector) == {"rine"} and {"progan", "dalle", "mean:all"} <= set(got.split)
