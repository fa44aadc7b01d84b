"""A root holding several data sets reads each once: specific layouts claim their folders, the generic
one takes only what none claimed, training sets found beside test sets are named, not scored; unknown
sets are kept as group ``other``; suites keep the published splits; ``datasets check`` suggests the
JPEG-aligned protocol."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import write_image
from test_datasets_layouts import GENIMAGE, make_aigc, make_chameleon, make_genimage, make_wildrf, touch
from test_datasets_synthbuster import GENERATORS, make_synthbuster_tree
from test_datasets_training import make_progan_train
from test_datasets_ufd import EXPECTED_GROUPS, make_ufd_tree

pytestmark = pytest.mark.usefixtures("messages")  # layouts' notes on stderr, as the CLI shows them


def read(root, plugins, **kw):
    from sidbench.data.layout import resolve_records

    return resolve_records(root, plugins, **kw)


@pytest.fixture
def rine_data(tmp_path):
    """RINE's data/ folder: test/ (UFD), synthbuster/ + RAISEpng/, the ProGAN train/ and val/, coco/."""
    root = tmp_path / "data"
    make_ufd_tree(root)
    make_synthbuster_tree(root, n_real=2, n_fake=1)
    make_progan_train(root, classes=("car", "cat"), n=1)
    (root / "val").mkdir()
    (root / "train").rename(root / "val" / "tmp")
    make_progan_train(root, classes=("car", "cat", "horse"), n=1)
    for c in ("car", "cat"):
        (root / "val" / "tmp" / c).rename(root / "val" / c)
    (root / "val" / "tmp").rmdir()
    touch(root / "coco" / "train2014", 3, "COCO_train2014_{i:012d}.jpg")
    return root


def test_rine_data_folder_gives_ufd_and_synthbuster(rine_data, plugins, capsys):
    recs = read(rine_data, plugins)
    assert {r.split for r in recs} == set(EXPECTED_GROUPS) | set(GENERATORS)
    assert {r.group for r in recs} == {*EXPECTED_GROUPS.values(), "synthbuster"}
    assert not any("/train/" in r.path or "/val/" in r.path or "/coco/" in r.path for r in recs)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "read 2 data set(s): synthbuster (RAISEpng, synthbuster), ufd (test)" in err[0]
    assert "not read as test splits" in err[0] and "progan_train (train, val)" in err[0]


def test_rine_data_folder_as_training_and_validation_data(rine_data, plugins):
    train = read(rine_data, plugins, role="train")
    assert Counter(r.split for r in train) == {"car": 2, "cat": 2, "horse": 2}
    assert all("/train/" in r.path for r in train)
    val = read(rine_data, plugins, role="val")
    assert Counter(r.split for r in val) == {"car": 2, "cat": 2} and all("/val/" in r.path for r in val)


def test_generic_layout_reads_only_unclaimed_folders(tmp_path, plugins, capsys):
    make_ufd_tree(tmp_path / "bench")
    touch(tmp_path / "bench" / "mine" / "0_real", 2)
    touch(tmp_path / "bench" / "mine" / "1_fake", 3)
    recs = read(tmp_path, plugins)
    splits = Counter((r.split, r.group) for r in recs)
    assert {s for s, _ in splits} == set(EXPECTED_GROUPS) | {"mine"}  # not 'airplane', 'laion', 'imagenet'...
    assert splits["mine", "folder"] == 5
    assert "ufd (bench/test), folder (.)" in capsys.readouterr().err


