"""Published trees as their READMEs place them: UniversalFakeDetect's ``datasets/test`` plus a separate
``diffusion_datasets`` root, Community Forensics reals in their own source folders, GenImage's README
folder names, and CSV lists that give one image both labels."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_datasets_layouts import counts, read, touch
from test_datasets_ufd import EXPECTED_GROUPS, LAION, make_ufd_tree

from sidbench.api import DataError

pytestmark = pytest.mark.usefixtures("messages")  # layouts' notes on stderr, as the CLI shows them

CNN_SETS = [s for s, g in EXPECTED_GROUPS.items() if g != "diffusion"]
DIFFUSION_SETS = [s for s, g in EXPECTED_GROUPS.items() if g == "diffusion"]


def make_readme_tree(root: Path) -> tuple[Path, Path]:
    """UniversalFakeDetect's README: CNNDetection's sets in ``datasets/test``, the diffusion sets in
    ``./diffusion_datasets`` beside ``datasets/``. Returns (datasets/test, diffusion_datasets)."""
    make_ufd_tree(root / "tmp")
    test = root / "datasets" / "test"
    test.parent.mkdir(parents=True)
    shutil.move(str(root / "tmp" / "test" / "diffusion_datasets"), str(root / "diffusion_datasets"))
    shutil.move(str(root / "tmp" / "test"), str(test))
    (root / "tmp").rmdir()
    return test, root / "diffusion_datasets"


def check_twenty_paired(records) -> None:
    c = counts(records)
    assert {s for s, _ in c} == set(EXPECTED_GROUPS)  # the 12 CNNDetection sets are kept
    assert all(c[s, 0] > 0 and c[s, 1] > 0 for s in EXPECTED_GROUPS)  # no one-class split
    assert c["guided", 0] == 2 and all(c[s, 0] == 3 for s in LAION)  # imagenet reals for guided, laion for the rest
    for r in records:
        if r.label == 0 and r.split in LAION:
            assert Path(r.path).parts[-3:-1] == ("laion", "0_real")
        if r.label == 0 and r.split == "guided":
            assert Path(r.path).parts[-3:-1] == ("imagenet", "0_real")
    assert {r.split: r.group for r in records} == EXPECTED_GROUPS


def test_ufd_readme_tree_as_one_root(tmp_path, plugins, capsys):
    make_readme_tree(tmp_path)
    check_twenty_paired(read(tmp_path, plugins))
    assert "warning" not in capsys.readouterr().err


def test_ufd_two_roots_given_together_pair_and_warn_about_nothing(tmp_path, plugins, capsys):
    from sidbench.run.inputs import records_of

    test, diffusion = make_readme_tree(tmp_path)
    check_twenty_paired(records_of([str(test), str(diffusion)], plugins))
    assert "missing" not in capsys.readouterr().err  # each root's sets are in the other


def test_ufd_suite_reads_both_roots(tmp_path, plugins, capsys):
    from sidbench.run.suites import suite_data

    test, diffusion = make_readme_tree(tmp_path)
    records, plan, _ = suite_data("ufd", [str(test), str(diffusion)], plugins)
    check_twenty_paired(records)
    assert set(plan.dataset_of.values()) == {"ufd"}
    assert "missing" not in capsys.readouterr().err


def test_ufd_diffusion_root_alone_is_paired_and_names_what_is_missing(tmp_path, plugins, capsys):
    _, diffusion = make_readme_tree(tmp_path)
    recs = read(diffusion, plugins)
    c = counts(recs)
    assert {s for s, _ in c} == set(DIFFUSION_SETS) and all(c[s, 0] and c[s, 1] for s in DIFFUSION_SETS)
    err = capsys.readouterr().err
    assert "12 of the 20 UniversalFakeDetect sets are missing" in err and "progan" in err


# Community Forensics -------------------------------------------------------------------------------------

def test_community_forensics_reals_in_their_own_source_folders(tmp_path, plugins, capsys):
    touch(tmp_path / "ImageNet" / "real", 2, "{i}.jpg")  # the README's local-data example
    touch(tmp_path / "LAION" / "real", 3, "{i}.png")
    touch(tmp_path / "FLUX-dev" / "fake", 4)
    touch(tmp_path / "GALIP" / "fake", 1)
    touch(tmp_path / "Dalle3" / "real", 1, "r{i}.jpg")  # a generator folder with its own reals keeps them
    touch(tmp_path / "Dalle3" / "fake", 2)
    recs = read(tmp_path, plugins)
    assert counts(recs) == {("FLUX-dev", 0): 5, ("FLUX-dev", 1): 4, ("GALIP", 0): 5, ("GALIP", 1): 1,
                            ("Dalle3", 0): 1, ("Dalle3", 1): 2}
    flux_reals = {Path(r.path).parent.parent.name for r in recs if r.split == "FLUX-dev" and r.label == 0}
    assert flux_reals == {"ImageNet", "LAION"}
    err = capsys.readouterr().err
    assert "ImageNet, LAION are paired with each generator folder holding only fakes: FLUX-dev, GALIP" in err


def test_community_forensics_real_only_sources_are_real_only_splits(tmp_path, plugins):
    touch(tmp_path / "ImageNet" / "real", 2, "{i}.jpg")
    touch(tmp_path / "Dalle3" / "real", 1, "r{i}.jpg")
    touch(tmp_path / "Dalle3" / "fake", 2)
    assert counts(read(tmp_path, plugins)) == {("ImageNet", 0): 2, ("Dalle3", 0): 1, ("Dalle3", 1): 2}


# GenImage ------------------------------------------------------------------------------------------------

README_GENIMAGE = ("Midjourney", "Stable Diffusion V1.4", "Stable Diffusion V1.5", "ADM", "GLIDE", "Wukong", "VQDM",
                   "BigGAN")
SPLITS = ("Midjourney", "stable_diffusion_v_1_4", "stable_diffusion_v_1_5", "ADM", "glide", "wukong", "VQDM", "BigGAN")


def make_genimage_readme(root: Path) -> Path:
    """GenImage's README tree: ``<Generator>/{train,val}/{ai,nature}`` with its folder names."""
    for i, g in enumerate(README_GENIMAGE):
        for part in ("train", "val"):
            touch(root / g / part / "nature", i + 1, "n{i}.JPEG")
            touch(root / g / part / "ai", i + 2, "a{i}.png")
    return root


