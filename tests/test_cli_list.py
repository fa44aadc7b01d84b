"""`sidbench list detectors NAME`: one detector's options with defaults and types, input, protocol, paper,
training data and published weights."""
from __future__ import annotations

from sidbench.cli import main


def test_details_of_one_detector(capsys):
    assert main(["list", "detectors", "rine"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rine.progan4 (the default of family rine)")
    for expected in ("features cls_ln2 of backbone ViT-L-14:openai", "protocol:      center_crop",
                     "needs fitting", "rine.progan4@official", "trained on:    progan", "Koutlis & Papadopoulos",
                     "Apache-2.0", "model_4class_trainable.pth"):
        assert expected in out, expected
    rows = {ln.split()[0]: ln for ln in out.splitlines() if ln.split() and ln.split()[0] in ("q", "epochs", "blocks", "tie")}
    # default, type, bounds, role, quickstart value, doc
    assert rows["q"].split()[1:] == ["2", "an", "integer", "1..64", "network", "projection", "layers"]
    assert rows["epochs"].split()[1:] == ["1", "an", "integer", "1..100000", "fit", "30", "training", "epochs"]
    assert "a string or an integer or a list" in rows["blocks"] and "true or false" in rows["tie"]


def test_details_of_a_pixel_detector(tmp_path, capsys):
    import shutil
    from pathlib import Path

    shutil.copy(Path(__file__).parent / "plugins" / "pixel_probe.py", tmp_path / "pixel_probe.py")
    assert main(["list", "detectors", "checker_probe", "--plugins-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "pixels: its own network on 64 px images" in out and "protocol:      native" in out
    assert "no fitting needed" in out and "epochs" in out


def test_details_by_name_exist_for_detectors_only(capsys):
    assert main(["list", "backbones", "clip-tiny"]) == 2
    assert "details by name exist for detectors only" in capsys.readouterr().err
    assert main(["list", "detectors", "rien"]) == 2
    assert "Did you mean" in capsys.readouterr().err
