"""Names from the user's disk in the places they are shown (#16.8): spreadsheet exports neutralise formulas,
Markdown and LaTeX escape their syntax, the terminal never receives raw control characters."""
from __future__ import annotations

import csv
import io
import re

import numpy as np

from conftest import make_folder, write_image
from sidbench.cli import main
from test_results_folder import one_line_error, run_args

FORMULA = '=HYPERLINK("evil.example","x")'  # a folder name: no slash
PIPES = "a|b\\c*"
ESCAPE = "\x1b]0;owned\x07\x1b[2J"


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_names_are_neutralised_or_escaped_wherever_they_are_shown(tmp_path, capsys):
    data = make_folder(tmp_path / "d", splits=(FORMULA, PIPES), n=2)
    write_image(data / PIPES / "0_real" / f".{ESCAPE}.png", np.random.default_rng(1))  # hidden: named in a warning
    out = tmp_path / "out"
    assert main(run_args(data, out)) == 0
    run_output = capsys.readouterr()
    assert "\x1b" not in run_output.out + run_output.err and "\\x1b]0;owned\\x07" in run_output.err

    assert main(["report", str(out), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    splits = {r["split"] for r in rows}
    assert "'" + FORMULA in splits and FORMULA not in splits  # shown as text, never run as a formula
    assert all(not str(r[c]).startswith(("=", "+", "-", "@")) for r in rows for c in ("detector", "split", "group"))

    assert main(["report", str(out), "--format", "md"]) == 0
    md = capsys.readouterr().out
    for text in (md, (out / "leaderboard.md").read_text()):
        assert "a\\|b\\\\c\\*" in text
        table = [ln for ln in text.splitlines() if ln.startswith("|")]
        assert table and len({_unescaped_pipes(ln) for ln in table}) == 1  # every row has the header's cells

    assert main(["report", str(out), "--format", "latex"]) == 0
    tex = capsys.readouterr().out
    assert "a\\textbar{}b\\textbackslash{}c*" in tex and "a|b" not in tex

    raw = (out / "scores.csv").read_text()  # a data file: kept verbatim (the README says so)
    assert FORMULA.replace('"', '""') in raw


def test_control_characters_in_error_messages_are_escaped(tmp_path, capsys):
    err = one_line_error(capsys, run_args(tmp_path / f"no{ESCAPE}such", tmp_path / "out"))
    assert "\x1b" not in err and "\x07" not in err and "no\\x1b]0;owned\\x07\\x1b[2Jsuch" in err


def test_escape_helpers():
    from sidbench.api.escape import markdown_escape, spreadsheet_safe, terminal_safe
    from sidbench.reports.tables import latex_escape

    assert spreadsheet_safe("-1") == "'-1" and spreadsheet_safe("@x") == "'@x" and spreadsheet_safe(-1.5) == -1.5
    assert spreadsheet_safe("ldm_200") == "ldm_200"
    assert markdown_escape("ldm_200") == "ldm_200" and markdown_escape("_x_") == "\\_x\\_"
    assert markdown_escape("rine[tie=false]") == "rine\\[tie=false\\]"
    assert terminal_safe("caf\udce9\tok\n") == "caf\\xe9\tok\n"
    assert latex_escape("50%_{x}^~\\") == "50\\%\\_\\{x\\}\\textasciicircum{}\\textasciitilde{}\\textbackslash{}"


def test_layout_notes_escape_control_characters_in_folder_names(messages, capsys):
    from sidbench.data.trees import note, warn

    note("read set 'ev\x1b[31mil' as group 'other'")
    warn("set 'ev\x1b[31mil' is missing")
    err = capsys.readouterr().err
    assert "\x1b" not in err and err.count("\\x1b") == 2
