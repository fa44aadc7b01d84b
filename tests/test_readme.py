"""The README's examples work as written."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd

from sidbench.cli import main
from sidbench.registry import load_plugins

README = Path(__file__).resolve().parent.parent / "README.md"


def python_block_after(marker: str) -> str:
    text = README.read_text()
    start = text.index(marker)
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_readme_opens_with_the_two_setup_commands():
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), re.S).group(1)
    commands = [ln.split("#")[0].strip() for ln in first_block.splitlines() if ln.strip()]
    assert commands == ['pip install -e ".[dev]"', "python -m pytest"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'python -m pip install -q -e ".[dev]"' in ci and "\npython -m pytest\n" in ci


def test_plugin_example_pasted_into_detectors_runs(image_folder, tmp_path, capsys, monkeypatch):
    """The example as a file of the built-in detectors package: a folder added to the package's path stands in
    for detectors/ (tests never write into the source tree)."""
    import sidbench.detectors

    code = python_block_after("Paste this into `detectors/mynew.py`")
    assert not (README.parent / "detectors" / "mynew.py").exists(), "a stray detectors/mynew.py exists"
    folder = tmp_path / "detectors"
    folder.mkdir()
    target = folder / "mynew.py"
    target.write_text(code)
    monkeypatch.setattr(sidbench.detectors, "__path__", [*sidbench.detectors.__path__, str(folder)])
    try:
        assert "embed_norm" in load_plugins().detectors
        assert main(["list", "detectors", "--names"]) == 0
        assert "embed_norm" in capsys.readouterr().out.split()
        out = tmp_path / "o"
        assert main(["run", "--data", str(image_folder), "--detectors", "embed_norm", "--backbone", "clip-tiny",
                     "--out", str(out), "--no-progress"]) == 0
        assert "embed_norm" in (out / "leaderboard.md").read_text()
        assert len(pd.read_csv(out / "scores.csv")) == 24
    finally:
        target.unlink()
        sys.modules.pop("sidbench.detectors.mynew", None)


def test_python_api_example_runs():
    code = python_block_after("## Python API")
    exec(compile(code, "README-python-api", "exec"), {})
