"""`sidbench ablate STUDY`: each study runs end to end through the CLI, writes its table, plot and
study.json, and its numbers equal fits done by hand on the same features."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sidbench.cli import main

from conftest import make_folder

SIZE = (224, 224)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("ablate")
    return {"train": str(make_folder(root / "train", ("a",), n=8, size=SIZE, seed=1)),
            "val": str(make_folder(root / "val", ("a",), n=4, size=SIZE, seed=2)),
            "data": str(make_folder(root / "test", ("x", "y"), n=4, size=SIZE, seed=3))}


def ablate(study: str, folders: dict, out: Path, *extra: str) -> dict:
    argv = ["ablate", study, "--data", folders["data"], "--train", folders["train"], "--val", folders["val"],
            "--out", str(out), "--no-progress", "--device", "cpu", *extra]
    if study != "backbone":
        argv += ["--backbone", "clip-tiny"]
    assert main(argv) == 0
    for name in ("table.csv", "table.md", "study.csv", "metrics.csv", "scores.csv", "run.json", "plot.png", "study.json"):
        assert (out / name).is_file(), name
    assert (out / "plot.png").read_bytes()[:4] == b"\x89PNG"
    # a standard results folder: `sidbench report` reads it, one row per variant
    assert main(["report", str(out), "--format", "csv"]) == 0
    metrics = pd.read_csv(out / "metrics.csv", keep_default_na=False)
    assert {"mean:all"} <= set(metrics["split"]) and metrics["detector"].nunique() >= 1
    return json.loads((out / "study.json").read_text())


def hand_features(folder: str, names, protocol: str, perturb: str | None = None, backbone=None):
    from sidbench.backbones.clip import build_tiny
    from sidbench.data.layout import resolve_records
    from sidbench.data.perturb import NONE, parse_perturbations
    from sidbench.engine import ExtractOptions, extract
    from sidbench.registry import load_plugins

    plugins = load_plugins()
    pert = parse_perturbations(perturb, plugins, False)[0] if perturb else NONE
    return extract(backbone or build_tiny(), resolve_records(folder, plugins), names, protocol=protocol,
                   perturbation=pert, options=ExtractOptions(progress=False, workers=0))


def mean_accuracy(records, pred) -> float:
    """Unweighted mean over test splits of the per-split accuracy."""
    y = np.array([r.label for r in records])
    splits = np.array([r.split for r in records])
    return float(np.mean([(pred[splits == s] == y[splits == s]).mean() for s in sorted(set(splits))]))


def test_jpeg_matrix_diagonal_equals_a_hand_fitted_svm(folders, tmp_path):
    from sklearn.svm import LinearSVC

    info = ablate("jpeg_matrix", folders, tmp_path, "--qualities", "40,90")
    table = pd.read_csv(tmp_path / "table.csv").set_index("train quality")
    assert list(table.columns) == ["test q40", "test q90"] and list(table.index) == ["q40", "q90"]
    norm = lambda fs: (lambda x: x / np.linalg.norm(x, axis=1, keepdims=True))(fs.features["cls_final"].double().numpy())
    train = hand_features(folders["train"], ("cls_final",), "resize_center_crop", "jpeg:40")
    test = hand_features(folders["data"], ("cls_final",), "resize_center_crop", "jpeg:40")
    svm = LinearSVC(C=1.0, dual="auto", max_iter=10000, random_state=0).fit(norm(train), [r.label for r in train.records])
    pred = (svm.decision_function(norm(test)) > 0).astype(int)
    assert table.loc["q40", "test q40"] == pytest.approx(mean_accuracy(test.records, pred), abs=1e-9)
    # 2 qualities x (train + val) + 2 test sets: 6 extractions, whatever the number of cells
    assert info["backbone_passes"]["extractions"] == 6
    assert info["backbone_passes"]["images_encoded"]["clip-tiny"] == 2 * (16 + 8) + 2 * 16
    assert "| q40" in (tmp_path / "table.md").read_text()


def test_tip_adapter_alpha_zero_is_zero_shot_and_features_are_extracted_once(folders, tmp_path):
    from sidbench.registry import load_detector
    from sidbench.reports import plots  # noqa: F401  (the plot helpers the study uses)

    info = ablate("tip_adapter", folders, tmp_path, "--shots", "1,4,100", "--alphas", "0,2", "--alpha-shots", "2",
                  "--set", "augment_views=1")
    table = pd.read_csv(tmp_path / "table.csv")
    size = table[table["sweep"] == "cache size"]
    assert list(size["shots"]) == [1, 4, 8] and list(size["cache"]) == [2, 8, 16]  # 100 capped at 8 per class
    zero = table[(table["sweep"] == "alpha") & (table["value"] == 0)].iloc[0]
    from sidbench.backbones.clip import build_tiny

    bb = build_tiny()
    test = hand_features(folders["data"], ("image_embed",), "resize_center_crop", backbone=bb)
    zs = load_detector("clip_zeroshot", backbone="clip-tiny")
    zs.bind(bb)
    pred = (zs.score({"image_embed": test.features["image_embed"]}).numpy() > 0).astype(int)
    assert zero["mean acc"] == pytest.approx(mean_accuracy(test.records, pred), abs=1e-9)
    passes = info["backbone_passes"]["passes"]
    # train (one augmented view), val and test: each extracted once for the whole grid
    assert len(passes) == 3, passes
    assert sorted(p["images"] for p in passes) == [8, 16, 16]
    assert info["beta"] == "searched on validation"


def test_tip_adapter_f_epoch_grid(folders, tmp_path):
    info = ablate("tip_adapter_f", folders, tmp_path, "--epochs", "0,2", "--set", "augment_views=1",
                  "--set", "shots=4")
    table = pd.read_csv(tmp_path / "table.csv")
    assert list(table["epochs"]) == [0, 2] and set(table["cache"]) == {8}
    assert table["epoch kept"].iloc[1] in (1, 2)
    # views 0 and 1 of the 8 cache images serve both fits; val and test once
    assert len(info["backbone_passes"]["passes"]) == 4


def test_rine_variants_share_one_extraction(folders, tmp_path):
    info = ablate("rine", folders, tmp_path, "--epochs", "2", "--set", "proj_dim=16", "--set", "q=1",
                  "--set", "batch_size=8", "--set", "augment=false")
    table = pd.read_csv(tmp_path / "table.csv")
    assert list(table["variant"]) == ["full", "no TIE (mean over blocks)", "no contrastive loss", "last block only",
                                      "block outputs (cls_blocks)"]
    assert {"x acc", "x AP", "y acc", "y AP", "mean acc", "mean AP"} <= set(table.columns)
    rows = table.set_index("variant")
    assert rows.loc["full", "mean acc"] == pytest.approx((rows.loc["full", "x acc"] + rows.loc["full", "y acc"]) / 2)
    v = info["variants"]
    assert "alpha" not in v["no_tie"]["parameters"] and v["full"]["parameters"]["alpha"] == [1, 4, 16]
    assert v["full"]["trainable_parameters"] - v["no_tie"]["trainable_parameters"] == 4 * 16  # L x d'
    assert v["last_block"]["parameters"]["alpha"] == [1, 1, 16]
    assert v["no_contrastive"]["options"]["xi"] > 0 and v["no_contrastive"]["options"]["contrastive"] is False
    assert len(v["full"]["block_importance"]["learned"]) == 4
    assert (tmp_path / "block_importance.png").is_file()
    # augment=false: train, val, test once each, both block features in the same pass
    passes = info["backbone_passes"]["passes"]
    assert len(passes) == 3 and all(p["features"] == ["cls_ln2", "cls_blocks"] for p in passes)


def test_backbone_study_compares_clip_and_dinov2(folders, tmp_path):
    info = ablate("backbone", folders, tmp_path, "--backbones", "clip-tiny,timm:vit_small_patch14_dinov2:random")
    table = pd.read_csv(tmp_path / "table.csv")
    assert list(table["backbone"]) == ["clip-tiny", "timm:vit_small_patch14_dinov2:random"]
    assert set(info["backbones"]) == {"clip-tiny", "timm:vit_small_patch14_dinov2:random"}
    assert len(info["backbone_passes"]["passes"]) == 6  # train, val, test per backbone


@pytest.mark.parametrize("argv, message", [
    (["ablate", "rin"], "unknown study 'rin'; did you mean 'rine'?"),
    (["ablate", "rine", "--alphas", "1"], "study rine does not take --alphas"),
    (["ablate", "tip_adapter", "--shots", "a,b"], "--shots 'a,b': give comma-separated integers"),
    (["ablate", "jpeg_matrix", "--data", "x"], "study jpeg_matrix fits detectors: give --train PATH"),
    (["ablate", "backbone", "--backbone", "clip-tiny"], "study backbone does not take --backbone"),
])
def test_bad_studies_and_flags_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_text_detector_on_dinov2_is_a_one_line_error(folders, tmp_path, capsys):
    argv = ["ablate", "backbone", "--data", folders["data"], "--train", folders["train"], "--out", str(tmp_path),
            "--backbones", "clip-tiny,timm:vit_small_patch14_dinov2:random", "--detector", "tip_adapter"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no text tower" in err[0] and "tip_adapter" in err[0]
