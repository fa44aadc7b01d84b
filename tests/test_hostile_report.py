"""`sidbench report` against a careless or hostile user (#20): it writes only into folders it owns, never over a
user's file nor through a link, and undecodable names or hand-edited run.json/scores.csv/metrics.csv are one
line, no traceback. Numbers in brackets are the issue's case ids."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from sidbench.cli import main
from test_report import make_results

SMALL = dict(n=8, splits={"a": "gan", "b": "diffusion"}, perturbations={"none": 1.0}, detectors={"rine": (3.0, 0.0)})


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_results(tmp_path_factory.mktemp("runs") / "run", **SMALL)


@pytest.fixture
def results(base, tmp_path) -> Path:
    return Path(shutil.copytree(base, tmp_path / "run"))


def one_line_error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    lines = [ln for ln in err.splitlines() if ln.startswith("sidbench: error:")]
    assert code == 2 and "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_report_never_overwrites_a_users_figure(results, capsys):
    """[3] `sidbench report out` overwrote the user's out/report/figures/bars_acc.png."""
    mine = results / "report" / "figures" / "bars_acc.png"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own figure")
    err = one_line_error(capsys, ["report", str(results)])
    assert "in the way" in err and mine.read_bytes() == b"my own figure"


def test_report_never_writes_through_a_link(results, tmp_path, capsys):
    """[3] a link at out/report/figures took the figures (and their overwrites) to a folder outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "bars_acc.png").write_bytes(b"someone else's")
    (results / "report").mkdir()
    (results / "report" / "figures").symlink_to(outside)
    assert "symbolic link" in one_line_error(capsys, ["report", str(results)])
    assert files(outside) == {"bars_acc.png": b"someone else's"}
    shutil.rmtree(results / "report")
    (results / "report").symlink_to(outside)  # the report folder itself, inside a results folder made one
    (results / ".sidbench-results").write_bytes(b"# sidbench results folder\n")
    assert "symbolic link" in one_line_error(capsys, ["report", str(results)])
    assert files(outside) == {"bars_acc.png": b"someone else's"}


def test_report_out_never_replaces_a_users_index(results, tmp_path, capsys):
    """[4] `report out --out site` replaced the user's site/index.html silently."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<p>my homepage</p>")
    err = one_line_error(capsys, ["report", str(results), "--out", str(site)])
    assert "in the way" in err and (site / "index.html").read_text() == "<p>my homepage</p>"
    assert not (site / "figures").exists()  # refused before anything was drawn
    fresh = tmp_path / "fresh"
    assert main(["report", str(results), "--out", str(fresh)]) == 0
    assert main(["report", str(results), "--out", str(fresh)]) == 0  # its own files: replaced
    listed = (fresh / ".sidbench-results").read_bytes().splitlines()
    assert b"index.html" in listed and b"figures/bars_acc.png" in listed


def test_a_split_name_that_is_not_utf8_is_reported(tmp_path, capsys):
    """[21] a split folder named with Latin-1 bytes made the HTML report's figures raise."""
    from sidbench.results.scores import read_scores

    bad = os.fsdecode(b"caf\xe9")
    out = tmp_path / "run"
    real_to_csv = pd.DataFrame.to_csv

    def to_csv(self, path=None, **kw):  # as sidbench writes such names: their original bytes
        return real_to_csv(self, path, encoding="utf-8", errors="surrogateescape", **kw) if path else real_to_csv(self, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pd.DataFrame, "to_csv", to_csv)
        make_results(out, **{**SMALL, "splits": {bad: "gan", "ok": "gan"}})
    assert bad in set(read_scores(out / "scores.csv")["split"])
    assert main(["report", str(out)]) == 0
    assert "caf\\xe9" in (out / "report" / "index.html").read_text(encoding="utf-8", errors="surrogateescape")


RUN_JSON = ["{not json", "[1, 2]", '{"detectors": 3}', '{"detectors": [5]}', '{"counts": []}',
            '{"operating_points": {"calibration": {"detectors": {"rine": {"scale": "x"}}}}}', "\xff\xfe"]


@pytest.mark.parametrize("text", RUN_JSON)
def test_a_hand_edited_run_json_is_one_line(results, capsys, text):
    """[22] invalid or hand-edited run.json was a traceback."""
    (results / "run.json").write_bytes(text.encode("latin-1"))
    err = one_line_error(capsys, ["report", str(results), "--format", "md", "--bootstrap", "2"])
    assert "run.json" in err


def _edit_cell(path: Path, column: str, value: str) -> None:
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index(column)] = value
    lines[1] = ",".join(row)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("name, edit", [
    ("scores.csv", ""), ("scores.csv", "logit=abc"), ("scores.csv", "label=7"), ("scores.csv", "\x00\x01"),
    ("scores.csv", "detector,split\nx\n"), ("metrics.csv", ""), ("metrics.csv", "a,b\n1,2,3,4\n"),
    ("metrics.csv", "\x00\x01\x02"),
])
def test_a_hand_edited_scores_or_metrics_file_is_one_line(results, capsys, name, edit):
    """[22] invalid or hand-edited scores.csv and metrics.csv were tracebacks."""
    path = results / name
    if "=" in edit:
        _edit_cell(path, *edit.split("="))
    else:
        path.write_text(edit)
    err = one_line_error(capsys, ["report", str(results), "--format", "md", "--bootstrap", "2"])
    assert name in err


def test_a_null_operating_points_in_run_json_reads_as_none(results, capsys):
    """``"operating_points": null`` (accepted by the run.json reader) means no calibration, also on the path that
    reads the per-image scores (bootstrap), which used to fail on ``None.get``."""
    import json

    info = json.loads((results / "run.json").read_text())
    info["operating_points"] = None
    (results / "run.json").write_text(json.dumps(info))
    assert main(["report", str(results), "--format", "md", "--bootstrap", "2"]) == 0, capsys.readouterr().err
