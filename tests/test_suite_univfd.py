"""``--suite ufd-univfd``: UniversalFakeDetect's validate.py protocol (its 19 sets, its seeded per-class
sampling), against a transcription of the reference's own steps; plain ``ufd`` keeps every image."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

SETS_19 = ("progan", "cyclegan", "biggan", "stylegan", "gaugan", "stargan", "deepfake", "seeingdark", "san", "crn",
           "imle", "guided", "ldm_200", "ldm_200_cfg", "ldm_100", "glide_100_27", "glide_50_27", "glide_100_10",
           "dalle")


def touch(folder: Path, n: int, stem: str = "", ext: str = "png") -> None:
    """Empty files: listing and sampling never open them."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{stem}{i:05d}.{ext}").touch()


def make_tree(root: Path) -> Path:
    """progan: 2 categories x 600 per class (sampled to 1000); biggan 150 per class (falls to 100);
    stylegan2 (not a UnivFD set); guided 1000 per class (kept whole); odd file names in progan."""
    test = root / "test"
    for cat in ("car", "cat"):
        for sub in ("0_real", "1_fake"):
            touch(test / "progan" / cat / sub, 600, stem=cat)
    (test / "progan" / "car" / "0_real" / "x.PNG").touch()  # not listed by validate.py (case-sensitive)
    (test / "progan" / "car" / "0_real" / "a.b.png").touch()  # second dot-field is "b": not listed
    for sub in ("0_real", "1_fake"):
        touch(test / "biggan" / sub, 150)
        touch(test / "stylegan2" / "car" / sub, 5)
    touch(test / "diffusion_datasets" / "imagenet" / "0_real", 1000)
    touch(test / "diffusion_datasets" / "guided" / "1_fake", 1000)
    return root


def reference_subset(real: list[str], fake: list[str], max_sample: int = 1000) -> tuple[list[str], list[str]]:
    """validate.py's read_path after set_seed(), written as it is (global random, reals then fakes)."""
    random.seed(0)
    if max_sample > len(real) or max_sample > len(fake):
        max_sample = 100
    real, fake = list(real), list(fake)
    random.shuffle(real)
    random.shuffle(fake)
    return real[:max_sample], fake[:max_sample]


def listed(folder: Path, must: str) -> list[str]:
    exts = ["png", "jpg", "JPEG", "jpeg", "bmp"]
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.name.split(".")[1] in exts and must in str(p))


def test_univfd_suite_samples_as_validate_py(messages, tmp_path, plugins, capsys):
    from sidbench.run.suites import suite_data

    root = make_tree(tmp_path)
    recs, plan, _ = suite_data("ufd-univfd", [str(root)], plugins)
    counts = Counter((r.split, r.label) for r in recs)
    assert counts == {("progan", 0): 1000, ("progan", 1): 1000, ("biggan", 0): 100, ("biggan", 1): 100,
                      ("guided", 0): 1000, ("guided", 1): 1000}
    test = root / "test"
    for split, real_dir, fake_dir in (("progan", test / "progan", test / "progan"),
                                      ("biggan", test / "biggan", test / "biggan"),
                                      ("guided", test / "diffusion_datasets" / "imagenet",
                                       test / "diffusion_datasets" / "guided")):
        want = reference_subset(listed(real_dir, "0_real"), listed(fake_dir, "1_fake"))
        got = ([r.path for r in recs if r.split == split and r.label == 0],
               [r.path for r in recs if r.split == split and r.label == 1])
        assert got == want, split
    assert not any(r.split == "stylegan2" for r in recs)
    err = capsys.readouterr().err
    assert "stylegan2" not in err.split("left out:")[-1]  # not a UnivFD set, so not reported missing either
    assert set(plan.dataset_of) == {"progan", "biggan", "guided"}


def test_plain_ufd_suite_keeps_every_image_and_stylegan2(tmp_path, plugins):
    from sidbench.run.suites import suite_data

    recs, _, _ = suite_data("ufd", [str(make_tree(tmp_path))], plugins)
    counts = Counter((r.split, r.label) for r in recs)
    assert counts["progan", 0] == 1202 and counts["biggan", 1] == 150 and counts["stylegan2", 0] == 5


def test_univfd_sets_are_its_dataset_paths():
    from sidbench.datasets.ufd import SPLITS
    from sidbench.run.suites import SUITES, UNIVFD_SETS

    assert UNIVFD_SETS == SETS_19 and set(SETS_19) == set(SPLITS) - {"stylegan2"}
    (part,) = SUITES["ufd-univfd"].parts
    assert part.dataset == "ufd" and part.splits == SETS_19


@pytest.mark.parametrize("n_real,n_fake,keep", [(1000, 1000, 1000), (999, 2000, 100), (30, 40, (30, 40))])
def test_fallback_to_100_and_small_sets(n_real, n_fake, keep):
    from sidbench.api import Record
    from sidbench.run.suites import univfd_sample

    recs = [Record(f"/d/0_real/{i}.png", 0, "s", "g", "") for i in range(n_real)]
    recs += [Record(f"/d/1_fake/{i}.png", 1, "s", "g", "s") for i in range(n_fake)]
    out = Counter(r.label for r in univfd_sample(recs))
    assert (out[0], out[1]) == (keep if isinstance(keep, tuple) else (keep, keep))
