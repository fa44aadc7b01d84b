"""Suites: `--suite paper` over a root holding both trees gives one leaderboard; published protocols
per dataset; `datasets check` warns on real/fake format differences."""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from conftest import write_image
from test_datasets_synthbuster import GENERATORS, make_synthbuster_tree
from test_datasets_ufd import EXPECTED_GROUPS, make_ufd_tree

pytestmark = pytest.mark.usefixtures("messages")  # layouts' notes on stderr, as the CLI shows them


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """One `sidbench run --suite paper` (clip_zeroshot on clip-tiny), with clip_zeroshot given RINE's
    Synthbuster rule so the per-dataset protocol shows up in the results."""
    from sidbench.run import suites
    from sidbench.cli import main

    root = tmp_path_factory.mktemp("paper")
    make_ufd_tree(root)
    make_synthbuster_tree(root, n_real=2, n_fake=1)
    out = tmp_path_factory.mktemp("paper-out") / "out"  # outside --data (an --out inside it is refused)
    paper = suites.SUITES["paper"]
    patched = suites.Suite(paper.name, paper.description, paper.parts,
                           (*paper.protocols, ("clip_zeroshot", "synthbuster", "ten_crop")))
    mp = pytest.MonkeyPatch()
    mp.setitem(suites.SUITES, "paper", patched)
    try:
        args = ["run", "--data", str(root), "--suite", "paper", "--detectors", "clip_zeroshot",
                "--backbone", "clip-tiny", "--out", str(out), "--no-progress"]
        assert main(args) == 0
        first = (out / "scores.csv").read_text()
        assert main(args) == 0  # the same command again resumes: nothing left to do
    finally:
        mp.undo()
    return out, first


def test_paper_suite_one_leaderboard(paper_run):
    out, _ = paper_run
    m = pd.read_csv(out / "metrics.csv", keep_default_na=False)
    rows = {(r.split, r.perturbation) for r in m.itertuples()}
    for split in EXPECTED_GROUPS:  # GAN and diffusion rows, clean and at every JPEG quality
        for pert in ("none", "jpeg40", "jpeg65", "jpeg90"):
            assert (split, pert) in rows
    for g in GENERATORS:  # Synthbuster clean only
        assert (g, "none") in rows and (g, "jpeg40") not in rows
    for mean in ("mean:gan", "mean:diffusion", "mean:synthbuster", "mean:all"):
        assert (mean, "none") in rows
    assert ("mean:synthbuster", "jpeg40") not in rows and ("mean:gan", "jpeg40") in rows
    # group means are unweighted means over splits
    clean = m[m.perturbation == "none"].set_index("split")
    gan = [s for s, g in EXPECTED_GROUPS.items() if g == "gan"]
    assert clean.loc["mean:gan", "acc"] == pytest.approx(clean.loc[gan, "acc"].astype(float).mean())
    board = (out / "leaderboard.md").read_text()
    assert "stable-diffusion-xl" in board and "mean:synthbuster" in board and "`jpeg90`" in board


def test_shared_reals_scored_per_split_and_protocols(paper_run):
    out, first = paper_run
    s = pd.read_csv(out / "scores.csv", keep_default_na=False)
    assert (out / "scores.csv").read_text() == first  # resumed run added nothing
    sb = s[s.group == "synthbuster"]
    assert len(sb) == 9 * (2 + 1)  # both RAISE reals in each of the 9 splits
    reals = sb[sb.label == 0]
    assert reals.groupby("path")["split"].nunique().tolist() == [9, 9]
    assert reals.groupby("path")["logit"].nunique().tolist() == [1, 1]  # one backbone pass per image
    assert set(sb.protocol) == {"ten_crop"} and set(s[s.group != "synthbuster"].protocol) == {"resize_center_crop"}
    m = pd.read_csv(out / "metrics.csv", keep_default_na=False)
    assert m.columns[-1] == "protocol"
    assert set(m[m.group == "synthbuster"].protocol) == {"ten_crop"}
    assert m.set_index(["split", "perturbation"]).loc[("mean:all", "none"), "protocol"] == "resize_center_crop+ten_crop"


def test_score_plan_rules():
    from types import SimpleNamespace

    from sidbench.api import Record
    from sidbench.run.suites import ScorePlan

    plan = ScorePlan({"dalle2": "synthbuster", "progan": "ufd"}, {"progan": {"jpeg40"}},
                     (("rine", "synthbuster", "ten_crop"),))
    sb, pg = Record("a.png", 0, "dalle2"), Record("b.png", 0, "progan")
    assert plan.protocol(SimpleNamespace(name="rine.progan4"), sb) == "ten_crop"
    assert plan.protocol(SimpleNamespace(name="univfd"), sb) is None
    assert plan.protocol(SimpleNamespace(name="rine.progan4"), pg) is None
    assert plan.wants("jpeg40", pg) and not plan.wants("jpeg40", sb) and plan.wants("none", sb)


def test_suite_errors(tmp_path, capsys):
    from sidbench.cli import main

    make_ufd_tree(tmp_path, skip=tuple(EXPECTED_GROUPS)[1:])  # progan only
    assert main(["run", "--data", str(tmp_path), "--suite", "papr", "--detectors", "clip_zeroshot"]) == 2
    assert "Did you mean 'paper'" in capsys.readouterr().err
    assert main(["run", "--data", str(tmp_path / "nothing"), "--suite", "synthbuster", "--detectors", "clip_zeroshot"]) == 2
    assert "no synthbuster data" in capsys.readouterr().err


def test_datasets_check_warns_on_format_and_lists_unreadable(tmp_path, capsys):
    from sidbench.cli import main

    rng = np.random.default_rng(5)
    for i in range(3):
        write_image(tmp_path / "s" / "0_real" / f"{i}.jpg", rng, (32, 32), fmt="JPEG")
        write_image(tmp_path / "s" / "1_fake" / f"{i}.png", rng, (32, 32), fake=True)
    (tmp_path / "s" / "1_fake" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert main(["datasets", "check", str(tmp_path), "--sample", "0"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: split s: reals are JPEG and fakes are PNG" in out
    assert "UNREADABLE: " in out and "broken.png" in out
    # same format and size on both sides: no warning
    for i in range(3):
        write_image(tmp_path / "t" / "0_real" / f"{i}.png", rng, (32, 32))
        write_image(tmp_path / "t" / "1_fake" / f"{i}.png", rng, (32, 32), fake=True)
    assert main(["datasets", "check", str(tmp_path / "t")]) == 0
    assert "WARNING" not in capsys.readouterr().out


def test_datasets_check_jpeg_quality_and_resolution(tmp_path, capsys):
    from PIL import Image

    from sidbench.cli import main

    rng = np.random.default_rng(6)
    for i in range(2):
        arr = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        (tmp_path / "s" / "0_real").mkdir(parents=True, exist_ok=True)
        (tmp_path / "s" / "1_fake").mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(tmp_path / "s" / "0_real" / f"{i}.jpg", quality=95)
        Image.fromarray(arr[:32, :32]).save(tmp_path / "s" / "1_fake" / f"{i}.jpg", quality=70)
    assert main(["datasets", "check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "reals are JPEG quality ~95 and fakes ~70" in out
    assert "share no resolution (reals mostly 40x40, fakes mostly 32x32)" in out
