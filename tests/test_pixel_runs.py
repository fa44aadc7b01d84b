"""The pixel detectors in runs: official files of every kind in one run and one leaderboard, and their
training recipes through ``sidbench train``."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sidbench.cli import main

from conftest import make_folder, write_image
from test_pixel_detectors import (STAGES, cnndetection_reference, corvi_reference, npr_reference, official_shapes,
                                  random_state, trainer_dump)


def official_pixel_files(root: Path) -> dict[str, tuple[Path, dict]]:
    """The three detectors' files as their authors publish them (random weights): name -> (path, state)."""
    cnn, npr, corvi = (random_state(official_shapes(7), 11),
                       random_state(official_shapes(3, STAGES[:2], head="fc1", head_in=512), 12),
                       random_state(official_shapes(7), 13))
    root.mkdir(parents=True, exist_ok=True)
    torch.save(trainer_dump(cnn), root / "blur_jpg_prob0.5.pth")
    torch.save(trainer_dump({f"module.{k}": v for k, v in npr.items()}), root / "NPR.pth")
    torch.save(trainer_dump(corvi), root / "model_epoch_best.pth")
    return {"cnndetection": (root / "blur_jpg_prob0.5.pth", cnn), "npr": (root / "NPR.pth", npr),
            "corvi2023": (root / "model_epoch_best.pth", corvi)}


def mixed_data(root: Path) -> Path:
    data = make_folder(root, splits=("gan",), n=2, size=(64, 64), seed=21)
    write_image(data / "gan" / "1_fake" / "odd.png", np.random.default_rng(3), (49, 70), fake=True)
    return data


def reference_logit(name: str, path: str, state: dict) -> float:
    """The official forward on the official test protocol's tensor of one image."""
    import torchvision.transforms.functional as TF

    img = Image.open(path).convert("RGB")
    if name == "cnndetection":  # eval.py: no resize, CenterCrop(224) (zero padding below 224)
        img, ref = TF.center_crop(img, [224, 224]), cnndetection_reference
    elif name == "npr":  # test.py: transforms.Resize((256, 256))
        img, ref = img.resize((256, 256), Image.BILINEAR), npr_reference
    else:  # DMimageDetection main.py: the full image
        ref = corvi_reference
    x = TF.normalize(TF.to_tensor(img), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))[None]
    with torch.no_grad():
        return float(ref(state, x)[0])


def check_one_leaderboard(out: Path, pixel_files: dict, n_images: int, feature_detectors: tuple[str, ...]) -> None:
    scores = pd.read_csv(out / "scores.csv")
    names = {"cnndetection": "cnndetection.prob05", "npr": "npr.progan4", "corvi2023": "corvi2023.ldm"}
    expected = sorted([*names.values(), *feature_detectors])
    assert sorted(scores.detector.unique()) == expected
    assert (scores.groupby("detector").path.nunique() == n_images).all()  # every image, every detector
    assert not pd.read_csv(out / "skipped.csv").shape[0]
    board = (out / "leaderboard.md").read_text()
    assert all(name in board for name in expected)
    for family, (_, state) in pixel_files.items():
        rows = scores[scores.detector == names[family]]
        for row in rows.itertuples():
            assert row.logit == pytest.approx(reference_logit(family, row.path, state), rel=1e-4, abs=1e-4), row.path
    protocols = dict(zip(scores.detector, scores.protocol))
    assert (protocols["cnndetection.prob05"], protocols["npr.progan4"], protocols["corvi2023.ldm"]) == \
        ("center_crop", "resize_square", "native")


def run_every_kind(tmp_path: Path, rine: Path, univfd: Path, backbone: str) -> None:
    """The issue's command: three official pixel files and two official CLIP heads, one run, one leaderboard."""
    files = official_pixel_files(tmp_path / "weights")
    data, out = mixed_data(tmp_path / "data"), tmp_path / "out"
    dets = (f"cnndetection@{files['cnndetection'][0]},npr@{files['npr'][0]},corvi2023@{files['corvi2023'][0]},"
            f"rine.progan2@{rine},univfd@{univfd}")
    assert main(["run", "--data", str(data), "--detectors", dets, "--backbone", backbone, "--out", str(out),
                 "--batch-size", "2", "--no-progress"]) == 0
    check_one_leaderboard(out, files, 5, ("rine.progan2", "univfd.progan"))


def test_official_pixel_and_head_files_in_one_run(tmp_path):
    """Done-means of issue 12 on clip-tiny: the RINE and UnivFD files are official-format heads of its shapes."""
    from sidbench.registry import load_detector, load_plugins

    rine = load_detector("rine.progan2", backbone="clip-tiny", plugins=load_plugins())
    torch.save({k: torch.randn_like(v) for k, v in rine.net.state_dict().items()}, tmp_path / "model_2class_trainable.pth")
    embed = rine.backbone_info.embed_dim
    torch.save({"weight": torch.randn(1, embed) * 0.1, "bias": torch.zeros(1)}, tmp_path / "fc_weights.pth")
    run_every_kind(tmp_path, tmp_path / "model_2class_trainable.pth", tmp_path / "fc_weights.pth", "clip-tiny")


