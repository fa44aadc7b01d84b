"""The published test sets as distributed: miniature trees of each layout give exactly their published
test splits with the right real/fake counts (files are empty: reading records opens no image)."""
from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pytest

from sidbench.api import DataError

pytestmark = pytest.mark.usefixtures("messages")  # layouts' notes on stderr, as the CLI shows them

GENIMAGE = {"ADM": "imagenet_ai_0508_adm", "BigGAN": "imagenet_ai_0419_biggan", "glide": "imagenet_glide",
            "Midjourney": "imagenet_midjourney", "stable_diffusion_v_1_4": "imagenet_ai_0419_sdv4",
            "stable_diffusion_v_1_5": "imagenet_ai_0424_sdv5", "VQDM": "imagenet_ai_0419_vqdm",
            "wukong": "imagenet_ai_0424_wukong"}
AIGC_GAN = ("progan", "stylegan", "biggan", "cyclegan", "stargan", "gaugan", "stylegan2", "whichfaceisreal")
AIGC_DIFF = ("ADM", "Glide", "Midjourney", "stable_diffusion_v_1_4", "stable_diffusion_v_1_5", "VQDM", "wukong", "DALLE2")
AIGC_CLASSES = {"progan": ("airplane", "cat"), "stylegan": ("bedroom",), "stylegan2": ("car", "horse"),
                "cyclegan": ("apple", "zebra", "winter")}
DRCT = ("ldm-text2im-large-256", "stable-diffusion-v1-4", "stable-diffusion-v1-5", "stable-diffusion-2-1",
        "stable-diffusion-xl-base-1.0", "stable-diffusion-xl-refiner-1.0", "sd-turbo", "sdxl-turbo", "lcm-lora-sdv1-5",
        "lcm-lora-sdxl", "sd-controlnet-canny", "sd21-controlnet-canny", "controlnet-canny-sdxl-1.0",
        "stable-diffusion-inpainting", "stable-diffusion-2-inpainting", "stable-diffusion-xl-1.0-inpainting-0.1")


