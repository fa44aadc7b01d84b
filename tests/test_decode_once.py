"""A CPU run (in-process loading) reads and decodes each file once for all its protocols, perturbations and
fits, and the scores are the same as without the memo of decoded images."""
from __future__ import annotations

from collections import Counter

import pandas as pd

from conftest import make_folder

DETECTORS = "clip_svm,univfd[max_epochs=2,augment=false],clip_zeroshot"  # two protocols: resized and native crop


def run(tmp_path, name, monkeypatch, max_bytes=None):
    from sidbench.cli import main
    from sidbench.engine import loader

    if max_bytes is not None:
        monkeypatch.setattr(loader, "DECODED_BYTES", max_bytes)
    decoded = Counter()
    real = loader.read_image

    def counting(path, *args, **kwargs):
        decoded[str(path)] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(loader, "read_image", counting)
    argv = ["run", "--backbone", "clip-tiny", "--detectors", DETECTORS, "--data", str(tmp_path / "test"),
            "--train", str(tmp_path / "train"), "--val", str(tmp_path / "val"), "--perturb", "jpeg:75",
            "--out", str(tmp_path / name), "--no-cache", "--no-progress", "--batch-size", "4"]
    assert main(argv) == 0
    scores = pd.read_csv(tmp_path / name / "scores.csv").sort_values(["detector", "path", "perturbation"])
    return decoded, scores.reset_index(drop=True)


def test_each_file_is_decoded_once_per_run_and_scores_do_not_change(tmp_path, monkeypatch):
    make_folder(tmp_path / "train", splits=("gan",), n=3, seed=1)
    make_folder(tmp_path / "val", splits=("gan",), n=2, seed=2)
    make_folder(tmp_path / "test", splits=("t",), n=2, seed=3)
    once, scores = run(tmp_path, "memo", monkeypatch)
    assert len(once) == 6 + 4 + 4 and set(once.values()) == {1}  # train, val, test: each file decoded once
    again, plain = run(tmp_path, "plain", monkeypatch, max_bytes=0)  # nothing fits in the memo: decoded per pass
    assert max(again.values()) >= 2
    pd.testing.assert_frame_equal(scores, plain)