def test_ufd_tree_keeps_unknown_sets_as_other(tmp_path, plugins, capsys):
    root = make_ufd_tree(tmp_path)
    touch(root / "test" / "whichfaceisreal" / "0_real", 2)
    touch(root / "test" / "whichfaceisreal" / "1_fake", 2)
    for c in ("a", "b"):  # an unknown set with a class level: merged like progan
        touch(root / "test" / "newgan" / c / "0_real", 1)
        touch(root / "test" / "newgan" / c / "1_fake", 2)
    touch(root / "test" / "diffusion_datasets" / "sdxl_1" / "1_fake", 2)  # no reals known for it
    recs = read(root, plugins)
    c = Counter((r.split, r.label, r.group) for r in recs)
    assert c["newgan", 0, "other"] == 2 and c["newgan", 1, "other"] == 4 and c["whichfaceisreal", 1, "other"] == 2
    assert len({r.split for r in recs}) == 22
    err = capsys.readouterr().err
    assert "read as group 'other': newgan, whichfaceisreal" in err and "lacking reals or fakes: sdxl_1" in err


def test_aigcdetect_tree_is_not_read_twice_and_ufd_keeps_extra_genimage_sets(tmp_path, plugins):
    recs = read(make_aigc(tmp_path / "a"), plugins)
    assert len({r.split for r in recs}) == 16 and len(recs) == len({(r.path, r.split) for r in recs})
    root = make_ufd_tree(tmp_path / "u")
    touch(root / "test" / "ADM" / "0_real", 1)
    touch(root / "test" / "ADM" / "1_fake", 1)
    recs = read(root, plugins)
    assert {r.group for r in recs if r.split == "ADM"} == {"other"} and len({r.split for r in recs}) == 21


def test_split_names_two_data_sets_share_are_prefixed(tmp_path, plugins, capsys):
    from sidbench.run.inputs import records_of

    make_genimage(tmp_path, generators=("glide", "ADM"))
    make_synthbuster_tree(tmp_path, n_real=2, n_fake=1, generators=("glide", "dalle2"))
    recs = records_of(str(tmp_path), plugins)
    assert {r.split for r in recs} == {"glide", "ADM", "synthbuster/glide", "dalle2"}
    assert {r.group for r in recs if r.split == "glide"} == {"genimage"}
    assert "prefixed with the data set: synthbuster/glide" in capsys.readouterr().err


@pytest.mark.parametrize("suite,make,expected", [
    ("genimage", make_genimage, set(GENIMAGE)),
    ("aigcdetect", make_aigc, {*"progan stylegan biggan cyclegan stargan gaugan stylegan2 whichfaceisreal".split(),
                               *"ADM Glide Midjourney stable_diffusion_v_1_4 stable_diffusion_v_1_5 VQDM wukong DALLE2".split()}),
    ("wildrf", make_wildrf, {"reddit", "twitter", "facebook"}),
    ("chameleon", make_chameleon, {"Chameleon"}),
])
def test_suites_keep_the_published_splits(tmp_path, plugins, capsys, suite, make, expected):
    from sidbench.run.suites import suite_data

    make(tmp_path / "bench")
    touch(tmp_path / "bench" / "zz_extra" / "0_real", 1)  # beside the tree: not part of any suite
    records, plan, _ = suite_data(suite, [str(tmp_path)], plugins)
    assert {r.split for r in records} == expected
    assert set(plan.dataset_of.values()) == {suite}


def test_ufd_suite_names_the_sets_outside_the_published_twenty(tmp_path, plugins, capsys):
    from sidbench.run.suites import suite_data

    root = make_ufd_tree(tmp_path)
    touch(root / "test" / "whichfaceisreal" / "0_real", 1)
    touch(root / "test" / "whichfaceisreal" / "1_fake", 1)
    records, _, _ = suite_data("ufd", [str(root)], plugins)
    assert {r.split for r in records} == set(EXPECTED_GROUPS)
    assert "outside its published protocol, left out: whichfaceisreal" in capsys.readouterr().err