def touch(folder: Path, n: int, name: str = "{i:04d}.png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / name.format(i=i)).write_bytes(b"")


def counts(records) -> Counter:
    return Counter((r.split, r.label) for r in records)


def read(root, plugins, **kw):
    from sidbench.data.layout import resolve_records

    return resolve_records(root, plugins, **kw)


# GenImage -----------------------------------------------------------------------------------------------

def make_genimage(root: Path, generators=tuple(GENIMAGE), parent=lambda g: g) -> Path:
    """``<Generator>/<subfolder>/{train,val}/{ai,nature}``: generator i has i+1 reals and i+2 fakes in val,
    ten more of each in train; ADM's fakes are upper-case .PNG and reals .JPEG, as distributed."""
    for i, g in enumerate(generators):
        unit = root / parent(g) / GENIMAGE[g] if parent(g) else root / GENIMAGE[g]
        for part, extra in (("val", 0), ("train", 10)):
            touch(unit / part / "nature", i + 1 + extra, "ILSVRC2012_val_{i:08d}.JPEG")
            touch(unit / part / "ai", i + 2 + extra, "{i}_adm_1.PNG" if g == "ADM" else "{i:03d}.png")
    return root


def test_genimage_eight_val_splits(tmp_path, plugins, capsys):
    recs = read(make_genimage(tmp_path), plugins)
    assert counts(recs) == {(g, label): i + 1 + label for i, g in enumerate(GENIMAGE) for label in (0, 1)}
    assert {r.group for r in recs} == {"genimage"}
    assert all(Path(r.path).parts[-3] == "val" for r in recs)
    assert all(Path(r.path).parts[-2] == ("ai" if r.label else "nature") for r in recs)
    assert {r.generator for r in recs if r.label} == set(GENIMAGE)
    assert capsys.readouterr().err == ""


def test_genimage_train_part_for_training(tmp_path, plugins):
    from sidbench.run.inputs import records_of

    root = make_genimage(tmp_path)
    train = records_of(str(root / "stable_diffusion_v_1_4"), plugins, role="train")
    assert counts(train) == {("stable_diffusion_v_1_4", 0): 15, ("stable_diffusion_v_1_4", 1): 16}
    assert all("/train/" in r.path for r in train)
    test = records_of(str(root / "stable_diffusion_v_1_4"), plugins)
    assert counts(test) == {("stable_diffusion_v_1_4", 0): 5, ("stable_diffusion_v_1_4", 1): 6}


@pytest.mark.parametrize("variant", ["no generator level", "lower-case generators", "extra top folder"])
def test_genimage_variant_copies(tmp_path, plugins, variant):
    if variant == "no generator level":
        root = make_genimage(tmp_path, parent=lambda g: None)
    elif variant == "lower-case generators":
        root = make_genimage(tmp_path, parent=str.lower)
    else:
        make_genimage(tmp_path / "GenImage")
        root = tmp_path
    assert {r.split for r in read(root, plugins)} == set(GENIMAGE)


def test_genimage_unknown_subfolder_is_kept_as_other(tmp_path, plugins, capsys):
    root = make_genimage(tmp_path, generators=("ADM", "wukong"))
    touch(root / "myGen" / "imagenet_mygen" / "val" / "nature", 2)
    touch(root / "myGen" / "imagenet_mygen" / "val" / "ai", 3)
    recs = read(root, plugins)
    assert counts(recs)["imagenet_mygen", 1] == 3
    assert {r.group for r in recs if r.split == "imagenet_mygen"} == {"other"}
    err = capsys.readouterr().err
    assert "imagenet_mygen" in err and "6 of the 8 GenImage sets are missing" in err


# AIGCDetectBenchmark ------------------------------------------------------------------------------------

def make_aigc(root: Path, extra: tuple[str, ...] = ()) -> Path:
    """``test/<set>/...``: set k has k+1 reals and k+2 fakes per leaf; class-level sets have one leaf per class."""
    test = root / "test"
    for k, s in enumerate((*AIGC_GAN, *AIGC_DIFF, *extra)):
        for leaf in ([test / s / c for c in AIGC_CLASSES[s]] if s in AIGC_CLASSES else [test / s]):
            touch(leaf / "0_real", k + 1)
            touch(leaf / "1_fake", k + 2)
    return root


def test_aigcdetect_sixteen_sets_with_class_levels_merged(tmp_path, plugins, capsys):
    recs = read(make_aigc(tmp_path), plugins)
    expected = {}
    for k, s in enumerate((*AIGC_GAN, *AIGC_DIFF)):
        leaves = len(AIGC_CLASSES.get(s, (s,)))
        expected[s, 0], expected[s, 1] = leaves * (k + 1), leaves * (k + 2)
    assert counts(recs) == expected and len({r.split for r in recs}) == 16
    groups = {r.split: r.group for r in recs}
    assert {groups[s] for s in AIGC_GAN} == {"gan"} and {groups[s] for s in AIGC_DIFF} == {"diffusion"}
    assert capsys.readouterr().err == ""


def test_aigcdetect_unknown_sets_become_other_in_one_line(tmp_path, plugins, capsys):
    recs = read(make_aigc(tmp_path, extra=("sd_xl", "my_gan")), plugins)
    groups = {r.split: r.group for r in recs}
    assert groups["sd_xl"] == "diffusion" and groups["my_gan"] == "other" and len(groups) == 18
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "my_gan" in err[0] and "other" in err[0] and "sd_xl" not in err[0]


# WildRF -------------------------------------------------------------------------------------------------

def make_wildrf(root: Path) -> Path:
    w = root / "WildRF"
    touch(w / "train" / "0_real", 7)
    touch(w / "train" / "1_fake", 8)
    touch(w / "val" / "0_real", 3)
    touch(w / "val" / "1_fake", 4)
    for k, p in enumerate(("reddit", "twitter", "facebook")):
        touch(w / "test" / p / "0_real", k + 1)
        touch(w / "test" / p / "1_fake", k + 2)
    return w


def test_wildrf_platforms_are_the_test_splits(tmp_path, plugins):
    w = make_wildrf(tmp_path)
    expected = {("reddit", 0): 1, ("reddit", 1): 2, ("twitter", 0): 2, ("twitter", 1): 3,
                ("facebook", 0): 3, ("facebook", 1): 4}
    for root in (w, tmp_path, w / "test"):
        recs = read(root, plugins)
        assert counts(recs) == expected and {r.group for r in recs} == {"wildrf"}


def test_wildrf_train_and_val_are_the_fit_layouts(tmp_path, plugins):
    w = make_wildrf(tmp_path)
    assert counts(read(w, plugins, role="train")) == {("train", 0): 7, ("train", 1): 8}
    assert counts(read(w, plugins, role="val")) == {("val", 0): 3, ("val", 1): 4}
    with pytest.raises(DataError, match="no WildRF train/"):
        read(w / "test", plugins, dataset="wildrf", role="train")


# Chameleon ----------------------------------------------------------------------------------------------

def make_chameleon(root: Path, n_real: int = 4, n_fake: int = 3, uuid_names: bool = True) -> Path:
    test = root / "Chameleon" / "test"
    for sub, n in (("0_real", n_real), ("1_fake", n_fake)):
        (test / sub).mkdir(parents=True)
        for i in range(n):
            name = str(uuid.UUID(int=i + 100 * n)) if uuid_names else f"img{i}"
            (test / sub / f"{name}.jpg").write_bytes(b"")
    return root


def test_chameleon_one_split(tmp_path, plugins):
    root = make_chameleon(tmp_path)
    for r in (root, root / "Chameleon", root / "Chameleon" / "test"):
        recs = read(r, plugins)
        assert counts(recs) == {("Chameleon", 0): 4, ("Chameleon", 1): 3} and {x.group for x in recs} == {"chameleon"}


def test_chameleon_is_told_by_its_uuid_names_or_named(tmp_path, plugins):
    root = make_chameleon(tmp_path, uuid_names=False)
    assert {r.split for r in read(root, plugins)} == {"test"}  # any 0_real/1_fake folder: the generic layout
    assert {r.split for r in read(root, plugins, dataset="chameleon")} == {"Chameleon"}


# DRCT-2M ------------------------------------------------------------------------------------------------

def make_drct(root: Path, generators=DRCT, coco: str = "MSCOCO") -> Path:
    touch(root / coco / "val2017", 5, "{i:012d}.jpg")
    touch(root / coco / "train2017", 9, "{i:012d}.jpg")
    for k, g in enumerate(generators):
        touch(root / "DRCT-2M" / g / "val2017", k + 1, "{i:012d}.png")
        touch(root / "DRCT-2M" / g / "train2017", 2)
    return root


def test_drct_each_generator_against_all_coco_val_reals(tmp_path, plugins, capsys):
    root = make_drct(tmp_path)
    for r in (root, root / "DRCT-2M"):  # both roots, or DRCT-2M/ with MSCOCO/ beside it
        recs = read(r, plugins)
        assert counts(recs) == {(g, label): (5 if label == 0 else k + 1) for k, g in enumerate(DRCT) for label in (0, 1)}
        reals = sorted(str(p) for p in (root / "MSCOCO" / "val2017").iterdir())
        assert all(sorted(x.path for x in recs if x.split == g and x.label == 0) == reals for g in DRCT)
        assert {x.group for x in recs} == {"drct"} and all("/val2017/" in x.path for x in recs)
    assert capsys.readouterr().err == ""


def test_drct_needs_the_coco_reals(tmp_path, plugins):
    root = make_drct(tmp_path, generators=DRCT[:2], coco="elsewhere")
    with pytest.raises(DataError, match="MS-COCO val2017"):
        read(root / "DRCT-2M", plugins)


# Community Forensics ------------------------------------------------------------------------------------

def test_community_forensics_generator_folders(tmp_path, plugins, capsys):
    for k, g in enumerate(("Dalle3", "FLUX-dev", "GALIP")):
        touch(tmp_path / g / "real", k + 1, "{i}.jpg")
        touch(tmp_path / g / "fake", k + 3)
    touch(tmp_path / "only_fakes" / "fake", 2)
    (tmp_path / "index.csv").write_text("ImagePath,Label,GeneratorName\n")
    recs = read(tmp_path, plugins)
    assert counts(recs) == {("Dalle3", 0): 1, ("Dalle3", 1): 3, ("FLUX-dev", 0): 2, ("FLUX-dev", 1): 4,
                            ("GALIP", 0): 3, ("GALIP", 1): 5}
    assert {r.group for r in recs} == {"community_forensics"}
    assert "only_fakes" in capsys.readouterr().err  # left out, and said so
    train = read(tmp_path, plugins, role="train")  # training data may hold one class only
    assert counts(train)["only_fakes", 1] == 2


# CSV lists ----------------------------------------------------------------------------------------------

def test_csv_manifest_relative_paths_labels_and_splits(tmp_path, plugins):
    (tmp_path / "lists").mkdir()
    csv = tmp_path / "lists" / "mine.csv"
    csv.write_text("path,label,split,generator\n../img/a.png,0,s1,\n../img/b.png,real,s2,\n"
                   "../img/c.png,1,s1,sdxl\n../img/d.png,FAKE,s2,\n/abs/e.png,1,,\n\n")
    recs = read(csv, plugins)
    assert [(Path(r.path).name, r.label, r.split, r.generator, r.group) for r in recs] == [
        ("a.png", 0, "s1", "", "csv"), ("b.png", 0, "s2", "", "csv"), ("c.png", 1, "s1", "sdxl", "csv"),
        ("d.png", 1, "s2", "s2", "csv"), ("e.png", 1, "mine", "mine", "csv")]
    assert recs[0].path == str(tmp_path / "lists" / "../img/a.png") and recs[-1].path == "/abs/e.png"


def test_csv_bad_label_and_unknown_columns_are_one_line_errors(tmp_path, plugins):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\na.png,0\nb.png,maybe\n")
    with pytest.raises(DataError, match=r"bad.csv: line 3: label 'maybe' is neither 0/1 nor real/fake"):
        read(bad, plugins)
    odd = tmp_path / "odd.csv"
    odd.write_text("file,y\na.png,0\n")
    with pytest.raises(DataError, match="unknown CSV columns"):
        read(odd, plugins)


def test_synthwildx_list_pairs_all_reals_with_each_generator(tmp_path, plugins):
    lines = ["url,filename,typ"] + [f"https://x/{t}{i},{t}/{t}{i}.jpg,{t}"
                                    for t, n in (("real", 3), ("dalle3", 2), ("firefly", 1), ("midjourney_v5", 2))
                                    for i in range(n)]
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    recs = read(tmp_path / "list.csv", plugins)
    assert counts(recs) == {("dalle3", 0): 3, ("dalle3", 1): 2, ("firefly", 0): 3, ("firefly", 1): 1,
                            ("midjourney_v5", 0): 3, ("midjourney_v5", 1): 2}
    assert {r.generator for r in recs if r.label} == {"dalle3", "firefly", "midjourney_v5"}
    assert all(r.path.startswith(str(tmp_path / "real")) for r in recs if r.label == 0)


def test_spai_csv_rows_of_the_role(tmp_path, plugins):
    (tmp_path / "raise_vs_sd3.csv").write_text(
        "image,class,split\nRAISE-1k/tiff/r1.tif,0,test\nRAISE-1k/tiff/r2.tif,0,train\n"
        "stable-diffusion-3/a.webp,1,test\nstable-diffusion-3/b.webp,1,test\n")
    recs = read(tmp_path / "raise_vs_sd3.csv", plugins)
    assert counts(recs) == {("raise_vs_sd3", 0): 1, ("raise_vs_sd3", 1): 2}
    assert counts(read(tmp_path / "raise_vs_sd3.csv", plugins, role="train")) == {("raise_vs_sd3", 0): 1}
    with pytest.raises(DataError, match="no rows with split = val"):
        read(tmp_path / "raise_vs_sd3.csv", plugins, role="val")


def test_bfree_list_real_and_fake_words(tmp_path, plugins):
    (tmp_path / "BFree_viral_images.csv").write_text(
        "filename,label,source_id,url\nREAL/s1/img00001.jpg,REAL,s1,u\nFAKE/s2/img00002.jpg,FAKE,s2,u\n"
        "FAKE/s2/img00003.png,FAKE,s2,u\n")
    recs = read(tmp_path / "BFree_viral_images.csv", plugins)
    assert counts(recs) == {("BFree_viral_images", 0): 1, ("BFree_viral_images", 1): 2}


def test_a_file_no_layout_reads_is_a_clear_error(tmp_path, plugins):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DataError, match="is a file, not a folder, and no layout reads it"):
        read(tmp_path / "x.txt", plugins)
    touch(tmp_path / "synthwildx" / "real", 1, "{i}.jpg")  # downloaded images beside their list
    (tmp_path / "synthwildx" / "list.csv").write_text("url,filename,typ\n")
    with pytest.raises(DataError, match=r"or give its CSV list \(--data .*synthwildx/list.csv\)"):
        read(tmp_path / "synthwildx", plugins)
