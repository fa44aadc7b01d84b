"""Training layouts: ProGAN classes (RINE 1/2/4-class) and the latent-diffusion set's lists."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import write_image


def make_progan_train(root, classes=("car", "cat", "chair", "horse"), n=2):
    rng = np.random.default_rng(3)
    for c in classes:
        for sub in ("0_real", "1_fake"):
            for i in range(n):
                write_image(root / "train" / c / sub / f"{i}.png", rng, (32, 32), fake=sub == "1_fake")
    return root


def test_progan_class_selection(tmp_path, plugins):
    from sidbench.data.layout import resolve_records
    from sidbench.datasets.training import ProGANTrainLayout

    root = make_progan_train(tmp_path)
    recs = ProGANTrainLayout().records(root, classes="chair,horse")
    assert Counter((r.split, r.label) for r in recs) == {("chair", 0): 2, ("chair", 1): 2, ("horse", 0): 2, ("horse", 1): 2}
    assert {r.generator for r in recs if r.label == 1} == {"progan"}
    assert {r.split for r in resolve_records(root, plugins)} == {"car", "cat", "chair", "horse"}
    assert {r.split for r in resolve_records(root, plugins, dataset="progan_train", classes=["horse"])} == {"horse"}


def test_progan_unknown_class_is_an_error(tmp_path):
    from sidbench.datasets.training import ProGANTrainLayout
    from sidbench.api import DataError

    with pytest.raises(DataError, match="sofa"):
        ProGANTrainLayout().records(make_progan_train(tmp_path), classes=["sofa"])


def test_ldm_training_set_lists(tmp_path, plugins):
    from sidbench.data.layout import resolve_records

    rng = np.random.default_rng(4)
    make_progan_train(tmp_path, classes=("horse",))
    write_image(tmp_path / "coco" / "train2014" / "COCO_train2014_000000000009.jpg", rng, (32, 32), fmt="JPEG")
    write_image(tmp_path / "coco" / "val2014" / "COCO_val2014_000000000042.jpg", rng, (32, 32), fmt="JPEG")
    base = tmp_path / "latent_diffusion_trainingset" / "train"
    for i in range(3):
        write_image(base / "ldm_samples_a" / f"{i}.png", rng, (32, 32), fake=True)
    base.joinpath("real_lsun.txt").write_text("horse_0.png\nhorse_1.png\n")
    base.joinpath("real_coco.txt").write_text("000000000009.jpg\n000000000042.jpg\n")
    recs = resolve_records(tmp_path, plugins, role="train")  # one training set: LDM, over the ProGAN folders beside it
    reals = sorted(r.path for r in recs if r.label == 0)
    assert reals == sorted(str(p) for p in [
        tmp_path / "train/horse/0_real/0.png", tmp_path / "train/horse/0_real/1.png",
        tmp_path / "coco/train2014/COCO_train2014_000000000009.jpg",
        tmp_path / "coco/val2014/COCO_val2014_000000000042.jpg"])
    assert sum(r.label for r in recs) == 3 and {r.split for r in recs} == {"train"}


def test_train_and_test_split_folders_are_not_progan_classes(tmp_path, plugins):
    """'train' is an LSUN class name: a root holding train/ and test/ splits stays the generic layout."""
    from conftest import make_folder
    from sidbench.data.layout import resolve_records

    root = make_folder(tmp_path / "d", splits=("train", "test"), n=2, size=(16, 16))
    recs = resolve_records(root, plugins)
    assert {r.split for r in recs} == {"train", "test"} and {r.group for r in recs} == {"folder"}
