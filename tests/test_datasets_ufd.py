"""The UniversalFakeDetect test tree: 20 split names, groups, nested merging and diffusion pairings."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import write_image

pytestmark = pytest.mark.usefixtures("messages")  # layouts' notes on stderr, as the CLI shows them

NESTED = {"progan": ("airplane", "cat"), "stylegan": ("bedroom", "car"), "stylegan2": ("car", "horse"),
          "cyclegan": ("apple", "zebra")}
FLAT = ("biggan", "stargan", "gaugan", "deepfake", "seeingdark", "san", "crn", "imle")
LAION = ("ldm_200", "ldm_200_cfg", "ldm_100", "glide_100_27", "glide_50_27", "glide_100_10", "dalle")
EXPECTED_GROUPS = {
    "progan": "gan", "stylegan": "gan", "stylegan2": "gan", "biggan": "gan", "cyclegan": "gan", "stargan": "gan",
    "gaugan": "gan", "deepfake": "deepfake", "seeingdark": "low_level", "san": "low_level", "crn": "perceptual",
    "imle": "perceptual", "guided": "diffusion", **{s: "diffusion" for s in LAION},
}


def make_ufd_tree(root: Path, n: int = 1, skip: tuple[str, ...] = (), size=(32, 32)) -> Path:
    """``root/test/...`` as CNNDetection + UniversalFakeDetect ship it, ``n`` images per class and folder."""
    rng = np.random.default_rng(1)
    test = root / "test"

    def put(folder: Path, fake: bool, k: int = n) -> None:
        for i in range(k):
            write_image(folder / f"{i:03d}.png", rng, size, fake=fake)

    for gen, cats in NESTED.items():
        if gen not in skip:
            for c in cats:
                put(test / gen / c / "0_real", False)
                put(test / gen / c / "1_fake", True)
    for gen in FLAT:
        if gen not in skip:
            put(test / gen / "0_real", False)
            put(test / gen / "1_fake", True)
    dd = test / "diffusion_datasets"
    put(dd / "imagenet" / "0_real", False, n + 1)  # distinct counts prove which reals pair with which fakes
    put(dd / "laion" / "0_real", False, n + 2)
    for gen in ("guided", *LAION):
        if gen not in skip:
            put(dd / gen / "1_fake", True)
    return root


@pytest.fixture
def ufd():
    from sidbench.datasets.ufd import UFDLayout

    return UFDLayout()


def test_twenty_splits_groups_and_counts(tmp_path, ufd, capsys):
    root = make_ufd_tree(tmp_path)
    recs = ufd.records(root)
    assert set(r.split for r in recs) == set(EXPECTED_GROUPS)
    assert len(EXPECTED_GROUPS) == 20
    assert {r.split: r.group for r in recs} == EXPECTED_GROUPS
    counts = Counter((r.split, r.label) for r in recs)
    for gen, cats in NESTED.items():  # categories merged into one split
        assert counts[gen, 0] == counts[gen, 1] == len(cats)
    for gen in FLAT:
        assert counts[gen, 0] == counts[gen, 1] == 1
    assert counts["guided", 0] == 2 and counts["guided", 1] == 1
    for gen in LAION:
        assert counts[gen, 0] == 3 and counts[gen, 1] == 1
    assert "warning" not in capsys.readouterr().err


def test_diffusion_reals_pairing(tmp_path, ufd):
    recs = ufd.records(make_ufd_tree(tmp_path))
    for r in recs:
        parts = Path(r.path).parts
        if r.split == "guided" and r.label == 0:
            assert parts[-3:-1] == ("imagenet", "0_real")
        elif r.split in LAION and r.label == 0:
            assert parts[-3:-1] == ("laion", "0_real")
        elif r.split in LAION or r.split == "guided":
            assert parts[-3:-1] == (r.split, "1_fake") and r.generator == r.split
        if r.label == 0:
            assert r.generator == ""


def test_root_may_be_test_folder_and_missing_sets_warn(tmp_path, ufd, capsys):
    root = make_ufd_tree(tmp_path, skip=("stargan", "dalle", "stylegan2"))
    recs = ufd.records(root / "test")
    assert len({r.split for r in recs}) == 17
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dalle" in err and "stargan" in err and "stylegan2" in err


def test_layout_is_recognised_before_folder(tmp_path, plugins):
    from sidbench.data.layout import resolve_records

    recs = resolve_records(make_ufd_tree(tmp_path), plugins)
    assert {r.split for r in recs} == set(EXPECTED_GROUPS)  # the folder layout would name splits 'airplane', 'laion'...


def test_unknown_set_is_one_line_error(tmp_path, ufd):
    from sidbench.api import DataError

    with pytest.raises(DataError, match="unknown UniversalFakeDetect set"):
        ufd.records(make_ufd_tree(tmp_path), splits=["progan", "whichfaceisreal"])


def test_diffusion_only_tree_is_recognised(tmp_path, plugins):
    from sidbench.data.layout import resolve_records

    root = make_ufd_tree(tmp_path, skip=(*NESTED, *FLAT))
    recs = resolve_records(root / "test", plugins)
    assert {r.split for r in recs} == {"guided", *LAION}