def test_genimage_readme_folder_names_are_the_eight_generators(tmp_path, plugins, capsys):
    from sidbench.run.suites import suite_data

    root = make_genimage_readme(tmp_path)
    recs = read(root, plugins)
    assert {r.split: r.group for r in recs} == {s: "genimage" for s in SPLITS}
    assert counts(recs)["stable_diffusion_v_1_4", 1] == 3
    records, _, _ = suite_data("genimage", [str(root)], plugins)
    assert {r.split for r in records} == set(SPLITS)  # --suite genimage keeps 8 of 8
    err = capsys.readouterr().err
    assert "missing" not in err and "other" not in err and "left out" not in err


# CSV lists -----------------------------------------------------------------------------------------------

def test_csv_image_with_both_labels_in_one_split_is_refused_naming_both_lines(tmp_path, plugins):
    csv = tmp_path / "list.csv"
    csv.write_text("path,label,split\na.png,0,s1\nb.png,1,s1\n./a.png,fake,s1\n")
    with pytest.raises(DataError, match=r"list.csv: lines 2 and 4 give '\./a.png' both labels in split 's1'"):
        read(csv, plugins)
    ok = tmp_path / "ok.csv"
    ok.write_text("path,label,split\na.png,0,s1\na.png,1,s2\n")  # other splits: allowed
    assert len(read(ok, plugins)) == 2
    grip = tmp_path / "grip.csv"  # a grip list's reals belong to every split
    grip.write_text("filename,typ\nx.png,real\ny.png,dalle3\nx.png,dalle3\n")
    with pytest.raises(DataError, match="lines 2 and 4"):
        read(grip, plugins)


def test_a_folder_of_your_own_named_like_a_diffusion_set_is_not_taken_for_ufd(tmp_path, plugins):
    for split in ("dalle", "guided"):
        touch(tmp_path / "mine" / split / "0_real", 2)
        touch(tmp_path / "mine" / split / "1_fake", 3)
    c = counts(read(tmp_path / "mine", plugins))
    assert c == {("dalle", 0): 2, ("dalle", 1): 3, ("guided", 0): 2, ("guided", 1): 3}  # their own reals
