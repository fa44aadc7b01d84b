"""Synthbuster: every generator folder paired with all RAISE reals; shared reals keep one row per split."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import write_image

pytestmark = pytest.mark.usefixtures("messages")  # layouts' notes on stderr, as the CLI shows them

GENERATORS = ("dalle2", "dalle3", "firefly", "glide", "midjourney-v5", "stable-diffusion-1-3",
              "stable-diffusion-1-4", "stable-diffusion-2", "stable-diffusion-xl")


def make_synthbuster_tree(root: Path, n_real: int = 3, n_fake: int = 2, generators=GENERATORS, size=(32, 32)) -> Path:
    """``root/synthbuster/<generator>/`` (with a prompts.csv) and ``root/RAISEpng/``."""
    rng = np.random.default_rng(2)
    for i in range(n_real):
        write_image(root / "RAISEpng" / f"r{i:04d}.png", rng, size)
    for g in generators:
        for i in range(n_fake):
            write_image(root / "synthbuster" / g / f"{g}_{i}.png", rng, size, fake=True)
        (root / "synthbuster" / g / "prompts.csv").write_text("image,prompt\nx.png,a cat\n")
    return root


@pytest.fixture
def layout():
    from sidbench.datasets.synthbuster import SynthbusterLayout

    return SynthbusterLayout()


def test_every_generator_against_all_reals(tmp_path, layout, capsys):
    root = make_synthbuster_tree(tmp_path)
    recs = layout.records(root)
    assert sorted({r.split for r in recs}) == sorted(GENERATORS)
    assert {r.group for r in recs} == {"synthbuster"}
    counts = Counter((r.split, r.label) for r in recs)
    reals = sorted(str(p) for p in (root / "RAISEpng").iterdir())
    for g in GENERATORS:
        assert counts[g, 0] == 3 and counts[g, 1] == 2  # prompts.csv is not an image
        assert sorted(r.path for r in recs if r.split == g and r.label == 0) == reals
    assert not any(r.path.endswith(".csv") for r in recs)
    assert "warning" not in capsys.readouterr().err


def test_recognised_from_root_or_synthbuster_folder(tmp_path, plugins, layout):
    from sidbench.data.layout import resolve_records

    root = make_synthbuster_tree(tmp_path, generators=GENERATORS[:2])
    assert {r.split for r in resolve_records(root, plugins)} == set(GENERATORS[:2])
    assert len(layout.records(root / "synthbuster")) == 2 * (3 + 2)


def test_missing_reals_is_an_error_and_missing_generators_warn(tmp_path, layout, capsys):
    from sidbench.api import DataError

    root = make_synthbuster_tree(tmp_path, generators=("dalle3",))
    layout.records(root)
    assert "dalle2" in capsys.readouterr().err
    import shutil

    shutil.rmtree(root / "RAISEpng")
    with pytest.raises(DataError, match="RAISEpng"):
        layout.records(root)


def test_score_log_keeps_shared_reals_per_split(tmp_path):
    """The same real path in two splits: resume must not treat the second split as done."""
    from sidbench.results.scores import finalize_scores
    from sidbench.results.score_log import ScoreLog

    row = lambda split, logit: ("det", split, "synthbuster", "", "none", "center_crop", "/r/a.png", 0,  # noqa: E731
                                repr(logit), "0.5")
    log = ScoreLog(tmp_path / "scores.csv")
    log.write([row("dalle2", 0.1)])
    log.close()
    log = ScoreLog(tmp_path / "scores.csv")  # resumed
    assert ("det", "none", "dalle2", "/r/a.png") in log.done
    assert ("det", "none", "firefly", "/r/a.png") not in log.done
    log.write([row("firefly", 0.1), row("firefly", 0.2)])  # a duplicate row of a re-run batch
    log.close()
    df = finalize_scores(tmp_path / "scores.csv")
    assert sorted(df["split"]) == ["dalle2", "firefly"]


def test_reals_inside_synthbuster_are_never_a_generator(tmp_path, layout, capsys):
    """GRIP's distribution: synthbuster/real_RAISE_1k/ (with README.txt and the licence PDF) inside the
    generators' folder, and RINE's sibling RAISEpng/ too: both are reals, neither is a split."""
    root = make_synthbuster_tree(tmp_path, generators=GENERATORS[:2])
    rng = np.random.default_rng(3)
    inside = tmp_path / "synthbuster" / "real_RAISE_1k"
    for i in range(4):
        write_image(inside / f"r{i:04d}.png", rng, (32, 32))
    (inside / "README.txt").write_text("RAISE-1k, resized")
    (inside / "RAISE_License.pdf").write_bytes(b"%PDF-1.4")
    for where in (tmp_path, tmp_path / "synthbuster"):
        recs = layout.records(where)
        assert {r.split for r in recs} == set(GENERATORS[:2])
        for g in GENERATORS[:2]:
            assert sorted(r.path for r in recs if r.split == g and r.label == 0) == sorted(
                str(p) for p in inside.glob("*.png"))
    err = capsys.readouterr().err
    assert f"using {inside}, not {tmp_path / 'RAISEpng'}" in err
    import shutil

    shutil.rmtree(tmp_path / "RAISEpng")  # only the inside folder: still recognised
    assert {r.split for r in layout.records(tmp_path)} == set(GENERATORS[:2])


def test_extended_generators_are_splits_too(tmp_path, layout, capsys):
    """The extended set (flux/, sd3_large/ next to real_RAISE_1k/, with stray .ipynb_checkpoints) and extra
    folders inside synthbuster/ are generators of their own."""
    rng = np.random.default_rng(4)
    ext = tmp_path / "extended"
    for i in range(3):
        write_image(ext / "real_RAISE_1k" / f"r{i}.png", rng, (32, 32))
    for g in ("flux", "sd3_large"):
        for i in range(2):
            write_image(ext / g / f"r{i}.png", rng, (32, 32), fake=True)
        write_image(ext / g / ".ipynb_checkpoints" / "x.png", rng, (32, 32))
    recs = layout.records(ext)
    assert Counter((r.split, r.label) for r in recs) == {("flux", 0): 3, ("flux", 1): 2, ("sd3_large", 0): 3,
                                                         ("sd3_large", 1): 2}
    assert "missing or empty" not in capsys.readouterr().err  # the extended set alone is not missing the nine
    root = make_synthbuster_tree(tmp_path / "sb", generators=GENERATORS[:1])
    write_image(root / "synthbuster" / "flux" / "r0.png", rng, (32, 32), fake=True)
    assert {r.split for r in layout.records(root)} == {GENERATORS[0], "flux"}