@pytest.mark.slow
def test_done_means_with_the_real_rine_and_univfd_files(tmp_path, reference_dir):
    """The same with the published RINE and UnivFD heads on ViT-L/14 (random weights: offline)."""
    run_every_kind(tmp_path, reference_dir / "rine_2class_trainable.pth", reference_dir / "univfd_fc_weights.pth",
                   "ViT-L-14:random")


# -- training ------------------------------------------------------------------------------------------------
def train(name: str, tmp_path: Path, *sets: str, val: bool = True) -> tuple[int, Path]:
    root = make_folder(tmp_path / "progan", splits=("car", "horse", "sheep"), n=2, size=(48, 48), seed=31)
    vals = make_folder(tmp_path / "progan_val", splits=("car", "horse"), n=1, size=(48, 48), seed=32)
    out = tmp_path / f"{name}-{len(sets)}.safetensors"
    args = ["train", name, "--data", str(root), "--out", str(out), "--no-progress", "--no-cache"]
    args += ["--val", str(vals)] * val + [a for s in sets for a in ("--set", s)]
    return main(args), out


TINY_NPR = ("epochs=3", "decay_every=1", "load_size=40", "crop_size=32", "image_size=32", "preprocess=center_crop",
            "batch_size=4")


def test_npr_trains_with_its_recipe_and_is_reproducible(tmp_path, capsys):
    from sidbench.api.checkpoints import load_tensors

    code, ckpt = train("npr", tmp_path, *TINY_NPR)
    log = capsys.readouterr().err
    assert code == 0 and "its own network" in log
    assert "train: classes car,horse (8 of 12 images); missing cat,chair" in log  # NPR's four ProGAN classes
    lrs = re.findall(r"epoch \d: loss [\d.]+, lr ([\d.e-]+)(?: \(next ([\d.e-]+)\))?, val acc", log)
    # the rate of each epoch, and x0.9 at the end of 0-based epochs 1, 2 (decay_every=1)
    assert [float(a) for a, _ in lrs] == pytest.approx([2e-4, 2e-4, 2e-4 * 0.9])
    assert [float(b) if b else None for _, b in lrs] == pytest.approx([None, 2e-4 * 0.9, 2e-4 * 0.81])
    tensors, meta = load_tensors(ckpt)
    assert meta["detector"] == "npr.progan4" and "net.fc1.weight" in tensors and "net.layer3.0.conv1.weight" not in tensors
    again = train("npr", tmp_path / "again", *TINY_NPR)[1]
    for k, v in load_tensors(again)[0].items():
        assert torch.equal(v, tensors[k]), k  # same seed, same model


def test_cnndetection_trains_with_early_stopping_from_a_random_start(tmp_path, capsys):
    code, ckpt = train("cnndetection", tmp_path, "pretrained=false", "max_epochs=2", "load_size=40", "image_size=32",
                       "batch_size=6", 'classes=["car","horse"]')
    log = capsys.readouterr().err
    assert code == 0 and "random initialisation" in log
    assert re.search(r"epoch 2: loss [\d.]+, lr 0.0001, val acc [\d.]+", log)
    from sidbench.registry import load_detector

    det = load_detector("cnndetection", weights=str(ckpt))
    assert det.fitted and det.pixel_input.image_size == 32  # the saved options come back


def test_cnndetection_without_validation_or_imagenet_weights_fails_in_one_line(tmp_path, capsys, monkeypatch):
    import urllib.error

    assert train("cnndetection", tmp_path, "pretrained=false", val=False)[0] != 0
    assert "give --val PATH" in capsys.readouterr().err
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    assert train("cnndetection", tmp_path / "b", "max_epochs=1")[0] != 0
    err = capsys.readouterr().err
    [line] = [ln for ln in err.splitlines() if not ln.startswith("training ")]  # the error, after the progress line
    assert "ImageNet ResNet-50 weights are not cached" in line and "--set pretrained=false" in line


def test_cnndetection_views_follow_its_dataset_code():
    from sidbench.data.perturb import Blur
    from sidbench.registry import load_detector

    det = load_detector("cnndetection", blur_prob=1.0, jpeg_prob=0.0)
    train_view, val_view = det.augmentations()
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    a, b = train_view(img, np.random.default_rng(5)), train_view(img, np.random.default_rng(5))
    assert a.size == (224, 224) and np.array_equal(np.asarray(a), np.asarray(b))
    # validation: shorter side to 256 (bilinear), blur sigma fixed at 1.5, centre crop 224, no flip
    resized = img.resize((341, 256), Image.BILINEAR)
    expected = Blur(1.5)(resized, None).crop((58, 16, 282, 240))
    got = val_view(img, np.random.default_rng(9))
    assert np.array_equal(np.asarray(got), np.asarray(expected))
