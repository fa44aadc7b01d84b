"""--plugins-dir, --strict and --debug work before the command (as `sidbench --help` shows them) and after it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sidbench.cli import main, parse

PLUGINS = Path(__file__).resolve().parent / "plugins"


def plugin_dir(tmp_path: Path, *names: str) -> str:
    d = tmp_path / "plugins"
    d.mkdir(exist_ok=True)
    for name in names:
        src = PLUGINS / f"{name}.py" if (PLUGINS / f"{name}.py").exists() else PLUGINS / "broken" / f"{name}.py"
        shutil.copy(src, d / src.name)
    return str(d)


@pytest.mark.parametrize("where", ["before", "after"])
def test_plugins_dir(tmp_path, capsys, where):
    d = plugin_dir(tmp_path, "good_detector")
    argv = ["--plugins-dir", d, "list", "detectors", "--names"] if where == "before" else \
        ["list", "detectors", "--names", "--plugins-dir", d]
    assert main(argv) == 0
    assert "mean_embed" in capsys.readouterr().out.split()


def test_plugins_dir_before_and_after_add_up(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _, args = parse(["--plugins-dir", str(a), "run", "--plugins-dir", str(b)])
    assert args.plugins_dir == [str(a), str(b)]
    _, args = parse(["run"])
    assert args.plugins_dir == [] and args.strict is False and args.debug is False


@pytest.mark.parametrize("where", ["before", "after"])
def test_strict(tmp_path, capsys, where):
    d = plugin_dir(tmp_path, "broken_import")
    lenient = main(["--plugins-dir", d, "list", "detectors", "--names"])
    assert lenient == 0 and "warning" in capsys.readouterr().err
    argv = ["--strict", "--plugins-dir", d, "list", "detectors"] if where == "before" else \
        ["list", "detectors", "--plugins-dir", d, "--strict"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "broken_import" in err and "failed to load" in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug(tmp_path, capsys, where):
    missing = str(tmp_path / "missing")
    argv = ["run", "--data", missing, "--detectors", "clip_zeroshot"]
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert main(["--debug", *argv] if where == "before" else [*argv, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "no such folder" in err
