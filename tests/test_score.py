"""`sidbench score PATH...` and `sidbench.score(...)`: P(fake) per image without labels, through the run's engine."""
from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest

import sidbench
from sidbench.cli import main


@pytest.fixture
def images(image_folder):
    """A folder of six images plus an unreadable one, and a single file given on its own."""
    (image_folder / "a" / "0_real" / "broken.png").write_bytes(b"not an image")
    return [str(image_folder / "a"), str(image_folder / "b" / "1_fake" / "000.png")]


def test_score_gives_the_logits_of_a_run(images, image_folder, tmp_path, capsys):
    assert main(["score", *images, "--detectors", "clip_zeroshot", "--backbone", "clip-tiny", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    table = pd.read_csv(io.StringIO(captured.out), keep_default_na=False)
    assert list(table.columns) == ["path", "detector", "logit", "prob", "protocol", "skipped"]
    assert len(table) == 14 and set(table["detector"]) == {"clip_zeroshot"}
    broken = table[table["skipped"] != ""]
    assert list(broken["path"]) == [str(image_folder / "a" / "0_real" / "broken.png")]
    assert "not an image" in broken["skipped"].iloc[0] and broken["prob"].iloc[0] == ""
    assert "13 images scored, 1 skipped" in captured.err and "skipped " + broken["path"].iloc[0] in captured.err
    scored = table[table["skipped"] == ""].astype({"logit": float, "prob": float})
    assert all(math.isclose(p, 1 / (1 + math.exp(-x))) for x, p in zip(scored["logit"], scored["prob"]))
    # `sidbench run` on the labelled folder scores the same images with the same engine: the same logits
    out = tmp_path / "run"
    assert main(["run", "--data", str(image_folder), "--detectors", "clip_zeroshot", "--backbone", "clip-tiny",
                 "--out", str(out), "--no-progress"]) == 0
    run = pd.read_csv(out / "scores.csv").set_index("path")["logit"]
    assert dict(zip(scored["path"], scored["logit"])) == {p: run[p] for p in scored["path"]}


def test_python_api_and_json(images, capsys):
    df = sidbench.score(images, detectors=["clip_zeroshot"], backbone="clip-tiny")
    assert isinstance(df, pd.DataFrame) and len(df) == 14
    assert df["prob"].isna().sum() == 1 and (df["skipped"] != "").sum() == 1
    assert main(["score", *images, "--detectors", "clip_zeroshot", "--backbone", "clip-tiny", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in rows] == list(df["path"])
    assert [r["prob"] for r in rows if r["skipped"]] == [None]
    assert [r["logit"] for r in rows if not r["skipped"]] == list(df["logit"].dropna())


def test_table_is_images_by_detectors(images, capsys):
    assert main(["score", *images, "--detectors", "clip_zeroshot,clip_zeroshot[prompts_real=[\"a photo\"]]",
                 "--backbone", "clip-tiny"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["path", "clip_zeroshot", 'clip_zeroshot[prompts_real=["a', 'photo"]]']
    assert len(lines) == 2 + 13 and all(0 <= float(v) <= 1 for ln in lines[2:] for v in ln.split()[1:])


def test_a_warm_cache_does_not_build_the_backbone(images, monkeypatch):
    first = sidbench.score(images, detectors="clip_zeroshot", backbone="clip-tiny")
    import sidbench.registry.lookup as lookup

    def refuse(*args, **kwargs):
        raise AssertionError("the backbone was built although every feature was cached")

    monkeypatch.setattr(lookup, "build_backbone", refuse)
    again = sidbench.score(images, detectors="clip_zeroshot", backbone="clip-tiny")
    pd.testing.assert_frame_equal(first, again)


@pytest.mark.parametrize("argv, message", [
    (["--detectors", "clip_svm"], "'clip_svm' must be fitted to score images"),
    (["nope.png", "--detectors", "clip_zeroshot"], "nope.png: no such file or folder"),
    (["--detectors", "clip_zeroshot", "--out", "x.txt"], "give --format csv or json"),
])
def test_score_errors_are_one_line(images, capsys, argv, message):
    assert main(["score", *images, *argv, "--backbone", "clip-tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_out_file_takes_its_format_from_the_suffix(images, tmp_path):
    out = tmp_path / "scores.json"
    assert main(["score", *images, "--detectors", "clip_zeroshot", "--backbone", "clip-tiny", "--out", str(out)]) == 0
    assert len(json.loads(out.read_text())) == 14


def test_pixel_detectors_score_too(images, tmp_path, capsys):
    import shutil
    from pathlib import Path

    shutil.copy(Path(__file__).parent / "plugins" / "pixel_probe.py", tmp_path / "pixel_probe.py")
    assert main(["score", *images, "--detectors", "checker_probe", "--plugins-dir", str(tmp_path), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)
    scored = table[table["skipped"] == ""].astype({"prob": float})
    assert len(scored) == 13 and set(scored["protocol"]) == {"native"}
    fake = scored["path"].str.contains("1_fake")
    assert scored[fake]["prob"].min() > scored[~fake]["prob"].max()  # the probe sees the fakes' checkerboard
