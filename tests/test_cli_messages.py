"""One logging path: progress through ``sidbench.api.note`` to the ``sidbench`` logger, shown on stderr by the
CLI; --quiet/-q and --verbose/-v on every command; command output alone on stdout."""
from __future__ import annotations

import logging

import pytest

from conftest import make_folder
from sidbench.cli import COMMANDS, main, parse

RUN = ["run", "--backbone", "clip-tiny", "--no-progress", "--detectors", "clip_zeroshot"]


@pytest.mark.parametrize("command", [c.rstrip("_") for c in COMMANDS])
@pytest.mark.parametrize("flag, quiet, verbose", [("-q", True, False), ("--quiet", True, False),
                                                  ("-v", False, True), ("--verbose", False, True)])
def test_every_command_takes_quiet_and_verbose_before_and_after_it(command, flag, quiet, verbose):
    needs = {"score": ["x.png", "--detectors", "npr"], "train": ["npr", "--data", "d", "--out", "c"],
             "report": ["r"], "ablate": ["rine"], "datasets": ["check", "d"], "cache": ["info"],
             "weights": ["list"], "list": ["detectors"], "plugins": []}.get(command, [])
    for argv in ([flag, command, *needs], [command, *needs, flag]):
        _, args = parse(argv)
        assert (args.quiet, args.verbose) == (quiet, verbose), argv


def test_quiet_and_verbose_together_are_refused(capsys):
    with pytest.raises(SystemExit) as info:
        parse(["-q", "list", "detectors", "-v"])
    assert info.value.code == 2 and "--quiet and --verbose" in capsys.readouterr().err


def test_note_logs_terminal_safe_info_to_the_sidbench_logger(caplog):
    from sidbench.api import note

    with caplog.at_level(logging.INFO, logger="sidbench"):
        note("read \x1b]0;owned\x07 folder")
    [record] = caplog.records
    assert record.name == "sidbench" and record.levelno == logging.INFO
    assert record.getMessage() == "read \\x1b]0;owned\\x07 folder"


def test_show_messages_levels_and_one_handler(capsys):
    from sidbench.api import note
    from sidbench.api.log import messages_shown

    logger = logging.getLogger("sidbench")
    before = (logger.level, list(logger.handlers))
    for level, shown in ((logging.INFO, ("progress", "warning")), (logging.WARNING, ("warning",)),
                         (logging.DEBUG, ("progress", "warning", "debug"))):
        with messages_shown(level), messages_shown(level):  # nested: still one handler, one line per message
            note("progress")
            logging.getLogger("sidbench.layout").warning("two\nlines")
            logging.getLogger("sidbench.cache").debug("details")
        captured = capsys.readouterr()
        assert captured.out == ""
        lines = captured.err.splitlines()
        assert ("progress" in lines) == ("progress" in shown)
        assert ("sidbench: warning: two\\nlines" in lines) == ("warning" in shown)
        assert ("sidbench: debug: details" in lines) == ("debug" in shown)
        assert len(lines) == len(shown)
    assert (logger.level, list(logger.handlers)) == before  # put back after each command


def test_run_prints_the_leaderboard_on_stdout_and_progress_on_stderr(tmp_path, capsys):
    image_folder = make_folder(tmp_path / "data", splits=("a",), n=2)
    out = tmp_path / "out"
    assert main([*RUN, "--data", str(image_folder), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == (out / "leaderboard.md").read_text()  # output, nothing else: it can be redirected
    assert "images scored, 0 skipped" in captured.err and "# sidbench leaderboard" not in captured.err
    assert "sidbench: debug:" not in captured.err

    assert main(["-v", *RUN, "--data", str(image_folder), "--out", str(out)]) == 0  # resumed: all rows done
    captured = capsys.readouterr()
    assert captured.out == (out / "leaderboard.md").read_text()
    assert "images scored" in captured.err and "sidbench: debug: timing: total:" in captured.err

    assert main([*RUN, "--data", str(image_folder), "--out", str(out), "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.out == (out / "leaderboard.md").read_text() and "images scored" not in captured.err


def test_quiet_keeps_warnings(tmp_path, capsys):
    broken = tmp_path / "plugins"
    broken.mkdir()
    (broken / "oops.py").write_text("raise ImportError('missing dependency')\n")
    assert main(["-q", "list", "detectors", "--names", "--plugins-dir", str(broken)]) == 0
    captured = capsys.readouterr()
    assert "clip_zeroshot" in captured.out.split() and "oops" not in captured.out
    assert captured.err.startswith("sidbench: warning: ") and "oops" in captured.err
