"""docs/plugins.md: every code block runs, in order, as a reader would run them (plugin files saved in
plugins/, Python snippets executed, `sidbench` commands run) on small generated image folders."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_folder
from sidbench.cli import main

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "plugins.md"
FILE_HEADER = re.compile(r"# (plugins/\w+\.py)")


def guide_blocks() -> list[tuple[str, str]]:
    return re.findall(r"```(\w+)\n(.*?)```", GUIDE.read_text(), re.S)


def test_the_readme_links_the_guide():
    assert "(docs/plugins.md)" in (REPO / "README.md").read_text()


@pytest.mark.slow  # about a minute on 2 busy cores: eight commands on clip-tiny
def test_every_block_of_the_guide_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for seed, split in enumerate(("train", "val", "test")):
        make_folder(tmp_path / "data" / split, splits=("a", "b"), n=4, seed=seed)
    kinds = []
    for lang, body in guide_blocks():
        if lang == "python" and (m := FILE_HEADER.fullmatch(body.splitlines()[0])):
            (tmp_path / m.group(1)).parent.mkdir(exist_ok=True)
            (tmp_path / m.group(1)).write_text(body)
            kinds.append("file")
        elif lang == "python":
            exec(compile(body, str(GUIDE), "exec"), {"__name__": "docs_plugins_md"})
            kinds.append("python")
        elif lang == "bash":
            for line in filter(None, (ln.strip() for ln in body.splitlines())):
                argv = shlex.split(line)
                assert argv[0] == "sidbench", line
                assert main(argv[1:]) == 0, (line, capsys.readouterr().err)
            kinds.append("bash")
        else:
            pytest.fail(f"docs/plugins.md has a {lang!r} block that no test runs")
    assert kinds.count("file") == 5 and "python" in kinds and "bash" in kinds
    # what the commands should have produced
    scores = pd.read_csv(tmp_path / "knn-scores.csv", keep_default_na=False)
    assert len(scores) == 16 and set(scores["detector"]) == {"knn"} and (scores["skipped"] == "").all()
    both = pd.read_csv(tmp_path / "results" / "both" / "metrics.csv")
    assert {"highpass", "knn"} <= set(both["detector"])
    # the test images' fakes carry a checkerboard, which the 2x2 high-pass sees: the pixel detector learns it
    assert both.set_index(["detector", "split"]).loc[("highpass", "mean:all"), "acc"] > 0.9
    assert set(pd.read_csv(tmp_path / "results" / "listed" / "metrics.csv")["split"]) >= {"mixed"}
    assert set(pd.read_csv(tmp_path / "results" / "gamma" / "scores.csv")["perturbation"]) == {"none", "gamma0.8", "gamma1.25"}
    assert "knn" in set(pd.read_csv(tmp_path / "results" / "pixstats" / "metrics.csv")["detector"])


def guide_plugin_files(folder: Path) -> dict[str, Path]:
    """The guide's plugin files, saved under ``folder`` as a reader saves them."""
    out = {}
    for lang, body in guide_blocks():
        if lang == "python" and (m := FILE_HEADER.fullmatch(body.splitlines()[0])):
            path = folder / Path(m.group(1)).name
            path.write_text(body)
            out[path.stem] = path
    return out


def test_the_guide_detectors_pass_plugins_check(tmp_path, capsys):
    """`sidbench plugins check` on the guide's fitted examples: fitted, saved, reloaded, same logits, nothing lost;
    the knn example with its fitted k left out of the checkpoint is caught."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    files = guide_plugin_files(folder)
    # knn's k chosen on validation, highpass's network option scales and its augmentation survive the round trip
    for name, extra in (("knn", ["--set", "k_grid=[1,3]"]), ("highpass", ["--set", "epochs=3", "--set", "scales=2"])):
        assert main(["plugins", "check", name, "--plugins-dir", str(folder), *extra]) == 0, capsys.readouterr()
        out = capsys.readouterr().out
        assert "logits: identical" in out and "ok: it survives" in out
    # a k chosen on validation that the checkpoint does not keep: reported as undeclared state
    broken = files["knn"].read_text().replace('return {"k": self.k}', "return {}").replace(
        'for k in self.options["k_grid"]:', 'for k in [k for k in self.options["k_grid"] if k != 5]:')
    files["knn"].write_text(broken)
    assert main(["plugins", "check", "knn", "--plugins-dir", str(folder), "--set", "k_grid=[1,2]"]) == 1
    out = capsys.readouterr().out
    assert "undeclared state self.k" in out and "extra_metadata" in out and "FAILED" in out