def test_run_reads_wildrf_roles_for_fitting(tmp_path, plugins):
    from sidbench.run.config import RunConfig
    from sidbench.run.inputs import run_data

    w = make_wildrf(tmp_path)
    data = run_data(RunConfig(data=[str(w)], train=str(w), val=str(w)), plugins)
    assert {r.split for r in data.test} == {"reddit", "twitter", "facebook"}
    assert {r.split for r in data.train} == {"train"} and len(data.train) == 15
    assert {r.split for r in data.val} == {"val"} and len(data.val) == 7


@pytest.mark.slow  # a full run with the tiny backbone: about 40 s on a shared 2-core machine
def test_wildrf_suite_runs_end_to_end(tmp_path):
    from sidbench.cli import main
    import pandas as pd

    rng = np.random.default_rng(0)
    for p in ("reddit", "twitter", "facebook"):
        for label, sub in ((0, "0_real"), (1, "1_fake")):
            for i in range(2):
                write_image(tmp_path / "data" / "WildRF" / "test" / p / sub / f"{i}.jpg", rng, (32, 32), fake=bool(label),
                            fmt="JPEG")
    out = tmp_path / "out"  # outside --data: a results folder inside the data is refused
    assert main(["run", "--data", str(tmp_path / "data"), "--suite", "wildrf", "--detectors", "clip_zeroshot",
                 "--backbone", "clip-tiny", "--out", str(out), "--no-progress"]) == 0
    m = pd.read_csv(out / "metrics.csv", keep_default_na=False)
    assert set(m.split) == {"reddit", "twitter", "facebook", "mean:wildrf", "mean:all"}
    assert set(m[~m.split.str.startswith("mean")].n_real) == {2}


def test_datasets_check_genimage_confound_and_jpeg_aligned_suggestion(tmp_path, capsys):
    from PIL import Image

    from sidbench.cli import main

    rng = np.random.default_rng(3)
    unit = tmp_path / "ADM" / "imagenet_ai_0508_adm" / "val"
    for i in range(3):
        arr = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
        (unit / "nature").mkdir(parents=True, exist_ok=True)
        (unit / "ai").mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(unit / "nature" / f"ILSVRC2012_val_{i:08d}.JPEG", quality=96)
        Image.fromarray(arr[:32, :32]).save(unit / "ai" / f"{i}_adm_1.PNG")
    assert main(["datasets", "check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "WARNING: split ADM: reals are JPEG and fakes are PNG" in out
    assert "| ADM     | JPEG / PNG" in out and "format, size" in out
    assert "SUGGESTION: reals and fakes differ in compression in 1 split(s) (ADM)" in out
    assert out.rstrip().endswith(f"sidbench run --data {tmp_path} --perturb jpeg:96")


def test_datasets_check_reads_the_training_part(tmp_path, capsys):
    from sidbench.cli import main

    rng = np.random.default_rng(4)
    unit = tmp_path / "imagenet_ai_0419_sdv4"
    for part in ("train", "val"):
        for i in range(2):
            write_image(unit / part / "nature" / f"{i}.png", rng, (32, 32))
            write_image(unit / part / "ai" / f"{i}.png", rng, (32, 32), fake=True)
    write_image(unit / "train" / "ai" / "extra.png", rng, (32, 32), fake=True)
    assert main(["datasets", "check", str(tmp_path), "--role", "train"]) == 0
    out = capsys.readouterr().out
    assert "| stable_diffusion_v_1_4 | fake    |       3 |" in out and "SUGGESTION" not in out


def test_quickstart_root_gives_each_role_its_part(plugins, tmp_path):
    from sidbench.data.quickstart import ensure_quickstart
    from sidbench.run.inputs import records_of

    root = str(ensure_quickstart(tmp_path / "quickstart", counts={"train": 2, "val": 1, "test": 2}, workers=1))
    test, train = records_of(root, plugins), records_of(root, plugins, role="train")
    assert {r.split for r in test} == {"gan_a", "gan_b", "diff_a", "diff_b"} and "/test/" in test[0].path
    assert {r.split for r in train} == {"gan_a", "diff_a"} and all("/train/" in r.path for r in train)
