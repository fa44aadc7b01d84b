"""Small things a new user meets: --set on run, did-you-mean for config keys and hook names, data-folder errors
that name the right flag and say what is wrong, † in the terminal leaderboard, means over different splits,
checkpoint permissions."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sidbench.api import SidbenchError
from sidbench.cli import main


def one_line_error(capsys, argv) -> str:
    capsys.readouterr()  # what earlier commands said on stderr (their progress) is not this error
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_set_on_run_goes_to_the_detectors_that_take_it(image_folder, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", "--data", str(image_folder), "--train", str(image_folder), "--detectors", "clip_zeroshot,clip_svm",
                 "--backbone", "clip-tiny", "--out", str(out), "--no-progress", "--set", "C=10",
                 "--set", "clip_svm:max_iter=500"]) == 0
    printed = capsys.readouterr().out
    dets = {d["name"]: d["options"] for d in json.loads((out / "run.json").read_text())["detectors"]}
    assert dets["clip_svm"]["C"] == 10 and dets["clip_svm"]["max_iter"] == 500 and "C" not in dets["clip_zeroshot"]
    # clip_svm was fitted on splits a and b here, so its cells carry the dagger, in the terminal as in the report
    board = printed[printed.index("### Accuracy"):]
    assert "†" in board and "the split's generator is in the detector's training data" in board
    clip_svm_rows = [ln for ln in board.splitlines() if ln.startswith("| clip_svm")]
    zeroshot_rows = [ln for ln in board.splitlines() if ln.startswith("| clip_zeroshot")]
    assert all("†" in r for r in clip_svm_rows) and not any("†" in r for r in zeroshot_rows)


@pytest.mark.parametrize("setting, message", [
    ("nope=1", "none of clip_zeroshot has an option 'nope'"),
    ("clip_svm:C=1", "'clip_svm' is not one of the detectors run (clip_zeroshot)"),
    ("C", "option 'C' is not key=value"),
])
def test_set_errors(capsys, image_folder, tmp_path, setting, message):
    err = one_line_error(capsys, ["run", "--data", str(image_folder), "--detectors", "clip_zeroshot", "--backbone",
                                  "clip-tiny", "--out", str(tmp_path / "o"), "--set", setting])
    assert message in err


def test_set_without_detectors_says_that_detectors_are_missing(capsys, image_folder, tmp_path):
    err = one_line_error(capsys, ["run", "--data", str(image_folder), "--out", str(tmp_path / "o"), "--set", "epochs=3"])
    assert "no detectors given" in err


def test_unknown_config_key_suggests_the_right_one(tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text('detector = ["clip_zeroshot"]\nbatchsize = 8\n')
    err = one_line_error(capsys, ["run", "--config", str(toml)])
    assert "unknown key(s) 'batchsize' (did you mean 'batch_size'?), 'detector' (did you mean 'detectors'?)" in err


def test_misspelled_hook_says_which_hook_was_meant(tmp_path):
    from sidbench.registry import load_plugins

    (tmp_path / "typo.py").write_text("from sidbench.api import hookimpl\n\n@hookimpl\ndef sidbench_detector():\n"
                                      "    return []\n")
    [failure] = load_plugins([tmp_path]).failed
    assert "unknown hook 'sidbench_detector' (did you mean 'sidbench_detectors'?)" in failure.reason
    assert "<module" not in failure.reason


def test_empty_label_folders_say_they_are_empty(tmp_path, capsys):
    for sub in ("s/0_real", "s/1_fake"):
        (tmp_path / "d" / sub).mkdir(parents=True)
    err = one_line_error(capsys, ["run", "--data", str(tmp_path / "d"), "--detectors", "clip_zeroshot"])
    assert "s/0_real/, s/1_fake/ are empty" in err
    err = one_line_error(capsys, ["run", "--data", str(tmp_path / "d"), "--dataset", "folder", "--detectors", "clip_zeroshot"])
    assert "are empty" in err


def test_bad_train_path_names_train(image_folder, tmp_path, capsys):
    err = one_line_error(capsys, ["run", "--data", str(image_folder), "--train", str(tmp_path / "nope"),
                                  "--detectors", "clip_svm", "--backbone", "clip-tiny", "--out", str(tmp_path / "o")])
    assert err.startswith(f"sidbench: error: --train {tmp_path / 'nope'}: no such folder")
    err = one_line_error(capsys, ["run", "--data", str(image_folder), "--val", str(tmp_path / "nope"),
                                  "--detectors", "clip_svm", "--backbone", "clip-tiny", "--out", str(tmp_path / "o2")])
    assert "--val" in err and "--data" not in err


def test_a_file_given_as_data_says_so(image_folder, tmp_path, capsys):
    image = next((image_folder / "a" / "0_real").iterdir())
    err = one_line_error(capsys, ["run", "--data", str(image), "--detectors", "clip_zeroshot"])
    assert "is a file, not a folder" in err and f"sidbench score {image}" in err


def _metrics_run(folder: Path, detector: str, splits: list[str]) -> Path:
    from sidbench.results.metrics import metrics_table

    rng = np.random.default_rng(0)
    rows = [{"detector": detector, "split": s, "group": "g", "generator": s, "perturbation": "none",
             "protocol": "center_crop", "path": f"{s}/{i}.png", "label": i % 2, "logit": float(rng.normal()),
             "prob": 0.5} for s in splits for i in range(8)]
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "scores.csv", index=False)
    metrics_table(pd.DataFrame(rows)).to_csv(folder / "metrics.csv", index=False)
    return folder


def test_report_warns_when_means_cover_different_splits(tmp_path, capsys):
    a = _metrics_run(tmp_path / "ra", "det_a", ["s1", "s2", "s3"])
    b = _metrics_run(tmp_path / "rb", "det_b", ["s1"])
    assert main(["report", str(a), str(b), "--format", "md"]) == 0
    captured = capsys.readouterr()
    assert "warning: the detectors' mean:all cover different splits (det_a: 3, det_b: 1 splits)" in captured.err
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in captured.out.splitlines() if ln.startswith("| det_")]
    assert rows and all("**" not in cell for r in rows for cell in r[-2:])  # no 'best' among incomparable means
    assert any("**" in r[1] for r in rows)  # the splits themselves still are
    assert main(["report", str(a), "--format", "md"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_checkpoints_get_the_permissions_of_other_outputs(tmp_path):
    import torch

    from sidbench.api.checkpoints import save_tensors
    from sidbench.api.paths import write_atomic

    old = os.umask(0o022)
    try:
        ckpt = save_tensors(tmp_path / "c.safetensors", {"w": torch.zeros(2)}, {})
        write_atomic(tmp_path / "other.csv", "x\n")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(ckpt.stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "other.csv").stat().st_mode) == 0o644


def test_with_settings_without_detectors_is_an_error(plugins):
    from sidbench.run.config import RunConfig, with_settings

    with pytest.raises(SidbenchError, match="none of the detectors has an option 'C'"):
        with_settings(RunConfig(), ["C=1"], plugins)
